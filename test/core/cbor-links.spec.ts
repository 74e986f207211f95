import * as dagCbor from '@ipld/dag-cbor'
import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { Yielder } from '../../src/core/budget.ts'
import { dagCborLinks } from '../../src/core/cbor-links.ts'
import { LinkReader } from '../../src/core/links.ts'
import { InvalidBlockError } from '../../src/errors.ts'
import { rejection } from '../fixtures/rejection.ts'

/** A distinct CID per number */
async function cidOf (n: number): Promise<CID> {
  return CID.createV1(n % 2 === 0 ? 0x55 : 0x71, await sha256.digest(new TextEncoder().encode(`node ${n}`)))
}

/** Links of a decoded value in a depth-first search, maps in key order (what a byte scan finds) */
function expectedLinks (value: unknown, found: CID[] = []): CID[] {
  const cid = CID.asCID(value)
  if (cid != null) {
    found.push(cid)
  } else if (Array.isArray(value)) {
    value.forEach(child => expectedLinks(child, found))
  } else if (value != null && typeof value === 'object' && !(value instanceof Uint8Array)) {
    const entries = Object.entries(value).sort(([a], [b]) => a.length - b.length || (a < b ? -1 : 1))
    entries.forEach(([, child]) => expectedLinks(child, found))
  }
  return found
}

describe('core/cbor-links', () => {
  const pool: CID[] = []

  before(async () => {
    for (let i = 0; i < 16; i++) {
      pool.push(await cidOf(i))
    }
  })

  it('finds the links of any dag-cbor value, in the order of the bytes', async () => {
    const leaf = fc.oneof(
      fc.integer({ min: 0, max: pool.length - 1 }).map(i => pool[i]),
      fc.integer(), fc.boolean(), fc.constant(null), fc.string({ maxLength: 40 }),
      fc.uint8Array({ maxLength: 300 }), fc.double({ noNaN: true, noDefaultInfinity: true })
    )
    const { tree } = fc.letrec<{ tree: unknown }>(tie => ({
      tree: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(tie('tree'), { maxLength: 8 }), fc.dictionary(fc.string({ maxLength: 12 }), tie('tree'), { maxKeys: 8 }))
    }))
    await fc.assert(fc.asyncProperty(tree, async (value) => {
      const bytes = dagCbor.encode(value)
      const links = await dagCborLinks(bytes)
      expect(links.map(String)).to.deep.equal(expectedLinks(dagCbor.decode(bytes)).map(String))
    }), { numRuns: 300 })
  })

  it('reads 50,000 links of a 2 MiB block in slices, giving the event loop turns', async () => {
    const links = Array.from({ length: 50_000 }, (_, i) => pool[i % pool.length])
    const bytes = dagCbor.encode({ links, pad: new Uint8Array(2 * 1024 * 1024 - 50_000 * 40) })
    let ticks = 0
    const timer = setInterval(() => { ticks++ }, 1)
    const found = await dagCborLinks(bytes, new Yielder(2))
    clearInterval(timer)
    expect(found).to.have.lengthOf(50_000)
    expect(found[49_999].equals(links[49_999])).to.equal(true)
    expect(ticks).to.be.greaterThan(0)
  })

  it('LinkReader scans large dag-cbor blocks and decodes small ones, with the same links', async () => {
    const reader = new LinkReader()
    for (const count of [10, 5_000]) {
      const links = Array.from({ length: count }, (_, i) => pool[i % pool.length])
      const bytes = dagCbor.encode({ links })
      const cid = CID.createV1(dagCbor.code, await sha256.digest(bytes))
      expect((await reader.links(cid, bytes)).map(String)).to.deep.equal(links.map(String))
    }
  })

  it('malformed blocks are an InvalidBlockError', async () => {
    const good = dagCbor.encode({ a: pool[1], b: [1, 2, 3] })
    const cases: Array<[string, Uint8Array]> = [
      ['truncated', good.subarray(0, good.byteLength - 3)],
      ['trailing bytes', Uint8Array.from([...good, 0x01])],
      ['tag 42 on an integer', Uint8Array.from([0xd8, 0x2a, 0x01])],
      ['tag 42 without the 0x00 prefix', Uint8Array.from([0xd8, 0x2a, 0x42, 0x01, 0x55])],
      ['tag 42 holding junk', Uint8Array.from([0xd8, 0x2a, 0x43, 0x00, 0xff, 0xff])],
      ['indefinite length', Uint8Array.from([0x9f, 0x01, 0xff])],
      ['a string longer than the block', Uint8Array.from([0x5a, 0xff, 0xff, 0xff, 0xff, 0x00])]
    ]
    for (const [name, bytes] of cases) {
      expect(await rejection(dagCborLinks(bytes)), name).to.be.an.instanceOf(InvalidBlockError)
    }
  })
})
