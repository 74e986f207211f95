import * as dagPb from '@ipld/dag-pb'
import { expect } from 'aegir/chai'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { FetchPlanner, blockKind, unixfsType } from '../../src/core/fetch-plan.ts'
import { cborBlock, rawBlock } from '../fixtures/dag.ts'
import type { Block } from '../fixtures/dag.ts'

/** UnixFS `Data` for a node of `type`, as the importer writes it: field 1 (Type) first */
function unixfsData (type: number, extra: number[] = []): Uint8Array {
  return Uint8Array.from([0x08, type, ...extra])
}

/** A dag-pb node with UnixFS `type` (undefined: no Data) linking to `links` */
async function unixfsNode (type: number | undefined, links: CID[]): Promise<Block> {
  const bytes = dagPb.encode(dagPb.prepare({ Data: type == null ? undefined : unixfsData(type), Links: links.map((Hash, i) => ({ Hash, Name: `entry-${i}` })) }))
  return { cid: CID.createV1(dagPb.code, await sha256.digest(bytes)), bytes }
}

const DIRECTORY = 1
const FILE = 2
const HAMT = 5

async function leaves (count: number, label: string): Promise<CID[]> {
  return Promise.all(Array.from({ length: count }, async (_, i) => (await rawBlock(`${label} ${i}`)).cid))
}

describe('core/fetch-plan', () => {
  describe('unixfsType and blockKind', () => {
    it('reads the Type field wherever it is, skipping other fields', () => {
      expect(unixfsType(unixfsData(2))).to.equal(2)
      // field 2 (Data, bytes) first, then Type: 0x12 len 0x02 'hi', 0x08 0x05
      expect(unixfsType(Uint8Array.from([0x12, 0x02, 0x68, 0x69, 0x08, 0x05]))).to.equal(5)
      // a fixed64 (wire type 1) before the Type
      expect(unixfsType(Uint8Array.from([0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x08, 0x01]))).to.equal(1)
    })

    it('says undefined for bytes that are not a UnixFS Data message', () => {
      expect(unixfsType(new Uint8Array(0))).to.be.undefined()
      expect(unixfsType(Uint8Array.from([0x12, 0x09, 0x00]))).to.be.undefined() // length past the end
      expect(unixfsType(Uint8Array.from([0x0b]))).to.be.undefined() // wire type 3
      expect(unixfsType(Uint8Array.from([0x08]))).to.be.undefined() // truncated varint
    })

    it('tells files, directories and HAMT shards from other blocks', async () => {
      const links = await leaves(2, 'kind')
      expect(blockKind((await unixfsNode(FILE, links)).cid, (await unixfsNode(FILE, links)).bytes)).to.deep.include({ kind: 'file' })
      const dir = await unixfsNode(DIRECTORY, links)
      const { kind, links: dirLinks } = blockKind(dir.cid, dir.bytes)
      expect(kind).to.equal('directory')
      expect(dirLinks.map(String)).to.deep.equal(links.map(String))
      const shard = await unixfsNode(HAMT, links)
      expect(blockKind(shard.cid, shard.bytes).kind).to.equal('directory')
      const bare = await unixfsNode(undefined, links)
      expect(blockKind(bare.cid, bare.bytes).kind).to.equal('other')
      const cbor = await cborBlock({ links })
      expect(blockKind(cbor.cid, cbor.bytes).kind).to.equal('other')
      // bytes that do not decode as dag-pb under a dag-pb CID
      expect(blockKind(CID.createV1(dagPb.code, (await rawBlock('x')).cid.multihash), Uint8Array.from([0xff, 0xff])).kind).to.equal('other')
    })
  })

  describe('FetchPlanner', () => {
    it('pulls a dag-pb block not seen yet alone, and blocks of other codecs with their subgraph', async () => {
      const planner = new FetchPlanner()
      const pb = await unixfsNode(DIRECTORY, [])
      expect(planner.plan(pb.cid)).to.deep.equal({ roots: [pb.cid], shallow: true })
      const cbor = await cborBlock({ a: 1 })
      expect(planner.plan(cbor.cid)).to.deep.equal({ roots: [cbor.cid], shallow: false })
      const leaf = CID.createV1(raw.code, (await rawBlock('leaf')).cid.multihash)
      expect(planner.plan(leaf)).to.deep.equal({ roots: [leaf], shallow: false })
    })

    it('follows a file a caller asked for with a pull of its whole subgraph, and not one nobody asked for', async () => {
      const planner = new FetchPlanner()
      const chunks = await leaves(3, 'chunk')
      const file = await unixfsNode(FILE, chunks)
      expect(planner.learn(file.cid, file.bytes, true)).to.deep.equal({ roots: [file.cid], shallow: false })
      const other = await unixfsNode(FILE, await leaves(2, 'other chunk'))
      expect(planner.learn(other.cid, other.bytes, false)).to.be.undefined()
      // a chunk asked for later is fetched with what is left of its file
      expect(planner.plan(chunks[1])).to.deep.equal({ roots: [file.cid], shallow: false })
    })

    it('fetches one child of a directory alone, and all its children once a second is asked for', async () => {
      const planner = new FetchPlanner()
      const entries = await Promise.all([0, 1, 2, 3].map(async i => (await unixfsNode(FILE, await leaves(1, `entry ${i}`))).cid))
      const dir = await unixfsNode(DIRECTORY, entries)
      expect(planner.learn(dir.cid, dir.bytes, true)).to.be.undefined()
      expect(planner.plan(entries[2])).to.deep.equal({ roots: [entries[2]], shallow: true })
      // asking for the same child again is still one child
      expect(planner.plan(entries[2])).to.deep.equal({ roots: [entries[2]], shallow: true })
      const batch = planner.plan(entries[0])
      expect(batch.shallow).to.be.true()
      expect(batch.roots.map(String)).to.have.members(entries.map(String))
      expect(batch.roots[0].toString()).to.equal(entries[0].toString())
      // the batch is made once: a third child is planned alone
      expect(planner.plan(entries[3])).to.deep.equal({ roots: [entries[3]], shallow: true })
    })

    it('caps a batch at maxRoots and forgets the oldest children past maxRemembered', async () => {
      const entries = await leaves(10, 'wide')
      const dir = await unixfsNode(DIRECTORY, entries)
      const capped = new FetchPlanner({ maxRoots: 4 })
      capped.learn(dir.cid, dir.bytes, true)
      capped.plan(entries[5])
      expect(capped.plan(entries[6]).roots).to.have.lengthOf(4)

      const forgetful = new FetchPlanner({ maxRemembered: 3 })
      forgetful.learn(dir.cid, dir.bytes, true)
      // entries 0..6 were forgotten: a pull of a raw block with its subgraph, not a batch
      forgetful.plan(entries[0])
      expect(forgetful.plan(entries[1])).to.deep.equal({ roots: [entries[1]], shallow: false })
      // entries 7..9 are remembered
      forgetful.plan(entries[7])
      expect(forgetful.plan(entries[8]).roots).to.have.lengthOf(10)
    })
  })
})
