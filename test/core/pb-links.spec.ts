import * as dagPb from '@ipld/dag-pb'
import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { identity } from 'multiformats/hashes/identity'
import { pbLinks } from '../../src/core/pb-links.ts'

/** The outcome of a decoder on some bytes: its links and sizes, or that it threw */
type Outcome = { links: Array<{ cid: string, size?: number }> } | { threw: true }

function ours (bytes: Uint8Array): Outcome {
  try {
    const { cids, sizes } = pbLinks(bytes)
    return { links: cids.map((cid, i) => ({ cid: `${cid.version}:${cid.code}:${cid.toString()}:${cid.multihash.code}:${cid.multihash.size}`, size: sizes[i] })) }
  } catch {
    return { threw: true }
  }
}

function reference (bytes: Uint8Array): Outcome {
  try {
    const node = dagPb.decode(bytes)
    return { links: node.Links.map(link => ({ cid: `${link.Hash.version}:${link.Hash.code}:${link.Hash.toString()}:${link.Hash.multihash.code}:${link.Hash.multihash.size}`, size: link.Tsize })) }
  } catch {
    return { threw: true }
  }
}

const digestBytes = fc.uint8Array({ minLength: 32, maxLength: 32 })

/** CIDs of the shapes pbLinks builds directly, and of others it leaves to CID.decode */
const linkCid: fc.Arbitrary<CID> = fc.oneof(
  digestBytes.map(bytes => CID.createV0(createDigest(0x12, bytes))),
  fc.tuple(fc.constantFrom(raw.code, dagPb.code, 0x71), digestBytes).map(([code, bytes]) => CID.createV1(code, createDigest(0x12, bytes))),
  // a two-byte codec varint, and an identity multihash: not the fast shapes
  digestBytes.map(bytes => CID.createV1(0x300001, createDigest(0x12, bytes))),
  fc.uint8Array({ maxLength: 40 }).map(bytes => CID.createV1(raw.code, identity.digest(bytes)))
)

const pbNode: fc.Arbitrary<dagPb.PBNode> = fc.record({
  data: fc.option(fc.uint8Array({ maxLength: 20 }), { nil: undefined }),
  links: fc.array(fc.record({
    cid: linkCid,
    name: fc.option(fc.string({ maxLength: 12 }), { nil: undefined }),
    size: fc.option(fc.nat(), { nil: undefined })
  }), { maxLength: 12 })
}).map(({ data, links }) => dagPb.prepare({
  ...(data == null ? {} : { Data: data }),
  Links: links.map(link => ({ Hash: link.cid, ...(link.name == null ? {} : { Name: link.name }), ...(link.size == null ? {} : { Tsize: link.size }) }))
}))

/** A block's bytes changed in one place: a byte replaced, dropped or inserted, or the end cut off */
const mutation = fc.record({
  kind: fc.constantFrom('replace', 'drop', 'insert', 'truncate'),
  at: fc.nat(),
  byte: fc.integer({ min: 0, max: 255 })
})

function mutate (bytes: Uint8Array, { kind, at, byte }: { kind: string, at: number, byte: number }): Uint8Array {
  const i = bytes.length === 0 ? 0 : at % bytes.length
  const copy = [...bytes]
  if (kind === 'replace' && copy.length > 0) {
    copy[i] = byte
  } else if (kind === 'drop') {
    copy.splice(i, 1)
  } else if (kind === 'insert') {
    copy.splice(i, 0, byte)
  } else {
    copy.length = i
  }
  return Uint8Array.from(copy)
}

describe('core/pb-links', () => {
  it('reads the same links and sizes as @ipld/dag-pb from any valid node', () => {
    fc.assert(fc.property(pbNode, node => {
      const bytes = dagPb.encode(node)
      const outcome = ours(bytes)
      expect(outcome).to.not.have.property('threw')
      expect(outcome).to.deep.equal(reference(bytes))
    }), { seed: 0x70, numRuns: 400 })
  })

  it('accepts and refuses exactly the blocks @ipld/dag-pb does, after any one-byte change', () => {
    let refused = 0
    let accepted = 0
    fc.assert(fc.property(pbNode, mutation, (node, change) => {
      const bytes = mutate(dagPb.encode(node), change)
      const outcome = ours(bytes)
      expect(outcome).to.deep.equal(reference(bytes))
      if ('threw' in outcome) {
        refused++
      } else {
        accepted++
      }
    }), { seed: 0x71, numRuns: 3000 })
    // both branches must have been taken for the comparison to mean anything
    expect(refused).to.be.greaterThan(100)
    expect(accepted).to.be.greaterThan(100)
  })

  it('gives each link its Tsize, and undefined where a link has none', () => {
    const a = CID.createV1(raw.code, identity.digest(Uint8Array.of(1)))
    const b = CID.createV0(createDigest(0x12, new Uint8Array(32).fill(7)))
    const bytes = dagPb.encode(dagPb.prepare({ Links: [{ Hash: a, Tsize: 300_000 }, { Hash: b, Name: 'b' }] }))
    const { cids, sizes } = pbLinks(bytes)
    expect(cids.map(cid => cid.toString())).to.deep.equal([a.toString(), b.toString()])
    expect(cids[1].version).to.equal(0)
    expect(sizes).to.deep.equal([300_000, undefined])
  })

  it('builds CIDs equal to CID.decode\'s, whose bytes are views into the block', () => {
    const digest = createDigest(0x12, new Uint8Array(32).fill(9))
    const v1 = CID.createV1(dagPb.code, digest)
    const bytes = dagPb.encode({ Links: [{ Hash: v1 }] })
    const [cid] = pbLinks(bytes).cids
    expect(cid.equals(v1)).to.be.true()
    expect(cid.multihash.digest).to.deep.equal(digest.digest)
    expect(cid.bytes.buffer).to.equal(bytes.buffer)
    expect(CID.asCID(cid)).to.equal(cid)
  })

  it('refuses links on both sides of Data, a second Data, unknown fields and a link without a Hash', () => {
    const hash = CID.createV1(raw.code, identity.digest(Uint8Array.of(2))).bytes
    const link = [0x12, hash.length + 2, 0x0a, hash.length, ...hash]
    const data = [0x0a, 1, 0x08]
    expect(() => pbLinks(Uint8Array.from([...link, ...data, ...link]))).to.throw(/duplicate Links section/)
    expect(() => pbLinks(Uint8Array.from([...data, ...data]))).to.throw(/duplicate Data section/)
    expect(() => pbLinks(Uint8Array.from([0x1a, 0]))).to.throw(/invalid fieldNumber/)
    expect(() => pbLinks(Uint8Array.from([0x12, 2, 0x18, 5]))).to.throw(/expected CID/)
    // Data first, then links: @ipld/dag-pb takes it, and so does pbLinks
    expect(pbLinks(Uint8Array.from([...data, ...link])).cids).to.have.lengthOf(1)
  })
})
