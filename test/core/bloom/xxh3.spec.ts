import { expect } from 'aegir/chai'
import {
  BLOOM_INDEX_BATCH,
  XXH3_KERNEL_MAX_INPUT,
  XXH3_KERNEL_WASM,
  Xxh3Kernel,
  xxh3,
  xxh3Kernel,
  xxh3Reference
} from '../../../src/core/bloom/xxh3.ts'
import { randomBytes, randomSeed, randomSource } from '../../fixtures/random.ts'

/** The input of a test vector: a fixed byte pattern that depends on the length. */
function vectorInput (length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 167 + length * 13 + 1) & 0xFF)
}

const VECTOR_SEEDS = [0n, 1n, 29n, 0x9E3779B97F4A7C15n, 0xFFFFFFFFFFFFFFFFn]

/**
 * XXH3-64 of `vectorInput(length)` for each of VECTOR_SEEDS, computed with the
 * native xxHash of `@node-rs/xxhash` (`xxh3.xxh64(input, seed)`), so that the
 * browser runs check the same values.
 */
const VECTORS: Array<[number, bigint[]]> = [
  [0, [0x2d06800538d394c2n, 0x4dc5b0cc826f6703n, 0xf5e09e4bd93f5731n, 0x602b0e2cd6662c8bn, 0x4c093276ae47a555n]],
  [1, [0xefe50f8d11366410n, 0x6d87d6afd5c9b283n, 0x44460d2353ec3c1en, 0x9aa8ccc7c7416da3n, 0xd3cddf15fc340a24n]],
  [2, [0x029013d2af236a3en, 0x3ada8bca3f67e542n, 0x6640bb89f9628c13n, 0xb7815e6c452ef3een, 0xa613ca2d08023987n]],
  [3, [0x2a47962136264715n, 0x6ed308721067b7d7n, 0x2f569605e436d1dfn, 0x4445aeac5abd38cdn, 0x13179ee0764ee6f1n]],
  [4, [0xca4e9d97dd983a72n, 0xc066722d89390853n, 0xf9df232c39056c99n, 0x6ec65850d0afb5e2n, 0x7260017660dddc32n]],
  [5, [0xa1289fa4503edf60n, 0x8f2f284c5e5ec5b3n, 0x6b8c209e01d83532n, 0x2ee0afd784c5543cn, 0x7a14d072e81cf63an]],
  [7, [0x98d6d346a701cd5cn, 0x358a5916798cb7b7n, 0x25b82811059176c2n, 0xbb5788244a5bd258n, 0xde0e6007e3a54d7cn]],
  [8, [0xf0306788b2210dc4n, 0x4530581e9372e367n, 0xefe22491c7f34c9cn, 0xcb0397edcf6082cfn, 0x980288b323f667e7n]],
  [9, [0x2e3575750e6a0a20n, 0x819e0c3f3cb2d2adn, 0x0b2de9da785032b4n, 0xcf2baaf74dc66b6fn, 0x80104711eb84190en]],
  [12, [0x7a3040f291553bf9n, 0x9b7d28874ecebb2cn, 0x37be5c6a2d1ef602n, 0x6c446c1f68df3681n, 0x77c86440814b24a1n]],
  [16, [0xae749a3033c59fa6n, 0x5d848fabcbf101e5n, 0xb97e0273d279a462n, 0xeea7abc896cf46edn, 0xbe339af2dbd4fc70n]],
  [17, [0x164a21605efac232n, 0xd00c176593b9d8den, 0x78d37c6342e342c9n, 0x010d7fb77bf29417n, 0x5b0d828fdaf0cccan]],
  [31, [0xef612082c082541an, 0xaf96668bf8bbbdc7n, 0xbba6b4b90732b4een, 0x8b0acbb2d88c87b5n, 0x8d7fe95533b25243n]],
  [32, [0xf6e7c5c987bc177bn, 0x29fae21290bf8cdfn, 0x62943d47ad7991e5n, 0xbfd4d318067f2918n, 0xa45d86ea6c8da7ban]],
  [33, [0x9ba07380adbd249fn, 0xe57a592b00ee9d94n, 0x76936bcbad476d71n, 0x908a5c3bc85c2987n, 0xa5f65497988a9860n]],
  [36, [0x17c7c3fae4c09d3en, 0x9473b69235626031n, 0x74b85e5947855936n, 0xde758d6850b14870n, 0x6168f36253585e7en]],
  [48, [0xb866c512409a0c12n, 0xe6deceda9fe68c80n, 0x38a1979bc8f0c596n, 0xc3ac87e74ee703e0n, 0x517e195b08205ffcn]],
  [64, [0xa642bb96b4e015b8n, 0x92b789b19bde5bcen, 0x5ce5d5830c001075n, 0xdd580880441cbd2dn, 0xfe46df51fa0fdbe9n]],
  [65, [0x5984e4439f3a0237n, 0xb011c57e2a7944f0n, 0x307207648b541334n, 0xbcb2c07616910130n, 0xd9f1fcd522332b08n]],
  [70, [0xac57792b765aa8d0n, 0xf513795901ddf464n, 0xe5f45076246c8bfan, 0x2d6810d3fd233c01n, 0x37399caa35eedf7fn]],
  [96, [0xef8445faf5a61bb6n, 0xaacbe1f2fce4bcbcn, 0x0aefa8e9a25311a4n, 0x4af6c17a84d5fdeen, 0xc821b8347eaafa7an]],
  [97, [0xb507403dfe5e7320n, 0x2846bc942314b8a2n, 0x948d6bb41a251751n, 0x2c9e21d343e6f45bn, 0xa352812e9d25bc7an]],
  [128, [0x659a4a61a2bea0cbn, 0xb283e41d5d0e41fen, 0xa4764c90354d4a3fn, 0x83255d5d9c72ab49n, 0xbce90857d321f59dn]],
  [129, [0x0e736f274d17ba86n, 0x374b95c1b7e8e44dn, 0x541739a628ca21c6n, 0x7c9ee7681cb76735n, 0xf661ed01cd55f827n]],
  [143, [0x52d593fa3b542cddn, 0x5894ff818c4e1f76n, 0xe71618f4de89dc18n, 0x1439e62d988983fcn, 0xc4e03a86db785ec6n]],
  [144, [0x2e7bf8a9a24604aan, 0x0e48513605723acfn, 0x44d922a1494093f8n, 0xd9ddeacfa0a9d2b8n, 0xaae6a2c12f9a7ea1n]],
  [160, [0xab9d12d5717745c5n, 0xf4339822544743dfn, 0x18dd0e52f99b8a47n, 0x21556877cb593a11n, 0xf192394ef2bad931n]],
  [200, [0x3e1ea8428c5c25b2n, 0x636f3ef417a68de4n, 0xace21a68e111f0f3n, 0xfc1db2a460dd3686n, 0xf88299686e6a425bn]],
  [239, [0x94a9052df8cc56e4n, 0xccfb2de0122eee8cn, 0x34b5da43f42804e1n, 0x01173ce05fc48315n, 0x931b26b8b910a4b7n]],
  [240, [0xacbe20e2e1ab3063n, 0x53c367ac428d3cf9n, 0x770bfc45ca00b5fcn, 0x7cee1c791f526294n, 0x2b0efd65f7420acbn]],
  [241, [0xae3df012f7198405n, 0xc4bb1339547f7759n, 0xc3e13f578cd188ecn, 0x2e1daef80880c397n, 0x7c631a98b32f4945n]],
  [255, [0x57cb22a4bf962f53n, 0x26036d9eb922b6f3n, 0xc234ea673777be21n, 0xe903e1132b2d89c8n, 0xff6f426671917070n]],
  [256, [0x5d411365dd0cc5edn, 0x5187583370c0d382n, 0x999f5be704faf7b3n, 0xd05825470102cc48n, 0xe3a7ec6a138104b4n]],
  [500, [0xf47dfb9b139f0c51n, 0x675a3377dada32b4n, 0xa222db286e657416n, 0xcf8a3f08ff6e78aen, 0x217b7ebfdfa7c2a4n]],
  [1023, [0xe94495e8463f639dn, 0x35acf74bb191353en, 0xabeafa3486203064n, 0x2e74b6c5e04cd8fcn, 0x0472c14246b03386n]],
  [1024, [0x766c2c410ab37d12n, 0x77ba59a0454d0169n, 0x0197cec71ad7e694n, 0xca76fdc2e9011e49n, 0x06281ae1c8171798n]],
  [1025, [0x99166be1d400a074n, 0xd3f2e5f40617970dn, 0x2bc7d92c27838eadn, 0x2402d2ae7e6a4a59n, 0x3a7324c4958a96bfn]],
  [2048, [0x542b5d3a106ea879n, 0xbf09e868de2d8413n, 0x2a8e4f2290bbdc93n, 0xe2d913af59e43994n, 0x21ada91864370c4fn]],
  [4097, [0x3871ed8cd36b412cn, 0x1842b5bea2a05351n, 0x68db584bad29f616n, 0xe94d7b22f00c1c36n, 0x8bc6c4c2b60bcdbcn]]
]

