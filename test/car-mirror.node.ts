import { unixfs } from '@helia/unixfs'
import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import all from 'it-all'
import { concat } from 'uint8arrays/concat'
import { bloomItem } from '../src/core/index.ts'
import { BlocksNotAvailableError, PROTOCOL_ID, PUSH_PROTOCOL_SUFFIX, SessionRefusedError } from '../src/index.ts'
import { FramedStream } from '../src/transport/framed-stream.ts'
import { cborBlock, keys, rawBlock } from './fixtures/dag.ts'
import { TREE_V1, TREE_V2, addLargeFile, addTree, allBlocks, cborDag, dagBlocks, difference, fileContent, heldOf, holdsExactly, putBlocks, pseudoRandomBytes, totalBytes, treeVersions, verifiesSha256 } from './fixtures/dags.ts'
import { testNodes } from './fixtures/nodes.ts'
import { rejection } from './fixtures/rejection.ts'
import { eventually, firstMessage, readUntilEnd, scriptServer } from './hostile/helpers.ts'
import type { PullMessage } from '../src/core/index.ts'
import type { CarMirrorProgressEvents, ServedSession, TransferStats } from '../src/index.ts'
import type { Block } from './fixtures/dag.ts'
import type { TreeVersions } from './fixtures/dags.ts'
import type { TestNode, TestNodeOptions } from './fixtures/nodes.ts'
import type { AbortOptions } from '@libp2p/interface'
import type { Pair } from 'interface-blockstore'
import type { CID } from 'multiformats/cid'

const KiB = 1024
const MiB = 1024 * KiB

type DetailOf<T extends CarMirrorProgressEvents['type']> = Extract<CarMirrorProgressEvents, { type: T }>['detail']

/** Progress events of one transfer, with the detail of each */
class ProgressLog {
  readonly events: CarMirrorProgressEvents[] = []

  readonly onProgress = (event: CarMirrorProgressEvents): void => {
    this.events.push(event)
  }

  of<T extends CarMirrorProgressEvents['type']> (type: T): Array<DetailOf<T>> {
    return this.events.filter(event => event.type === type).map(event => event.detail as DetailOf<T>)
  }
}

/** Checks that the store holds exactly `expected` under `roots`: same CIDs, same bytes */
async function expectMirrored (node: TestNode, roots: CID | CID[], expected: Map<string, Block>): Promise<void> {
  const walked = await dagBlocks(node.blockstore, roots)
  expect([...walked.keys()].sort()).to.deep.equal([...expected.keys()].sort())
  for (const block of expected.values()) {
    expect(await holdsExactly(node.blockstore, block), `holds ${block.cid}`).to.be.true()
  }
}

/** Reads a whole file from a UnixFS tree in the node's own store */
async function readFile (node: TestNode, root: CID, path: string): Promise<Uint8Array> {
  return concat(await all(unixfs(node).cat(root, { path, offline: true })))
}

/** The CID of a directory entry reached by `path` from `root` */
async function entryCid (node: TestNode, root: CID, path: string): Promise<CID> {
  const parts = path.split('/')
  let cid = root
  for (const part of parts) {
    let found: CID | undefined
    for await (const entry of unixfs(node).ls(cid, { offline: true })) {
      if (entry.name === part) {
        found = entry.cid
      }
    }
    if (found == null) {
      throw new Error(`no ${part} in ${cid}`)
    }
    cid = found
  }
  return cid
}

/** A real in-memory store whose writes take `delay` ms each, so that a receiver falls behind its sender */
class SlowBlockstore extends MemoryBlockstore {
  private readonly delay: number
  /** Writes one block at a time, as a disk that cannot keep up would */
  private readonly serial: boolean
  private last: Promise<unknown> = Promise.resolve()

  constructor (delay: number, serial = false) {
    super()
    this.delay = delay
    this.serial = serial
  }

  async put (key: CID, val: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>, options?: AbortOptions): Promise<CID> {
    const turn = this.serial ? this.last : Promise.resolve()
    const written = turn.then(async () => {
      await new Promise(resolve => setTimeout(resolve, this.delay))
      return super.put(key, val, options)
    })
    this.last = written.catch(() => {})
    return written
  }
}

function expectStatsInvariants (stats: TransferStats): void {
  // invariants that hold for every transfer
  expect(stats.bytesReceived).to.be.at.least(stats.blockBytesReceived)
  expect(stats.bytesSent).to.be.at.least(stats.blockBytesSent)
  expect(stats.durationMs).to.be.a('number').and.at.least(0)
  expect(stats.roundTrips).to.be.at.least(1)
}

