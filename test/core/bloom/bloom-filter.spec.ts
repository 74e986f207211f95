import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import {
  BloomFilter,
  InvalidBloomError,
  MAX_BLOOM_BYTES,
  defaultFalsePositiveRate
} from '../../../src/core/bloom/bloom-filter.ts'
import { xxh3Reference } from '../../../src/core/bloom/xxh3.ts'
import { randomSource } from '../../fixtures/random.ts'

/** The items of deterministic-bloom's doctests: 32-bit little-endian integers. */
function u32 (value: number): Uint8Array {
  const bytes = new Uint8Array(4)
  new DataView(bytes.buffer).setUint32(0, value, true)
  return bytes
}

function toHex (bytes: Uint8Array): string {
  return [...bytes].map(byte => byte.toString(16).padStart(2, '0')).join('')
}

/** Random bytes shaped like a CIDv1 with a sha2-256 multihash (36 bytes). */
function cidSizedItem (random: () => number): Uint8Array {
  const bytes = Uint8Array.from({ length: 36 }, () => Math.floor(random() * 256))
  bytes.set([0x01, 0x55, 0x12, 0x20])
  return bytes
}

/** Bloom indices by the definition in deterministic-bloom, with the BigInt reference hash. */
function referenceIndices (item: Uint8Array, bitCount: number, hashCount: number): number[] {
  let power = 1n
  while (power < BigInt(bitCount)) {
    power *= 2n
  }
  const indices: number[] = []
  for (let seed = 0n; indices.length < hashCount; seed++) {
    const value = xxh3Reference(item, seed) % power
    if (value < BigInt(bitCount)) {
      indices.push(Number(value))
    }
  }
  return indices
}