describe('xxh3', () => {
  it('uses the WebAssembly kernel in this environment', () => {
    expect(xxh3Kernel.backend).to.equal('wasm')
  })

  it('keeps the kernel small enough for synchronous compilation on a main thread', () => {
    expect(XXH3_KERNEL_WASM.byteLength).to.be.below(4096)
    expect(WebAssembly.validate(XXH3_KERNEL_WASM)).to.be.true()
  })

  it('hashes the empty input to the published XXH3-64 value', () => {
    expect(xxh3Reference(new Uint8Array(0))).to.equal(0x2D06800538D394C2n)
    expect(xxh3(new Uint8Array(0))).to.equal(0x2D06800538D394C2n)
  })

  describe('test vectors from the native xxHash', () => {
    for (const [length, hashes] of VECTORS) {
      it(`length ${length}`, () => {
        const input = vectorInput(length)
        VECTOR_SEEDS.forEach((seed, i) => {
          expect(xxh3Reference(input, seed)).to.equal(hashes[i], `reference, seed ${seed}`)
          expect(xxh3(input, seed)).to.equal(hashes[i], `fast path, seed ${seed}`)
        })
      })
    }
  })

  it('gives the same hash from the WebAssembly kernel and the reference for every length 0..300', () => {
    const random = randomSource(2)
    for (let length = 0; length <= 300; length++) {
      for (let round = 0; round < 4; round++) {
        const input = randomBytes(random, length)
        const seed = round === 0 ? BigInt(round) : randomSeed(random)
        expect(xxh3Kernel.hash(input, seed)).to.equal(xxh3Reference(input, seed), `length ${length}, seed ${seed}`)
      }
    }
  })

  it('accepts number seeds and wraps negative seeds modulo 2^64', () => {
    const input = vectorInput(40)
    expect(xxh3(input, 29)).to.equal(xxh3(input, 29n))
    expect(xxh3(input, -1)).to.equal(xxh3(input, 0xFFFFFFFFFFFFFFFFn))
    expect(xxh3Reference(input, -1n)).to.equal(xxh3Reference(input, 0xFFFFFFFFFFFFFFFFn))
  })

  it('hashes subarrays by their own bytes only', () => {
    const backing = randomBytes(randomSource(3), 400)
    for (const [offset, length] of [[1, 0], [3, 3], [5, 8], [7, 16], [9, 36], [11, 129], [13, 250]]) {
      const view = backing.subarray(offset, offset + length)
      const copy = view.slice()
      expect(xxh3(view, 5n)).to.equal(xxh3Reference(copy, 5n))
      expect(xxh3Reference(view, 5n)).to.equal(xxh3Reference(copy, 5n))
    }
  })

  describe('Xxh3Kernel', () => {
    /** Bloom indices by definition, with the reference hash. */
    function referenceIndices (item: Uint8Array, seed: number, count: number, maxIndex: number, mask: number): { indices: number[], nextSeed: number } {
      const indices: number[] = []
      while (indices.length < count) {
        const value = Number(xxh3Reference(item, seed) & BigInt(mask))
        seed++
        if (value <= maxIndex) {
          indices.push(value)
        }
      }
      return { indices, nextSeed: seed }
    }

    it('can be forced to the reference implementation', () => {
      const kernel = new Xxh3Kernel({ webAssembly: false })
      expect(kernel.backend).to.equal('js')
      expect(kernel.hash(vectorInput(36), 1n)).to.equal(VECTORS.find(([length]) => length === 36)?.[1][1])
    })

    it('computes the same Bloom indices with and without WebAssembly', () => {
      const wasm = new Xxh3Kernel()
      const js = new Xxh3Kernel({ webAssembly: false })
      const random = randomSource(4)
      for (let length = 0; length <= 300; length += 7) {
        const item = randomBytes(random, length)
        // power-of-two and other bit counts, up to the 2^32 limit
        for (const bitCount of [8, 16, 19176, 4194304, 100003, 2 ** 32]) {
          let power = 1
          while (power < bitCount) {
            power *= 2
          }
          const maxIndex = bitCount - 1
          const mask = power - 1
          const expected = referenceIndices(item, 0, 30, maxIndex, mask)
          wasm.loadItem(item)
          js.loadItem(item)
          expect(wasm.fillBloomIndices(0, 30, maxIndex, mask)).to.equal(expected.nextSeed)
          expect(js.fillBloomIndices(0, 30, maxIndex, mask)).to.equal(expected.nextSeed)
          expect([...wasm.indices.subarray(0, 30)]).to.deep.equal(expected.indices, `length ${length}, bits ${bitCount}`)
          expect([...js.indices.subarray(0, 30)]).to.deep.equal(expected.indices, `length ${length}, bits ${bitCount}`)
        }
      }
    })

    it('continues a run of indices from a given seed', () => {
      const kernel = new Xxh3Kernel()
      const item = vectorInput(36)
      kernel.loadItem(item)
      const first = kernel.fillBloomIndices(0, 5, 99_999, 131_071)
      const head = [...kernel.indices.subarray(0, 5)]
      kernel.fillBloomIndices(first, 7, 99_999, 131_071)
      const tail = [...kernel.indices.subarray(0, 7)]
      expect([...head, ...tail]).to.deep.equal(referenceIndices(item, 0, 12, 99_999, 131_071).indices)
      expect(kernel.fillBloomIndices(3, 0, 99_999, 131_071)).to.equal(3)
    })

    it('falls back to the reference for items longer than the kernel handles', () => {
      const kernel = new Xxh3Kernel()
      const item = randomBytes(randomSource(5), XXH3_KERNEL_MAX_INPUT + 60)
      kernel.loadItem(item)
      kernel.fillBloomIndices(0, 10, 1023, 1023)
      expect([...kernel.indices.subarray(0, 10)]).to.deep.equal(referenceIndices(item, 0, 10, 1023, 1023).indices)
    })

    it('refuses more indices than its buffer holds', () => {
      const kernel = new Xxh3Kernel()
      kernel.loadItem(vectorInput(4))
      expect(() => kernel.fillBloomIndices(0, BLOOM_INDEX_BATCH + 1, 15, 15)).to.throw(RangeError)
    })
  })
})