describe('CarMirror over libp2p', function () {
  this.timeout(120_000)
  const { node, addr } = testNodes()

  /** The Bloom a pull of `root` by `client` carries (a scripted server records it, then refuses) */
  async function pullBloom (client: TestNode, root: CID, hints: CID[]): Promise<NonNullable<PullMessage['bloom']>> {
    const server = await node()
    let bloom: PullMessage['bloom']
    await scriptServer(server, async (framed) => {
      const first = await firstMessage(framed)
      if (first.type === 'pull') {
        bloom = first.bloom
      }
      await framed.write({ type: 'error', code: 'refused', message: 'recording only', cids: [] })
      await framed.closeWrite()
    })
    await rejection(client.carMirror.pull(addr(server), root, { hints }))
    expect(bloom, 'the pull carried a Bloom').to.not.be.undefined()
    return bloom as NonNullable<PullMessage['bloom']>
  }

  describe('pull', () => {
    it('pulls a UnixFS directory tree cold in one round trip', async () => {
      const server = await node()
      const client = await node()
      const root = await addTree(server, TREE_V1)
      const expected = await dagBlocks(server.blockstore, root)
      expect(expected.size).to.be.greaterThan(20)

      const stats = await client.carMirror.pull(addr(server), root)

      await expectMirrored(client, root, expected)
      expect(stats.blocksReceived).to.equal(expected.size)
      expect(stats.blockBytesReceived).to.equal(totalBytes(expected.values()))
      expect(stats.duplicateBlocks).to.equal(0)
      expect(stats.roundTrips).to.equal(1)
      expect(stats.blocksSent).to.equal(0)
      expect(stats.blockBytesSent).to.equal(0)
      expect(keys(stats.roots)).to.deep.equal(keys([root]))
      // an empty store sends no Bloom; the request and the done frame are all the client writes
      expect(stats.bloomBytes).to.equal(0)
      expect(stats.bytesSent).to.be.lessThan(1024)
      // framing costs little: a few bytes per block plus the CIDs and control frames
      expect(stats.bytesReceived - stats.blockBytesReceived).to.be.lessThan(expected.size * 64 + 1024)
      expectStatsInvariants(stats)
      // the files read back from the client's own store
      for (const file of TREE_V1) {
        expect(await readFile(client, root, file.path)).to.equalBytes(fileContent(file))
      }
    })

    it('pulls a large file (8 MiB in 256 KiB chunks)', async () => {
      const server = await node()
      const client = await node()
      const size = 8 * MiB
      const root = await addLargeFile(server, size, 1042)
      const expected = await dagBlocks(server.blockstore, root)
      // 32 raw leaves and a dag-pb file node
      expect(expected.size).to.equal(33)

      const stats = await client.carMirror.pull(addr(server), root)

      await expectMirrored(client, root, expected)
      expect(stats.blocksReceived).to.equal(33)
      expect(stats.blockBytesReceived).to.equal(totalBytes(expected.values()))
      expect(stats.blockBytesReceived).to.be.greaterThan(size)
      expect(stats.duplicateBlocks).to.equal(0)
      expect(stats.roundTrips).to.equal(1)
      const chunks: Uint8Array[] = []
      for await (const chunk of unixfs(client).cat(root, { offline: true })) {
        chunks.push(chunk)
      }
      const content = new Uint8Array(size)
      let offset = 0
      for (const chunk of chunks) {
        content.set(chunk, offset)
        offset += chunk.byteLength
      }
      expect(offset).to.equal(size)
      expect(content).to.equalBytes(pseudoRandomBytes(size, 1042))
    })

    it('pulls a 24 MiB file into a slow store (the receiver falls behind and the stream is paused)', async () => {
      const server = await node()
      const store = new SlowBlockstore(5)
      const client = await node({ blockstore: store })
      const root = await addLargeFile(server, 24 * MiB, 1024)
      const expected = await dagBlocks(server.blockstore, root)
      expect(expected.size).to.equal(97)

      const stats = await client.carMirror.pull(addr(server), root)

      await expectMirrored(client, root, expected)
      expect(stats.blocksReceived).to.equal(expected.size)
      expect(stats.duplicateBlocks).to.equal(0)
    })

    it('pulls a 96 MiB file into a slow store: a stream paused again while it hands over what it buffered lets no more in (libp2p resets a stream whose paused buffer passes 32 MiB)', async () => {
      const server = await node()
      const store = new SlowBlockstore(8, true)
      const client = await node({ blockstore: store })
      const root = await addLargeFile(server, 96 * MiB, 1096)
      const expected = await dagBlocks(server.blockstore, root)

      const stats = await client.carMirror.pull(addr(server), root)

      await expectMirrored(client, root, expected)
      expect(stats.blocksReceived).to.equal(expected.size)
    })

    it('pulls several roots in one session, counting shared blocks once', async () => {
      const server = await node()
      const client = await node()
      const tree = await addTree(server, TREE_V1)
      const file = await addLargeFile(server, 700 * KiB, 1007)
      const cbor = await cborDag('multi')
      await putBlocks(server.blockstore, cbor.stored)
      // a subdirectory of the tree as a root of its own: all its blocks are already under `tree`
      const sub = await entryCid(server, tree, 'src/lib')
      const roots = [tree, file, cbor.root, sub]
      const expected = await dagBlocks(server.blockstore, roots)
      const treeBlocks = await dagBlocks(server.blockstore, tree)
      const fileBlocks = await dagBlocks(server.blockstore, file)
      expect(expected.size).to.equal(treeBlocks.size + fileBlocks.size + cbor.stored.length)

      const stats = await client.carMirror.pull(addr(server), roots)

      await expectMirrored(client, roots, expected)
      expect(stats.blocksReceived).to.equal(expected.size)
      expect(stats.duplicateBlocks).to.equal(0)
      expect(keys(stats.roots)).to.deep.equal(keys(roots))
    })

    it('pulls a dag-cbor DAG with shared children, raw leaves and identity CIDs; identity blocks are never sent', async () => {
      const server = await node()
      const client = await node()
      const dag = await cborDag('cbor')
      await putBlocks(server.blockstore, dag.stored)
      const progress = new ProgressLog()

      const stats = await client.carMirror.pull(addr(server), dag.root, { onProgress: progress.onProgress })

      for (const block of dag.stored) {
        expect(await holdsExactly(client.blockstore, block), `holds ${block.cid}`).to.be.true()
      }
      expect(stats.blocksReceived).to.equal(dag.stored.length)
      expect(stats.blockBytesReceived).to.equal(totalBytes(dag.stored))
      expect(stats.duplicateBlocks).to.equal(0)
      const received = keys(progress.of('car-mirror:block:received').map(detail => detail.cid))
      expect(received.sort()).to.deep.equal(keys(dag.stored.map(b => b.cid)).sort())
      for (const block of dag.identity) {
        expect(received).to.not.include(block.cid.toString())
      }
    })

    it('pulls what an identity root links to', async () => {
      const server = await node()
      const client = await node()
      const dag = await cborDag('identity-root')
      await putBlocks(server.blockstore, dag.stored)
      const [idRoot] = dag.identity
      const expected = await dagBlocks(server.blockstore, idRoot.cid)
      // R7, M2 and what M2 links to
      expect(expected.size).to.equal(4)

      const stats = await client.carMirror.pull(addr(server), idRoot.cid)

      await expectMirrored(client, idRoot.cid, expected)
      expect(stats.blocksReceived).to.equal(expected.size)
    })

    it('resolves at once, without a round trip, when the client already holds the DAG', async () => {
      const server = await node()
      const client = await node()
      const dag = await cborDag('held')
      await putBlocks(server.blockstore, dag.stored)
      await putBlocks(client.blockstore, dag.stored)

      const stats = await client.carMirror.pull(addr(server), dag.root)

      expect(stats.blocksReceived).to.equal(0)
      expect(stats.bytesReceived).to.equal(0)
    })
  })

  describe('warm pull', () => {
    interface Versions extends TreeVersions {
      server: TestNode
    }

    async function versions (): Promise<Versions> {
      const server = await node()
      const setup = { server, ...await treeVersions(server) }
      // a few files changed deep in the tree: the new blocks are a small part of v2
      expect(setup.fresh.size).to.be.greaterThan(3)
      expect(setup.fresh.size * 3).to.be.lessThan(setup.v2Blocks.size)
      return setup
    }

    function expectOnlyNewBlocks (stats: TransferStats, { v2Blocks, fresh }: Versions): void {
      expect(stats.blocksReceived).to.equal(fresh.size)
      expect(stats.blocksReceived).to.be.lessThan(v2Blocks.size / 3)
      expect(stats.duplicateBlocks).to.equal(0)
      expect(stats.blockBytesReceived).to.equal(totalBytes(fresh.values()))
      expect(stats.bytesReceived).to.be.lessThan(totalBytes(fresh.values()) + fresh.size * 64 + 1024)
      expect(stats.bytesReceived).to.be.lessThan(totalBytes(v2Blocks.values()) / 3)
    }

    it('with a hint to the previous version receives only the new blocks', async () => {
      const setup = await versions()
      // small-store mode off: the Bloom is built from the hint
      const client = await node({ smallStoreBlocks: 0 })
      await client.carMirror.pull(addr(setup.server), setup.v1)
      const progress = new ProgressLog()

      const stats = await client.carMirror.pull(addr(setup.server), setup.v2, { hints: [setup.v1], onProgress: progress.onProgress })

      await expectMirrored(client, setup.v2, setup.v2Blocks)
      expectOnlyNewBlocks(stats, setup)
      // the request carried a Bloom of v1
      const [request] = progress.of('car-mirror:status:sent')
      expect(request.bloomBytes).to.be.greaterThan(0)
      expect(stats.bloomBytes).to.be.at.least(request.bloomBytes)
    })

    it('without a hint puts a small store into the Bloom whole and receives only the new blocks', async () => {
      const setup = await versions()
      const client = await node()
      await client.carMirror.pull(addr(setup.server), setup.v1)

      const stats = await client.carMirror.pull(addr(setup.server), setup.v2)

      await expectMirrored(client, setup.v2, setup.v2Blocks)
      expectOnlyNewBlocks(stats, setup)
      expect(stats.bloomBytes).to.be.greaterThan(0)
    })

    it('without a hint or small-store mode still completes, and the streamed Bloom keeps duplicates bounded', async () => {
      const setup = await versions()
      const client = await node({ smallStoreBlocks: 0 })
      await client.carMirror.pull(addr(setup.server), setup.v1)

      const stats = await client.carMirror.pull(addr(setup.server), setup.v2)

      await expectMirrored(client, setup.v2, setup.v2Blocks)
      expect(stats.blocksReceived - stats.duplicateBlocks).to.equal(setup.fresh.size)
      expect(stats.blocksReceived).to.be.lessThan(setup.v2Blocks.size)
    })
  })

  describe('partial stores', () => {
    it('completes a client store holding some subtrees whose deep leaves are missing, receiving only what is missing', async () => {
      const server = await node()
      const client = await node()
      const root = await addTree(server, TREE_V1)
      const all = await dagBlocks(server.blockstore, root)
      // the client holds src/ except the leaves of a deep multi-chunk file, and the bare assets/images directory node
      const src = await dagBlocks(server.blockstore, await entryCid(server, root, 'src'))
      const deepFile = await entryCid(server, root, 'src/lib/deep/deeper/deepest.bin')
      const deepLeaves = difference(await dagBlocks(server.blockstore, deepFile), new Map([[deepFile.toString(), all.get(deepFile.toString()) as Block]]))
      expect(deepLeaves.size).to.equal(3)
      const images = all.get((await entryCid(server, root, 'assets/images')).toString()) as Block
      const held = new Map([...difference(src, deepLeaves), [images.cid.toString(), images]])
      await putBlocks(client.blockstore, held.values())
      const missing = difference(all, held)

      const stats = await client.carMirror.pull(addr(server), root)

      await expectMirrored(client, root, all)
      expect(stats.blocksReceived).to.equal(missing.size)
      expect(stats.duplicateBlocks).to.equal(0)
      // the deep leaves sit below a held block the sender skipped: one straggler round finds them
      expect(stats.roundTrips).to.be.within(2, 3)
    })

    it('a client holding all but a few deep leaves asks for just those', async () => {
      const server = await node()
      const client = await node()
      const root = await addTree(server, TREE_V1)
      const all = await dagBlocks(server.blockstore, root)
      const deepFile = await entryCid(server, root, 'assets/images/a.bin')
      const leaves = [...difference(await dagBlocks(server.blockstore, deepFile), new Map([[deepFile.toString(), all.get(deepFile.toString()) as Block]])).values()]
      const gone = [leaves[0], leaves[leaves.length - 1]]
      const goneKeys = new Set(keys(gone.map(b => b.cid)))
      await putBlocks(client.blockstore, [...all.values()].filter(b => !goneKeys.has(b.cid.toString())))

      const stats = await client.carMirror.pull(addr(server), root)

      await expectMirrored(client, root, all)
      expect(stats.blocksReceived).to.equal(2)
      expect(stats.duplicateBlocks).to.equal(0)
      expect(stats.roundTrips).to.equal(1)
    })

    it('with a hint whose held blocks have missing children (small-store mode off) completes with a straggler round', async () => {
      // root -> [C, A], A -> [H], H -> [M]: the client holds H and hints at it; the server skips H and so M
      const server = await node()
      const client = await node({ smallStoreBlocks: 0 })
      const M = await rawBlock('e2e crossing M')
      const H = await cborBlock({ held: true, m: M.cid })
      const A = await cborBlock({ a: H.cid })
      const C = await rawBlock('e2e crossing C')
      const root = await cborBlock({ c: C.cid, a: A.cid })
      await putBlocks(server.blockstore, [root, C, A, H, M])
      await putBlocks(client.blockstore, [H])

      const stats = await client.carMirror.pull(addr(server), root.cid, { hints: [H.cid], signal: AbortSignal.timeout(10_000) })

      for (const block of [root, C, A, H, M]) {
        expect(await holdsExactly(client.blockstore, block)).to.be.true()
      }
      expect(stats.blocksReceived).to.equal(4)
      expect(stats.roundTrips).to.equal(2)
    })

    it('a warm pull of v2 with a hint to a partly held v1 (small-store mode off) completes', async () => {
      const server = await node()
      const client = await node({ smallStoreBlocks: 0 })
      const v1 = await addTree(server, TREE_V1)
      const v2 = await addTree(server, TREE_V2)
      const v1Blocks = await dagBlocks(server.blockstore, v1)
      const v2Blocks = await dagBlocks(server.blockstore, v2)
      // the client holds every other block of v1 (as after interrupted transfers)
      const held = [...v1Blocks.values()].filter((_, i) => i % 2 === 0)
      await putBlocks(client.blockstore, held)
      const heldInV2 = held.filter(block => v2Blocks.has(block.cid.toString()))

      const stats = await client.carMirror.pull(addr(server), v2, { hints: [v1], signal: AbortSignal.timeout(10_000) })

      await expectMirrored(client, v2, v2Blocks)
      // every block the client lacked arrived once; held blocks below missing ones are not in
      // the first Bloom (the hint walk cannot reach them), so some arrive as duplicates
      expect(stats.blocksReceived - stats.duplicateBlocks).to.equal(v2Blocks.size - heldInV2.length)
      expect(stats.duplicateBlocks).to.be.at.most(heldInV2.length)
    })

    it('recovers from a Bloom false positive with a straggler round', async () => {
      const server = await node()
      const client = await node()
      // unrelated blocks in the client's (small) store: its whole store goes into the Bloom, which they fill
      const unrelated = await Promise.all(Array.from({ length: 60 }, async (_, i) => rawBlock(`unrelated ${i}`)))
      await putBlocks(client.blockstore, unrelated)
      // the very Bloom the client sends (its store's), and a block it wrongly claims to hold
      const bloom = await pullBloom(client, (await rawBlock('probe root')).cid, [])
      let falsePositive: Block | undefined
      for (let i = 0; falsePositive == null && i < 1_000_000; i++) {
        const candidate = await rawBlock(`candidate ${i}`)
        if (bloom.has(bloomItem(candidate.cid))) {
          falsePositive = candidate
        }
      }
      if (falsePositive == null) {
        throw new Error('no false positive found')
      }
      const sibling = await rawBlock('an honest sibling')
      const root = await cborBlock({ fp: falsePositive.cid, sibling: sibling.cid })
      await putBlocks(server.blockstore, [root, falsePositive, sibling])

      const stats = await client.carMirror.pull(addr(server), root.cid)

      for (const block of [root, falsePositive, sibling]) {
        expect(await holdsExactly(client.blockstore, block)).to.be.true()
      }
      expect(stats.blocksReceived).to.equal(3)
      expect(stats.duplicateBlocks).to.equal(0)
      expect(stats.roundTrips).to.equal(2)
    })
  })

  describe('missing blocks on the server', () => {
    it('rejects fast with BlocksNotAvailableError naming a missing deep block', async () => {
      // Helia's own delete wants content routing: delete from the store underneath instead
      const serverStore = new MemoryBlockstore()
      const server = await node({ blockstore: serverStore })
      const client = await node()
      const root = await addTree(server, TREE_V1)
      const all = await dagBlocks(server.blockstore, root)
      const deepFile = await entryCid(server, root, 'src/lib/deep/deeper/deepest.bin')
      const leaves = [...difference(await dagBlocks(server.blockstore, deepFile), new Map([[deepFile.toString(), all.get(deepFile.toString()) as Block]])).values()]
      const lost = leaves[1]
      await serverStore.delete(lost.cid)

      // the test's own deadline, far below the 60 s idle timeout: a hang fails here with a TimeoutError
      const started = Date.now()
      const err = await rejection(client.carMirror.pull(addr(server), root, { signal: AbortSignal.timeout(10_000) }))
      const elapsed = Date.now() - started

      expect(err.name).to.equal(BlocksNotAvailableError.name)
      expect(keys((err as BlocksNotAvailableError).cids)).to.deep.equal(keys([lost.cid]))
      expect(elapsed).to.be.lessThan(5000)
      // everything else was stored, intact
      expect(await client.blockstore.has(lost.cid)).to.be.false()
      for (const block of all.values()) {
        if (!block.cid.equals(lost.cid)) {
          expect(await holdsExactly(client.blockstore, block), `holds ${block.cid}`).to.be.true()
        }
      }
    })

    it('rejects fast with BlocksNotAvailableError naming a missing root', async () => {
      const server = await node()
      const client = await node()
      const nowhere = await rawBlock('a block nobody has')

      const started = Date.now()
      const err = await rejection(client.carMirror.pull(addr(server), nowhere.cid, { signal: AbortSignal.timeout(10_000) }))

      const elapsed = Date.now() - started

      expect(err.name).to.equal(BlocksNotAvailableError.name)
      expect(keys((err as BlocksNotAvailableError).cids)).to.deep.equal(keys([nowhere.cid]))
      expect(elapsed).to.be.lessThan(5000)
    })
  })

  describe('dial failures', () => {
    it('a pull from an address nothing listens on rejects with an Error named DialError, its cause the transport\'s event', async () => {
      const client = await node()
      const root = await rawBlock('nobody is there')
      // a port that was just free: nothing listens on it now
      const gone = await node()
      const address = gone.libp2p.getMultiaddrs()[0].decapsulateCode(421)
      await gone.stop()
      const err = await rejection(client.carMirror.pull(address, root.cid))
      expect(err).to.be.an.instanceOf(Error)
      expect(err.name).to.equal('DialError')
      expect(err.message).to.match(/^Dialling the peer failed: \S/)
      expect(err.cause).to.not.be.undefined()
      expect(await client.blockstore.has(root.cid)).to.be.false()
    })
  })

  describe('idle timeout', () => {
    it('a client pull whose server never answers is aborted after idleTimeout', async () => {
      // a peer that accepts CAR Mirror streams and then says nothing
      const silent = await node()
      await silent.libp2p.unhandle(silent.carMirror.protocol)
      await silent.libp2p.handle(silent.carMirror.protocol, () => {})
      const client = await node({ idleTimeout: 1000 })
      const dag = await cborDag('silent')

      const started = Date.now()
      const err = await rejection(client.carMirror.pull(addr(silent), dag.root, { signal: AbortSignal.timeout(10_000) }))

      // not the test's own 10 s deadline
      expect(err.name).to.not.equal('TimeoutError')
      expect(Date.now() - started).to.be.lessThan(5000)
    })

    it('a server ends an inbound session that goes quiet after idleTimeout', async () => {
      const server = await node({ idleTimeout: 1000 })
      const client = await node()
      const stream = await client.libp2p.dialProtocol(addr(server), server.carMirror.protocol)
      const closed = new Promise<number>(resolve => {
        stream.addEventListener('close', () => { resolve(Date.now()) }, { once: true })
      })
      const started = Date.now()

      // say nothing at all
      const ended = await Promise.race([closed, new Promise<undefined>(resolve => setTimeout(resolve, 8000))])

      expect(ended, 'the server closed the stream').to.be.a('number')
      expect((ended ?? Infinity) - started).to.be.lessThan(5000)
      stream.abort(new Error('test over'))
    })
  })

  describe('push', () => {
    it('pushes a tree cold to a server that allows it', async () => {
      const server = await node({ allowPush: () => true })
      const client = await node()
      const root = await addTree(client, TREE_V1)
      const expected = await dagBlocks(client.blockstore, root)

      const stats = await client.carMirror.push(addr(server), root)

      await expectMirrored(server, root, expected)
      expect(stats.blocksSent).to.equal(expected.size)
      expect(stats.blockBytesSent).to.equal(totalBytes(expected.values()))
      expect(stats.blocksReceived).to.equal(0)
      expect(stats.duplicateBlocks).to.equal(0)
      expect(stats.roundTrips).to.be.within(1, 2)
      expectStatsInvariants(stats)
    })

    it('pushes a dag-cbor DAG without ever sending identity blocks', async () => {
      const server = await node({ allowPush: () => true })
      const client = await node()
      const dag = await cborDag('push')
      await putBlocks(client.blockstore, dag.stored)
      const progress = new ProgressLog()

      const stats = await client.carMirror.push(addr(server), dag.root, { onProgress: progress.onProgress })

      for (const block of dag.stored) {
        expect(await holdsExactly(server.blockstore, block)).to.be.true()
      }
      expect(stats.blocksSent).to.equal(dag.stored.length)
      const sent = keys(progress.of('car-mirror:block:sent').map(detail => detail.cid))
      expect(sent.sort()).to.deep.equal(keys(dag.stored.map(b => b.cid)).sort())
    })

    it('a push without hints from a peer that pushed before is greeted with a Bloom of its previous DAG; a new peer\'s is not', async () => {
      // no store Bloom: the greeting then shows what the server walked as hints
      const server = await node({ allowPush: () => true, storeBloomBytes: 0 })
      const client = await node()
      const stranger = await node()
      const v1 = await addTree(client, TREE_V1)
      // a version the server holds no root of when each is pushed
      const v3 = await addTree(client, [...TREE_V2, { path: 'extra.txt', size: 900, seed: 1001 }])
      const v2 = await addTree(stranger, TREE_V2)
      await client.carMirror.push(addr(server), v1)
      const greetingBloom = async (pusher: TestNode, root: CID): Promise<number | undefined> => {
        const progress = new ProgressLog()
        await pusher.carMirror.push(addr(server), root, { onProgress: progress.onProgress })
        await expectMirrored(server, root, await dagBlocks(pusher.blockstore, root))
        return progress.of('car-mirror:status:received')[0]?.bloomBytes
      }
      expect(await greetingBloom(stranger, v2)).to.equal(0)
      expect(await greetingBloom(client, v3)).to.be.above(0)
    })

    it('a push without hints names, as hints, the roots last pulled from or pushed to that peer; to a new peer, none', async () => {
      const server = await node()
      const client = await node()
      const stranger = await node()
      const v1 = await addTree(server, TREE_V1)
      await client.carMirror.pull(addr(server), v1)
      const v2 = await addTree(client, TREE_V2)
      await addTree(stranger, TREE_V2)
      // the server now only records what each push names, and refuses it
      const named: CID[][] = []
      await scriptServer(server, async (framed) => {
        const first = await firstMessage(framed)
        if (first.type === 'push') {
          named.push(first.hints)
        }
        await framed.write({ type: 'error', code: 'refused', message: 'recording only', cids: [] })
        await framed.closeWrite()
      })

      expect(await rejection(client.carMirror.push(addr(server), v2))).to.be.an.instanceOf(SessionRefusedError)
      expect(await rejection(stranger.carMirror.push(addr(server), v2))).to.be.an.instanceOf(SessionRefusedError)
      expect(named.map(hints => hints.map(String))).to.deep.equal([[v1.toString()], []])
    })

    describe('the push protocol id', () => {
      const PUSH_ID = `${PROTOCOL_ID}${PUSH_PROTOCOL_SUFFIX}`

      it('a push opens its stream with the push id, and the server opens its window for it before the first frame', async () => {
        const server = await node({ allowPush: () => true })
        const client = await node()
        const root = await addLargeFile(client, MiB, 41)
        const protocols: string[] = []
        await client.carMirror.push(addr(server), root, {
          onProgress: (event) => {
            if (event.type === 'car-mirror:block:sent') {
              protocols.push(...client.libp2p.getConnections().flatMap(c => c.streams).filter(s => s.direction === 'outbound').map(s => s.protocol))
            }
          }
        })
        expect(protocols).to.include(PUSH_ID)
        expect(await server.blockstore.has(root)).to.be.true()

        // a stream on the push id that has sent nothing yet already holds an opened window
        const stream = await client.libp2p.dialProtocol(addr(server), PUSH_ID)
        expect(await eventually(() => server.carMirror.stats().budgets.windowBytes.used > 0)).to.be.true()
        stream.abort(new Error('test over'))
        expect(await eventually(() => server.carMirror.stats().budgets.windowBytes.used === 0)).to.be.true()
      })

      it('a server that takes no pushes opens no window for the push id, and refuses the push', async () => {
        const server = await node()
        const client = await node()
        const root = await addLargeFile(client, 512 * KiB, 42)
        expect(await rejection(client.carMirror.push(addr(server), root))).to.be.an.instanceOf(SessionRefusedError)
        expect(server.carMirror.stats().budgets.windowBytes.peak).to.equal(0)
      })

      it('a stream on the push id that begins with a pull ends with error protocol, and nothing is served', async () => {
        const server = await node({ allowPush: () => true })
        const client = await node()
        const root = await addTree(server, TREE_V1)
        const framed = new FramedStream(await client.libp2p.dialProtocol(addr(server), PUSH_ID))
        await framed.write({ type: 'pull', roots: [root], wants: [] })
        const reading = await readUntilEnd(framed, 5000)
        expect(reading.messages.map(m => m.type)).to.deep.equal(['error'])
        const error = reading.messages[0]
        expect(error.type === 'error' ? error.code : undefined).to.equal('protocol')
      })

      it('a push to a server that does not know the push id falls back to the protocol id and completes', async () => {
        const server = await node({ allowPush: () => true })
        await server.libp2p.unhandle(PUSH_ID)
        const client = await node()
        const root = await addLargeFile(client, MiB, 43)
        const expected = await dagBlocks(client.blockstore, root)
        await client.carMirror.push(addr(server), root)
        await expectMirrored(server, root, expected)
        // the window opened only once the push was read (the base id's way)
        expect(server.carMirror.stats().budgets.windowBytes.peak).to.be.above(0)
      })
    })

    describe('warm', () => {
      interface WarmPush {
        server: TestNode
        client: TestNode
        v1: CID
        v2: CID
        v1Blocks: Map<string, Block>
        v2Blocks: Map<string, Block>
        fresh: Map<string, Block>
      }

      async function warm (clientOptions: TestNodeOptions = {}): Promise<WarmPush> {
        const server = await node({ allowPush: () => true })
        const client = await node(clientOptions)
        const v1 = await addTree(server, TREE_V1)
        expect(await addTree(client, TREE_V1)).to.satisfy((cid: CID) => cid.equals(v1))
        const v2 = await addTree(client, TREE_V2)
        const v1Blocks = await dagBlocks(client.blockstore, v1)
        const v2Blocks = await dagBlocks(client.blockstore, v2)
        return { server, client, v1, v2, v1Blocks, v2Blocks, fresh: difference(v2Blocks, v1Blocks) }
      }

      function expectFewDuplicates (stats: TransferStats, setup: WarmPush, sent: Array<{ cid: CID, bytes: number }>): void {
        // every new block went out exactly once; whatever else went out the server already held
        const sentKeys = keys(sent.map(b => b.cid))
        const sentFresh = sentKeys.filter(key => setup.fresh.has(key))
        const sentOld = sent.filter(b => setup.v1Blocks.has(b.cid.toString()))
        expect(new Set(sentFresh).size).to.equal(setup.fresh.size)
        expect(sentFresh.length).to.equal(setup.fresh.size)
        expect(sentFresh.length + sentOld.length).to.equal(sent.length)
        expect(stats.blocksSent).to.equal(sent.length)
        // the server reports the blocks it already held that reached it before it was done
        expect(stats.duplicateBlocks).to.be.at.most(sentOld.length)
        // v1's big leaves were not sent again: duplicates cost little
        const oldBytes = sentOld.reduce((n, b) => n + b.bytes, 0)
        expect(oldBytes).to.be.lessThan(totalBytes(setup.v1Blocks.values()) / 4)
        expect(stats.blockBytesSent).to.be.lessThan(totalBytes(setup.fresh.values()) + totalBytes(setup.v1Blocks.values()) / 4)
      }

      it('pushes v2 to a server holding v1 without a hint: few duplicates, reported', async () => {
        // a cold-call window well under v1's size: what goes out before the server's Bloom is bounded by it
        const setup = await warm({ coldCallBytes: 64 * KiB })
        const progress = new ProgressLog()

        const stats = await setup.client.carMirror.push(addr(setup.server), setup.v2, { onProgress: progress.onProgress })

        await expectMirrored(setup.server, setup.v2, setup.v2Blocks)
        expectFewDuplicates(stats, setup, progress.of('car-mirror:block:sent'))
      })

      it('pushes v2 to a server holding v1 without a hint and with the default cold call: only the root goes out blind, so nothing of v1 is sent', async () => {
        const setup = await warm()
        const progress = new ProgressLog()

        const stats = await setup.client.carMirror.push(addr(setup.server), setup.v2, { onProgress: progress.onProgress })

        await expectMirrored(setup.server, setup.v2, setup.v2Blocks)
        const sent = keys(progress.of('car-mirror:block:sent').map(detail => detail.cid))
        expect(sent.filter(key => setup.v1Blocks.has(key))).to.deep.equal([])
        expect(sent.sort()).to.deep.equal([...setup.fresh.keys()].sort())
        expect(stats.duplicateBlocks).to.equal(0)
      })

      it('pushes v2 to a server holding v1 with a hint: the server\'s first status carries a Bloom of v1', async () => {
        const setup = await warm()
        const progress = new ProgressLog()

        const stats = await setup.client.carMirror.push(addr(setup.server), setup.v2, { hints: [setup.v1], onProgress: progress.onProgress })

        await expectMirrored(setup.server, setup.v2, setup.v2Blocks)
        expectFewDuplicates(stats, setup, progress.of('car-mirror:block:sent'))
        const [greeting] = progress.of('car-mirror:status:received')
        expect(greeting.bloomBytes).to.be.greaterThan(0)
      })
    })

    it('is refused by a server that does not allow pushes, and nothing is written', async () => {
      const server = await node()
      const client = await node()
      const root = await addTree(client, TREE_V1)
      const before = (await allBlocks(server.blockstore)).length
      const blocks = await dagBlocks(client.blockstore, root)

      const err = await rejection(client.carMirror.push(addr(server), root))

      expect(err.name).to.equal(SessionRefusedError.name)
      expect(await heldOf(server.blockstore, blocks.values())).to.deep.equal([])
      expect((await allBlocks(server.blockstore)).length).to.equal(before)
    })

    it('is refused when the push hook says no or throws', async () => {
      const client = await node()
      const dag = await cborDag('hook')
      await putBlocks(client.blockstore, dag.stored)
      const asked: string[] = []
      const denying = await node({ allowPush: (peer, roots) => { asked.push(`${peer.toString()} ${roots[0].toString()}`); return false } })
      const throwing = await node({ allowPush: async () => { throw new Error('hook failed') } })

      for (const server of [denying, throwing]) {
        const err = await rejection(client.carMirror.push(addr(server), dag.root))
        expect(err.name).to.equal(SessionRefusedError.name)
        expect(await heldOf(server.blockstore, dag.stored)).to.deep.equal([])
      }
      expect(asked).to.deep.equal([`${client.libp2p.peerId.toString()} ${dag.root.toString()}`])
    })

    it('a pull refused by allowPull rejects with SessionRefusedError', async () => {
      const server = await node({ allowPull: () => false })
      const client = await node()
      const dag = await cborDag('pull-refused')
      await putBlocks(server.blockstore, dag.stored)

      const err = await rejection(client.carMirror.pull(addr(server), dag.root))

      expect(err.name).to.equal(SessionRefusedError.name)
      expect(await heldOf(client.blockstore, dag.stored)).to.deep.equal([])
    })
  })

  describe('abort', () => {
    it('an abort mid-transfer rejects, leaves only verified blocks, and a second pull completes', async () => {
      const server = await node()
      const client = await node()
      const root = await addLargeFile(server, 6 * MiB, 1099)
      const all = await dagBlocks(server.blockstore, root)
      const controller = new AbortController()
      let received = 0

      const err = await rejection(client.carMirror.pull(addr(server), root, {
        signal: controller.signal,
        onProgress: (event) => {
          if (event.type === 'car-mirror:block:received' && ++received === 3) {
            controller.abort()
          }
        }
      }))

      expect(err.name).to.equal('AbortError')
      const stored = await allBlocks(client.blockstore)
      expect(stored.length).to.be.at.least(1)
      expect(stored.length).to.be.lessThan(all.size)
      for (const block of stored) {
        expect(await verifiesSha256(block), `${block.cid} verifies`).to.be.true()
      }
      const heldBefore = await heldOf(client.blockstore, all.values())

      const stats = await client.carMirror.pull(addr(server), root)

      await expectMirrored(client, root, all)
      expect(stats.blocksReceived).to.equal(all.size - heldBefore.length)
      expect(stats.duplicateBlocks).to.equal(0)
    })

    it('an already aborted signal rejects without touching the store', async () => {
      const server = await node()
      const client = await node()
      const dag = await cborDag('pre-aborted')
      await putBlocks(server.blockstore, dag.stored)

      const err = await rejection(client.carMirror.pull(addr(server), dag.root, { signal: AbortSignal.abort() }))

      expect(err.name).to.equal('AbortError')
      expect(await heldOf(client.blockstore, dag.stored)).to.deep.equal([])
    })
  })

  describe('concurrency', () => {
    it('serves several pulls of different DAGs at once', async () => {
      const server = await node()
      const clients = [await node(), await node()]
      const tree = await addTree(server, TREE_V1)
      const file = await addLargeFile(server, 3 * MiB, 1005)
      const cbor = await cborDag('concurrent')
      await putBlocks(server.blockstore, cbor.stored)
      const roots = [tree, file, cbor.root]
      const expected = await Promise.all(roots.map(async root => dagBlocks(server.blockstore, root)))

      // one client pulls all three at once over one connection; another pulls the tree and the file meanwhile
      const [a, b] = await Promise.all([
        Promise.all(roots.map(async root => clients[0].carMirror.pull(addr(server), root))),
        Promise.all([tree, file].map(async root => clients[1].carMirror.pull(addr(server), root)))
      ])

      for (let i = 0; i < roots.length; i++) {
        await expectMirrored(clients[0], roots[i], expected[i])
        expect(a[i].blocksReceived).to.equal(expected[i].size)
        expect(a[i].duplicateBlocks).to.equal(0)
      }
      for (let i = 0; i < 2; i++) {
        await expectMirrored(clients[1], roots[i], expected[i])
        expect(b[i].blocksReceived).to.equal(expected[i].size)
      }
    })

    it('runs a pull and a push between the same two nodes at the same time', async () => {
      const server = await node({ allowPush: () => true })
      const client = await node()
      const pulled = await addTree(server, TREE_V1)
      const pushed = await addLargeFile(client, 2 * MiB, 1011)
      const pulledBlocks = await dagBlocks(server.blockstore, pulled)
      const pushedBlocks = await dagBlocks(client.blockstore, pushed)

      const [pullStats, pushStats] = await Promise.all([
        client.carMirror.pull(addr(server), pulled),
        client.carMirror.push(addr(server), pushed)
      ])

      await expectMirrored(client, pulled, pulledBlocks)
      await expectMirrored(server, pushed, pushedBlocks)
      expect(pullStats.blocksReceived).to.equal(pulledBlocks.size)
      expect(pullStats.blocksSent).to.equal(0)
      expect(pushStats.blocksSent).to.equal(pushedBlocks.size)
      expect(pushStats.blocksReceived).to.equal(0)
    })
  })

  describe('progress events', () => {
    it('a pull reports every received block and every status it sent', async () => {
      const server = await node()
      const client = await node()
      const root = await addTree(server, TREE_V1)
      const expected = await dagBlocks(server.blockstore, root)
      const progress = new ProgressLog()

      const stats = await client.carMirror.pull(addr(server), root, { onProgress: progress.onProgress })

      const types = new Set(progress.events.map(e => e.type))
      expect([...types].filter(type => type.startsWith('car-mirror:')).sort()).to.deep.equal(['car-mirror:block:received', 'car-mirror:status:sent'])
      // the dial to a peer not connected before reports libp2p's own progress events, before any CAR Mirror one
      const firstCarMirror = progress.events.findIndex(e => e.type.startsWith('car-mirror:'))
      const dialEvents = progress.events.slice(0, firstCarMirror).map(e => e.type)
      expect(dialEvents).to.include('dial-queue:add-to-dial-queue')
      expect(dialEvents).to.include('connection:opened')
      const blocks = progress.of('car-mirror:block:received')
      expect(blocks).to.have.lengthOf(stats.blocksReceived)
      expect(keys(blocks.map(b => b.cid)).sort()).to.deep.equal([...expected.keys()].sort())
      expect(blocks.every(b => b.outcome === 'stored')).to.be.true()
      expect(blocks.reduce((n, b) => n + b.bytes, 0)).to.equal(stats.blockBytesReceived)
      for (const detail of blocks) {
        expect(detail.bytes).to.equal(expected.get(detail.cid.toString())?.bytes.byteLength)
      }
      // the pull request is the first status: it asks for the root, with no Bloom for an empty store
      const statuses = progress.of('car-mirror:status:sent')
      expect(statuses[0]).to.deep.equal({ wants: 1, bloomBytes: 0 })
      expect(statuses).to.have.lengthOf(stats.statusFrames)
    })

    it('a push reports every sent block and the statuses it received', async () => {
      const server = await node({ allowPush: () => true })
      const client = await node()
      const root = await addTree(client, TREE_V1)
      const expected = await dagBlocks(client.blockstore, root)
      const progress = new ProgressLog()

      const stats = await client.carMirror.push(addr(server), root, { onProgress: progress.onProgress })

      const sent = progress.of('car-mirror:block:sent')
      expect(sent).to.have.lengthOf(stats.blocksSent)
      expect(keys(sent.map(b => b.cid)).sort()).to.deep.equal([...expected.keys()].sort())
      expect(sent.reduce((n, b) => n + b.bytes, 0)).to.equal(stats.blockBytesSent)
      expect(progress.of('car-mirror:block:received')).to.have.lengthOf(0)
      const statuses = progress.of('car-mirror:status:received')
      expect(statuses.length + progress.of('car-mirror:status:sent').length).to.equal(stats.statusFrames)
    })
  })

  it('a pull into a plain MemoryBlockstore through createTestNode\'s blockstore option', async () => {
    const store = new MemoryBlockstore()
    const server = await node()
    const client = await node({ blockstore: store })
    const dag = await cborDag('memory')
    await putBlocks(server.blockstore, dag.stored)

    const stats = await client.carMirror.pull(addr(server), dag.root)

    expect(stats.blocksReceived).to.equal(dag.stored.length)
    for (const block of dag.stored) {
      expect(await holdsExactly(store, block)).to.be.true()
    }
  })

  describe('privacy (what the README says a Bloom reveals)', () => {
    /** The Bloom of the first pull `client` sends to a server that only records it */
    it('a pull from a small store names every block it holds in its Bloom, hint or not; with smallStoreBlocks: 0 only the hinted DAG', async () => {
      const secret = await rawBlock('a block unrelated to the pull')
      const v1 = await addTree({ blockstore: new MemoryBlockstore() }, TREE_V1)
      const v2 = await addTree({ blockstore: new MemoryBlockstore() }, TREE_V2)
      for (const options of [{}, { smallStoreBlocks: 0 }]) {
        const client = await node(options)
        await putBlocks(client.blockstore, [secret])
        await addTree(client, TREE_V1)
        const bloom = await pullBloom(client, v2, [v1])
        expect(bloom.has(bloomItem(v1)), 'the hinted root').to.be.true()
        expect(bloom.has(bloomItem(secret.cid)), `the unrelated block, ${JSON.stringify(options)}`).to.equal(options.smallStoreBlocks !== 0)
      }
    })

    it('a push server greets a push without hints with a Bloom of its whole small store; storeBloomBytes: 0 sends none', async () => {
      const secret = await rawBlock('a block the server keeps to itself')
      const root = await rawBlock('the pushed root')
      for (const storeBloomBytes of [undefined, 0]) {
        const server = await node({ allowPush: () => true, storeBloomBytes })
        await putBlocks(server.blockstore, [secret])
        const client = await node()
        const stream = await client.libp2p.dialProtocol(addr(server), PROTOCOL_ID)
        const framed = new FramedStream(stream)
        await framed.write({ type: 'push', roots: [root.cid], hints: [] })
        const greeting = await firstMessage(framed)
        expect(greeting.type).to.equal('status')
        const bloom = greeting.type === 'status' ? greeting.bloom : undefined
        if (storeBloomBytes === 0) {
          expect(bloom ?? undefined, 'no store Bloom').to.be.undefined()
        } else {
          expect(bloom?.has(bloomItem(secret.cid)), 'the server\'s unrelated block').to.be.true()
        }
        stream.abort(new Error('done looking'))
      }
    })
  })

  describe('a client store that fails while the stream opens', () => {
    /** A real store whose listing fails, and whose reads of `poisoned` fail, once `failing` is set */
    class FailingBlockstore extends MemoryBlockstore {
      failing = false
      poisoned?: CID

      override async * getAll (options?: AbortOptions): AsyncGenerator<Pair> {
        if (this.failing) {
          throw new Error('the disk is gone')
        }
        yield * super.getAll(options)
      }

      override get (key: CID, options?: AbortOptions): ReturnType<MemoryBlockstore['get']> {
        if (this.failing && this.poisoned?.equals(key) === true) {
          throw new Error('the disk is gone')
        }
        return super.get(key, options)
      }
    }

    /** Resolves once `done()` holds, checking every 10 ms for up to 5 s */
    async function waitFor (done: () => boolean): Promise<void> {
      for (let i = 0; i < 500 && !done(); i++) {
        await new Promise(resolve => setTimeout(resolve, 10))
      }
      expect(done(), 'the condition held within 5 s').to.be.true()
    }

    it('a pull whose request cannot be built (the store listing fails) rejects with that error and leaves no session on the server', async () => {
      const log: ServedSession[] = []
      const server = await node({ onSession: (s) => { log.push(s) } })
      const store = new FailingBlockstore()
      const client = await node({ blockstore: store })
      const dag = await cborDag('listing fails')
      await putBlocks(server.blockstore, dag.stored)
      store.failing = true

      const err = await rejection(client.carMirror.pull(addr(server), dag.root))
      expect(err.message).to.include('the disk is gone')
      await waitFor(() => server.carMirror.activeSessions.inbound === 0)
      expect(log.every(s => s.outcome !== 'done')).to.be.true()
      // the stream opened meanwhile was closed: a second pull, with the store back, completes
      store.failing = false
      await client.carMirror.pull(addr(server), dag.root)
      expect(await holdsExactly(client.blockstore, dag.stored[0])).to.be.true()
    })

    it('a push whose hint Bloom cannot be built (a hinted block cannot be read) rejects with that error and leaves no session on the server', async () => {
      const server = await node({ allowPush: () => true })
      const store = new FailingBlockstore()
      const client = await node({ blockstore: store })
      const old = await cborDag('hint read fails, v1')
      const next = await cborDag('hint read fails, v2')
      await putBlocks(client.blockstore, [...old.stored, ...next.stored])
      store.failing = true
      store.poisoned = old.root

      const err = await rejection(client.carMirror.push(addr(server), next.root, { hints: [old.root] }))
      expect(err.message).to.include('the disk is gone')
      await waitFor(() => server.carMirror.activeSessions.inbound === 0)
      expect(await server.blockstore.has(next.root)).to.be.false()
    })
  })

  describe('onSession', () => {
    /** Collects the server's served sessions; resolves `next()` with each as it ends */
    function sessionLog (): { sessions: ServedSession[], onSession(s: ServedSession): void, next(): Promise<ServedSession> } {
      const sessions: ServedSession[] = []
      const waiting: Array<(s: ServedSession) => void> = []
      return {
        sessions,
        onSession: (s) => {
          sessions.push(s)
          waiting.shift()?.(s)
        },
        next: async () => new Promise(resolve => { waiting.push(resolve) })
      }
    }

    it('a client and then its server stopping right after a pull resolved: the client\'s done reached the server first, and the session is done there', async () => {
      for (let i = 0; i < 3; i++) {
        const log = sessionLog()
        const server = await node({ onSession: log.onSession })
        const client = await node()
        const dag = await cborDag(`stopped-${i}`)
        await putBlocks(server.blockstore, dag.stored)
        await client.carMirror.pull(addr(server), dag.root)
        await client.stop()
        await server.stop()
        expect(log.sessions.map(s => `${s.outcome} ${s.error?.message ?? ''}`.trim())).to.deep.equal(['done'])
      }
    })

    it('reports a served pull and a served push with their peer, roots and block counts', async () => {
      const log = sessionLog()
      const server = await node({ allowPush: () => true, onSession: log.onSession })
      const client = await node()
      const dag = await cborDag('served')
      await putBlocks(server.blockstore, dag.stored)

      const ended = log.next()
      const pulled = await client.carMirror.pull(addr(server), dag.root)
      const pull = await ended
      expect(pull.kind).to.equal('pull')
      expect(pull.outcome).to.equal('done')
      expect(pull.error).to.be.undefined()
      expect(pull.peer.equals(client.libp2p.peerId)).to.be.true()
      expect(keys(pull.roots)).to.deep.equal(keys([dag.root]))
      expect(pull.blocksSent).to.equal(pulled.blocksReceived)
      expect(pull.blockBytesSent).to.equal(pulled.blockBytesReceived)
      expect(pull.blocksReceived).to.equal(0)

      const root = await addTree(client, TREE_V1)
      const pushEnded = log.next()
      const pushed = await client.carMirror.push(addr(server), root)
      const push = await pushEnded
      expect(push.kind).to.equal('push')
      expect(push.outcome).to.equal('done')
      expect(push.blocksReceived).to.equal(pushed.blocksSent)
      expect(push.blockBytesReceived).to.equal(pushed.blockBytesSent)
      expect(push.durationMs).to.be.at.least(0)
    })

    it('reports a refused push as refused and a pull of missing blocks as failed with its error; a throwing hook changes nothing', async () => {
      const log = sessionLog()
      const server = await node({
        onSession: (s) => {
          log.onSession(s)
          throw new Error('a broken hook')
        }
      })
      const client = await node()
      const root = await addTree(client, TREE_V1)

      const refused = log.next()
      await expect(client.carMirror.push(addr(server), root)).to.eventually.be.rejected.with.property('name', SessionRefusedError.name)
      expect((await refused).outcome).to.equal('refused')

      const failed = log.next()
      const absent = await cborDag('held by nobody')
      await expect(client.carMirror.pull(addr(server), absent.root)).to.eventually.be.rejected.with.property('name', BlocksNotAvailableError.name)
      const pull = await failed
      expect(pull.outcome).to.equal('failed')
      expect(pull.error?.name).to.equal(BlocksNotAvailableError.name)

      // the server still serves after its hook threw
      const dag = await cborDag('after-hook')
      await putBlocks(server.blockstore, dag.stored)
      const stats = await client.carMirror.pull(addr(server), dag.root)
      expect(stats.blocksReceived).to.equal(dag.stored.length)
    })
  })
})