describe('BloomFilter', () => {
  describe('sizing like rs-car-mirror (power of two, fpr = min(0.001, 0.1 / n))', () => {
    const cases: Array<[number, number, number]> = [
      // [item count, bytes, hash count]
      [1, 2, 12],
      [100, 256, 15],
      [1000, 4096, 23],
      [10_000, 32_768, 19],
      [100_000, 524_288, 30]
    ]
    for (const [itemCount, byteLength, hashCount] of cases) {
      it(`n = ${itemCount} → ${byteLength} bytes, k = ${hashCount}`, () => {
        const filter = BloomFilter.forCapacity(itemCount)
        expect(filter.bytes.byteLength).to.equal(byteLength)
        expect(filter.hashCount).to.equal(hashCount)
        expect(filter.bitCount).to.equal(byteLength * 8)
        expect(filter.bytes.every(byte => byte === 0)).to.be.true()
      })
    }

    it('n = 0 gives a tiny filter', () => {
      const filter = BloomFilter.forCapacity(0)
      expect(filter.bytes.byteLength).to.equal(2)
      expect(filter.hashCount).to.equal(12)
    })

    it('uses min(0.001, 0.1 / n) as the default rate', () => {
      expect(defaultFalsePositiveRate(1)).to.equal(0.001)
      expect(defaultFalsePositiveRate(100_000)).to.equal(0.1 / 100_000)
      expect(defaultFalsePositiveRate(0)).to.equal(0.001)
    })

    it('(n = 1e7, fpr = 0.01) → 16 MiB, k = 10', () => {
      expect(BloomFilter.optimalSize(10_000_000, 0.01, { powerOfTwo: true })).to.deep.equal({ byteLength: 16 * 1024 * 1024, hashCount: 10 })
      const filter = BloomFilter.forCapacity(10_000_000, 0.01)
      expect(filter.bytes.byteLength).to.equal(16_777_216)
      expect(filter.hashCount).to.equal(10)
    })

    it('refuses filters over the size limit', () => {
      expect(() => BloomFilter.forCapacity(1e10, 1e-9)).to.throw(InvalidBloomError)
    })

    it('rejects bad sizing parameters', () => {
      expect(() => BloomFilter.optimalSize(-1, 0.01)).to.throw(InvalidBloomError)
      expect(() => BloomFilter.optimalSize(1.5, 0.01)).to.throw(InvalidBloomError)
      expect(() => BloomFilter.optimalSize(10, 0)).to.throw(InvalidBloomError)
      expect(() => BloomFilter.optimalSize(10, 1)).to.throw(InvalidBloomError)
      expect(() => BloomFilter.optimalSize(10, Number.NaN)).to.throw(InvalidBloomError)
    })
  })

  describe('known answers of deterministic-bloom', () => {
    it('(n = 1000, fpr = 1e-4) → 2397 bytes, k = 14, popcount 9906 after 0..999, 1001 absent', () => {
      const size = BloomFilter.optimalSize(1000, 1e-4)
      expect(size).to.deep.equal({ byteLength: 2397, hashCount: 14 })
      const filter = new BloomFilter(new Uint8Array(size.byteLength), size.hashCount)
      for (let i = 0; i < 1000; i++) {
        filter.add(u32(i))
      }
      expect(filter.setBitCount).to.equal(9906)
      expect(filter.count).to.equal(1000)
      expect(filter.has(u32(1001))).to.be.false()
      for (let i = 0; i < 1000; i++) {
        expect(filter.has(u32(i))).to.be.true()
      }
    })

    it('(n = 100, fpr = 0.1) → 60 bytes, k = 4, 101 absent, 106 a false positive', () => {
      const size = BloomFilter.optimalSize(100, 0.1)
      expect(size).to.deep.equal({ byteLength: 60, hashCount: 4 })
      const filter = new BloomFilter(new Uint8Array(size.byteLength), size.hashCount)
      for (let i = 0; i < 100; i++) {
        filter.add(u32(i))
      }
      expect(filter.has(u32(101))).to.be.false()
      expect(filter.has(u32(106))).to.be.true()
    })

    it('(n = 47, fpr = 1e-9) → 254 bytes, k = 30', () => {
      expect(BloomFilter.optimalSize(47, 1e-9)).to.deep.equal({ byteLength: 254, hashCount: 30 })
    })

    it('(n = 1e6, fpr = 1e-6) → 3,594,397 bytes, k = 20', () => {
      expect(BloomFilter.optimalSize(1_000_000, 1e-6)).to.deep.equal({ byteLength: 3_594_397, hashCount: 20 })
    })

    it('2-byte filter, k = 12, item 01 02 03 → indices 11,5,1,10,14,8,7,3,12,5,12,0 → bytes ab 5d', () => {
      const filter = new BloomFilter(new Uint8Array(2), 12)
      const item = Uint8Array.from([1, 2, 3])
      expect(filter.indicesOf(item)).to.deep.equal([11, 5, 1, 10, 14, 8, 7, 3, 12, 5, 12, 0])
      filter.add(item)
      expect(toHex(filter.bytes)).to.equal('ab5d')
      expect(new BloomFilter(Uint8Array.from([0xAB, 0x5D]), 12).has(item)).to.be.true()
    })
  })

  describe('indices', () => {
    it('follow the definition for items of every kernel path and beyond', () => {
      const random = randomSource(11)
      for (const length of [0, 1, 3, 4, 8, 9, 16, 17, 34, 36, 70, 128, 129, 240, 241, 300]) {
        const item = Uint8Array.from({ length }, () => Math.floor(random() * 256))
        for (const byteLength of [1, 7, 60, 2397, 4096]) {
          const filter = new BloomFilter(new Uint8Array(byteLength), 9)
          expect(filter.indicesOf(item)).to.deep.equal(referenceIndices(item, byteLength * 8, 9), `length ${length}, bytes ${byteLength}`)
        }
      }
    })

    it('handle hash counts above one kernel batch', () => {
      const item = Uint8Array.from([9, 8, 7, 6, 5])
      const filter = new BloomFilter(new Uint8Array(61), 5000)
      const indices = filter.indicesOf(item)
      expect(indices).to.have.lengthOf(5000)
      expect(indices.slice(4090, 4110)).to.deep.equal(referenceIndices(item, 61 * 8, 5000).slice(4090, 4110))
      filter.add(item)
      expect(filter.has(item)).to.be.true()
    })
  })

  describe('constructor', () => {
    it('wraps the given bytes without copying', () => {
      const bytes = new Uint8Array(32)
      const filter = new BloomFilter(bytes, 3)
      filter.add(u32(7))
      expect(filter.bytes).to.equal(bytes)
      expect(bytes.some(byte => byte !== 0)).to.be.true()
    })

    it('rejects invalid hash counts', () => {
      for (const hashCount of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 32]) {
        expect(() => new BloomFilter(new Uint8Array(8), hashCount)).to.throw(InvalidBloomError)
      }
      // @ts-expect-error not a number
      expect(() => new BloomFilter(new Uint8Array(8), '3')).to.throw(InvalidBloomError)
    })

    it('rejects bytes that are not a Uint8Array', () => {
      // @ts-expect-error not a Uint8Array
      expect(() => new BloomFilter([1, 2, 3], 3)).to.throw(InvalidBloomError)
    })

    it('names its error', () => {
      expect(InvalidBloomError.name).to.equal('InvalidBloomError')
      expect(new InvalidBloomError('x').name).to.equal('InvalidBloomError')
      expect(MAX_BLOOM_BYTES).to.equal(2 ** 29)
    })
  })

  describe('degenerate filters contain nothing', () => {
    it('0 bytes', () => {
      const filter = new BloomFilter(new Uint8Array(0), 3)
      filter.add(u32(1))
      expect(filter.has(u32(1))).to.be.false()
      expect(filter.count).to.equal(1)
      expect(filter.indicesOf(u32(1))).to.deep.equal([])
      expect(filter.estimatedFalsePositiveRate).to.equal(0)
    })

    it('k = 0', () => {
      const filter = new BloomFilter(Uint8Array.from([0xFF, 0xFF]), 0)
      filter.add(u32(1))
      expect(filter.has(u32(1))).to.be.false()
      expect(filter.estimatedFalsePositiveRate).to.equal(0)
    })
  })

  it('answers the same after its bytes are wrapped in a new filter', () => {
    const random = randomSource(12)
    const sender = BloomFilter.forCapacity(500)
    const added = Array.from({ length: 500 }, () => cidSizedItem(random))
    added.forEach(item => { sender.add(item) })
    const receiver = new BloomFilter(sender.bytes.slice(), sender.hashCount)
    for (const item of added) {
      expect(receiver.has(item)).to.be.true()
    }
    for (let i = 0; i < 5000; i++) {
      const item = cidSizedItem(random)
      expect(receiver.has(item)).to.equal(sender.has(item))
    }
  })

  it('accepts CIDs', () => {
    const digest = Digest.create(0x12, Uint8Array.from({ length: 32 }, (_, i) => i))
    const cid = CID.createV1(0x55, digest)
    const cidV0 = CID.createV0(digest)
    const filter = BloomFilter.forCapacity(2)
    filter.addCid(cid)
    expect(filter.hasCid(cid)).to.be.true()
    expect(filter.has(cid.bytes)).to.be.true()
    expect(filter.hasCid(CID.parse(cid.toString()))).to.be.true()
    // CIDv0 bytes are the bare multihash: a different item
    expect(filter.hasCid(cidV0)).to.be.false()
  })

  it('never gives false negatives (property)', () => {
    fc.assert(fc.property(
      fc.array(fc.uint8Array({ minLength: 0, maxLength: 300 }), { minLength: 1, maxLength: 60 }),
      fc.integer({ min: 1, max: 600 }),
      fc.integer({ min: 1, max: 40 }),
      (items, byteLength, hashCount) => {
        const filter = new BloomFilter(new Uint8Array(byteLength), hashCount)
        items.forEach(item => { filter.add(item) })
        return items.every(item => filter.has(item)) && filter.count === items.length
      }
    ), { numRuns: 200 })
  })

  it('sets exactly the bits of the definition (property)', () => {
    fc.assert(fc.property(
      fc.uint8Array({ minLength: 0, maxLength: 80 }),
      fc.integer({ min: 1, max: 300 }),
      fc.integer({ min: 1, max: 20 }),
      (item, byteLength, hashCount) => {
        const filter = new BloomFilter(new Uint8Array(byteLength), hashCount)
        filter.add(item)
        const expected = new Uint8Array(byteLength)
        for (const index of referenceIndices(item, byteLength * 8, hashCount)) {
          expected[index >> 3] |= 1 << (index & 7)
        }
        return toHex(filter.bytes) === toHex(expected)
      }
    ), { numRuns: 100 })
  })

  describe('false positive rate', () => {
    it('is close to the target for 10k CID-sized items (fpr 1%, non-power-of-two size)', () => {
      const random = randomSource(13)
      const itemCount = 10_000
      const target = 0.01
      const { byteLength, hashCount } = BloomFilter.optimalSize(itemCount, target)
      const filter = new BloomFilter(new Uint8Array(byteLength), hashCount)
      for (let i = 0; i < itemCount; i++) {
        filter.add(cidSizedItem(random))
      }
      const trials = 100_000
      let falsePositives = 0
      for (let i = 0; i < trials; i++) {
        if (filter.has(cidSizedItem(random))) {
          falsePositives++
        }
      }
      const measured = falsePositives / trials
      expect(measured).to.be.within(target / 1.5, target * 1.5)
      expect(filter.estimatedFalsePositiveRate).to.be.within(target / 1.5, target * 1.5)
      expect(measured).to.be.within(filter.estimatedFalsePositiveRate / 1.3, filter.estimatedFalsePositiveRate * 1.3)
    })

    it('stays below the default target with forCapacity(10k)', () => {
      const random = randomSource(14)
      const itemCount = 10_000
      const filter = BloomFilter.forCapacity(itemCount)
      for (let i = 0; i < itemCount; i++) {
        filter.add(cidSizedItem(random))
      }
      const target = defaultFalsePositiveRate(itemCount)
      expect(filter.estimatedFalsePositiveRate).to.be.below(target)
      const trials = 100_000
      let falsePositives = 0
      for (let i = 0; i < trials; i++) {
        if (filter.has(cidSizedItem(random))) {
          falsePositives++
        }
      }
      // target 1e-5: 1 expected in 100k trials; 5 or more has probability < 0.4 %
      expect(falsePositives).to.be.below(5)
    })
  })
})
