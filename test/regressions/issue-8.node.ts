/**
 * Regression tests for issue 8 ("Protocol 1.0 made airtight"): one or more
 * tests per numbered case, through the public API between real Helia nodes
 * over WebSockets on 127.0.0.1, or against a scripted peer speaking raw
 * frames where the case needs a peer that misbehaves or a view of the wire.
 * Idle timeouts are a few seconds, so a hang fails fast.
 */

import { createHash } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { bloomItem } from '../../src/core/index.ts'
import { BlocksNotAvailableError, BloomFilter, RemoteError, SessionRefusedError } from '../../src/index.ts'
import { cborBlock, keys, rawBlock, utf8 } from '../fixtures/dag.ts'
import { addLargeFile, cborDag, holdsExactly, pseudoRandomBytes, putBlocks, seedOf, totalBytes } from '../fixtures/dags.ts'
import { testNodes } from '../fixtures/nodes.ts'
import { rejection } from '../fixtures/rejection.ts'
import { KiB, bigTree, eventually, firstMessage, openFramed, readUntilEnd, scriptServer, sleep } from '../hostile/helpers.ts'
import type { Message } from '../../src/core/index.ts'
import type { CarMirrorProgressEvents } from '../../src/index.ts'
import type { Block } from '../fixtures/dag.ts'
import type { TestNode } from '../fixtures/nodes.ts'
import type { AbortOptions, Stream } from '@libp2p/interface'

/** Idle timeout of the nodes below: a session that hangs fails after this */
const IDLE_MS = 2000
/** What "promptly" means: well under the idle timeout */
const PROMPT_MS = 1000

/**
 * A real in-memory store whose reads (and, if asked, `has` checks) take a
 * while once delays are set, and which logs every read: a large or slow
 * disk, and a way to count how often each block is read
 */
class DelayedBlockstore extends MemoryBlockstore {
  getDelay = 0
  hasDelay = 0
  /** When set, only `has` checks of these blocks are slow */
  slowHas?: Set<string>
  readonly gets: Array<{ cid: string, at: number }> = []

  async * get (key: CID, options?: AbortOptions): AsyncGenerator<Uint8Array> {
    this.gets.push({ cid: key.toString(), at: Date.now() })
    if (this.getDelay > 0) {
      await sleep(this.getDelay)
    }
    yield * super.get(key, options)
  }

  async has (key: CID, options?: AbortOptions): Promise<boolean> {
    if (this.hasDelay > 0 && (this.slowHas == null || this.slowHas.has(key.toString()))) {
      await sleep(this.hasDelay)
    }
    return super.has(key, options)
  }

  /** How many times each block was read */
  readsOf (cid: CID): number {
    const key = cid.toString()
    return this.gets.filter(get => get.cid === key).length
  }
}

/** A dag-cbor chain: `links[0]` links to `links[1]` and so on, each with a small raw leaf when `withLeaves` */
interface Chain {
  links: Block[]
  leaves: Block[]
  all: Block[]
}

async function chainOf (length: number, salt: string, withLeaves: boolean = true): Promise<Chain> {
  const links: Block[] = []
  const leaves: Block[] = []
  let next: CID | null = null
  for (let level = length - 1; level >= 0; level--) {
    const leaf = withLeaves ? await rawBlock(pseudoRandomBytes(64, seedOf(`${salt}/leaf/${level}`))) : undefined
    const block: Block = await cborBlock({ salt, level, leaf: leaf?.cid ?? null, next })
    links.unshift(block)
    if (leaf != null) {
      leaves.unshift(leaf)
    }
    next = block.cid
  }
  return { links, leaves, all: [...links, ...leaves] }
}

function blocksIn (messages: Message[]): Array<Extract<Message, { type: 'block' }>> {
  return messages.filter((m): m is Extract<Message, { type: 'block' }> => m.type === 'block')
}

/** The CIDs named by `missing` frames (a message type that 1.0 added) */
function missingIn (messages: Message[]): string[] {
  return messages.flatMap(m => m.type === 'missing' ? keys(m.cids) : [])
}

describe('regressions of issue 8', function () {
  this.timeout(30_000)
  const { node, addr } = testNodes()

  async function expectHeld (target: TestNode, blocks: Iterable<Block>): Promise<void> {
    for (const block of blocks) {
      expect(await holdsExactly(target.blockstore, block), `holds ${block.cid}`).to.be.true()
    }
  }

  describe('1. a failed push does not poison a retry', () => {
    it('retries promptly and succeeds once a server that refused the push allows it', async () => {
      let allow = false
      const server = await node({ idleTimeout: IDLE_MS, allowPush: () => allow })
      const client = await node({ idleTimeout: IDLE_MS })
      const dag = await cborDag('issue-8/refused-then-allowed')
      await putBlocks(client.blockstore, dag.stored)

      const err = await rejection(client.carMirror.push(addr(server), dag.root))
      expect(err.name).to.equal(SessionRefusedError.name)

      allow = true
      const started = Date.now()
      const stats = await client.carMirror.push(addr(server), dag.root)

      expect(Date.now() - started, 'the retry took').to.be.below(PROMPT_MS)
      expect(stats.blocksSent).to.equal(dag.stored.length)
      await expectHeld(server, dag.stored)
    })

    it('retries promptly after a push that failed because the client lacked its root', async () => {
      const server = await node({ idleTimeout: IDLE_MS, allowPush: () => true })
      const client = await node({ idleTimeout: IDLE_MS })
      const leaf = await rawBlock(pseudoRandomBytes(1000, seedOf('issue-8/missing-root/leaf')))
      const root = await cborBlock({ salt: 'issue-8/missing-root', leaf: leaf.cid })
      await putBlocks(client.blockstore, [leaf])

      const err = await rejection(client.carMirror.push(addr(server), root.cid))
      expect(err.name).to.equal(BlocksNotAvailableError.name)

      await putBlocks(client.blockstore, [root])
      const started = Date.now()
      const stats = await client.carMirror.push(addr(server), root.cid)

      expect(Date.now() - started, 'the retry took').to.be.below(PROMPT_MS)
      expect(stats.blocksSent).to.equal(2)
      await expectHeld(server, [root, leaf])
    })

    it('retries promptly after a push refused because the server ran too many sessions', async () => {
      // one session per peer, and no eviction of the occupying session during the test
      const server = await node({ idleTimeout: IDLE_MS, allowPush: () => true, maxSessionsPerPeer: 1, evictAfter: 60_000 })
      const client = await node({ idleTimeout: IDLE_MS })
      const served = await cborDag('issue-8/occupant')
      await putBlocks(server.blockstore, served.stored)
      const dag = await cborDag('issue-8/too-many')
      await putBlocks(client.blockstore, dag.stored)

      // the client's own pull takes the only slot: it never answers the server's idle
      const occupant = await openFramed(client, server)
      await occupant.write({ type: 'pull', roots: [served.root], wants: [] })
      expect(await eventually(() => server.carMirror.activeSessions.inbound === 1, 1000), 'the occupying session runs').to.be.true()

      const err = await rejection(client.carMirror.push(addr(server), dag.root))
      expect(err.name).to.equal(SessionRefusedError.name)

      occupant.abort(new Error('the slot is free again'))
      expect(await eventually(() => server.carMirror.activeSessions.inbound === 0, 1000), 'the occupying session ended').to.be.true()
      const started = Date.now()
      const stats = await client.carMirror.push(addr(server), dag.root)

      expect(Date.now() - started, 'the retry took').to.be.below(PROMPT_MS)
      expect(stats.blocksSent).to.equal(dag.stored.length)
      await expectHeld(server, dag.stored)
    })
  })

  describe('2. a push whose roots together exceed the cold call completes', () => {
    it('pushes three raw roots of 600 KiB each (1.8 MiB of roots, cold call 1 MiB)', async () => {
      const server = await node({ idleTimeout: IDLE_MS, allowPush: () => true })
      const client = await node({ idleTimeout: IDLE_MS })
      const roots = await Promise.all([0, 1, 2].map(async i => rawBlock(pseudoRandomBytes(600 * KiB, seedOf(`issue-8/raw-roots/${i}`)))))
      await putBlocks(client.blockstore, roots)

      const stats = await client.carMirror.push(addr(server), roots.map(root => root.cid))

      expect(stats.blocksSent).to.equal(3)
      expect(stats.blockBytesSent).to.equal(totalBytes(roots))
      await expectHeld(server, roots)
    })

    it('pushes 600 dag-cbor roots of about 2 KB each (1.2 MB of roots, cold call 1 MiB)', async () => {
      const server = await node({ idleTimeout: IDLE_MS, allowPush: () => true })
      const client = await node({ idleTimeout: IDLE_MS })
      const roots: Block[] = []
      for (let i = 0; i < 600; i++) {
        roots.push(await cborBlock({ salt: 'issue-8/cbor-roots', i, pad: pseudoRandomBytes(2000, seedOf(`issue-8/cbor-roots/${i}`)) }))
      }
      expect(totalBytes(roots)).to.be.greaterThan(1024 * KiB)
      await putBlocks(client.blockstore, roots)

      const stats = await client.carMirror.push(addr(server), roots.map(root => root.cid))

      expect(stats.blocksSent).to.equal(600)
      await expectHeld(server, roots)
    })
  })

  it('3. never serves a block outside the roots\' DAG that is asked for while the sender checks another want against a slow store', async () => {
    const store = new DelayedBlockstore()
    const server = await node({ blockstore: store, idleTimeout: 3000 })
    const client = await node()
    const dag = await chainOf(10, 'issue-8/race')
    const outside = await rawBlock(utf8('issue-8/race: a block the server holds outside the allowed DAG'))
    await putBlocks(store, [...dag.all, outside])
    // checking the deep want reads eight interior blocks: 800 ms
    store.getDelay = 100
    const deep = dag.links[8]

    const framed = await openFramed(client, server)
    await framed.write({ type: 'pull', roots: [dag.links[0].cid], wants: [deep.cid] })
    await sleep(250)
    const statusAt = Date.now()
    await framed.write({ type: 'status', wants: [outside.cid] })
    const reading = await readUntilEnd(framed, 8000, message => message.type === 'idle' && message.statuses === 2)
    await framed.write({ type: 'done', duplicates: 0 })
    await framed.closeWrite()

    // the status arrived while the check walk was still reading interior blocks
    const interior = new Set(keys(dag.links.slice(0, 8).map(block => block.cid)))
    expect(store.gets.some(get => interior.has(get.cid) && get.at < statusAt), 'the check walk started before the status was sent').to.be.true()
    expect(store.gets.some(get => interior.has(get.cid) && get.at > statusAt), 'the check walk read on after the status was sent').to.be.true()
    expect(reading.timedOut, 'the server acknowledged both statuses with an idle').to.be.false()
    const sent = keys(blocksIn(reading.messages).map(block => block.cid))
    expect(sent, 'the allowed deep want was served').to.include(deep.cid.toString())
    expect(sent, 'the block outside the DAG was never served').to.not.include(outside.cid.toString())
    expect(missingIn(reading.messages), 'the server named the outside block as missing').to.include(outside.cid.toString())
  })

  it('4. a push with a hint the server does not hold completes in a few rounds: the greeting clears the client\'s hint Bloom', async () => {
    const server = await node({ idleTimeout: IDLE_MS, allowPush: () => true })
    const client = await node({ idleTimeout: IDLE_MS })
    // v1 and v2 share a chain of 150 levels; the server holds none of it
    const shared = await chainOf(150, 'issue-8/wrong-hint', false)
    const v1 = await cborBlock({ version: 1, chain: shared.links[0].cid })
    const v2 = await cborBlock({ version: 2, chain: shared.links[0].cid })
    await putBlocks(client.blockstore, [v1, v2, ...shared.all])

    const stats = await client.carMirror.push(addr(server), v2.cid, { hints: [v1.cid] })

    expect(stats.roundTrips).to.be.at.most(5)
    expect(stats.blocksSent).to.equal(151)
    await expectHeld(server, [v2, ...shared.all])
    expect(await server.blockstore.has(v1.cid)).to.be.false()
  })

  it('5. does not send the children of a block dropped when the cold call closes', async () => {
    const salt = 'issue-8/dropped-children'
    // the server holds a subtree B; its `has` checks are slow, so its status
    // with `rh` and a Bloom of B's subtree comes well after the client filled its window
    const serverStore = new DelayedBlockstore()
    // no store Bloom: the server's Bloom must be the one of what it finds under the root, built below
    const server = await node({ blockstore: serverStore, idleTimeout: 3000, allowPush: () => true, storeBloomBytes: 0 })
    const client = await node({ idleTimeout: 3000, coldCallBytes: 4 * KiB })
    // 8 blocks: a Bloom sized for them has a false positive rate near 1/2000
    const heldChildren = await Promise.all(Array.from({ length: 7 }, async (_, i) => cborBlock({ salt, held: i, pad: pseudoRandomBytes(200, seedOf(`${salt}/held/${i}`)) })))
    const subtree = await cborBlock({ salt, subtree: heldChildren.map(block => block.cid) })
    const held = [subtree, ...heldChildren]
    // the Bloom the server sends with `rh`: exactly what it finds under the root
    const bloom = BloomFilter.forCapacity(held.length)
    for (const block of held) {
      bloom.add(bloomItem(block.cid))
    }
    // new blocks: a filler that closes the 4 KiB window, and F, which the
    // server's Bloom wrongly claims to hold, with 20 new children
    const filler = await cborBlock({ salt, filler: pseudoRandomBytes(5 * KiB, seedOf(`${salt}/filler`)) })
    const freshChildren = await Promise.all(Array.from({ length: 20 }, async (_, i) => cborBlock({ salt, fresh: i })))
    let dropped: Block | undefined
    for (let attempt = 0; dropped == null && attempt < 1_000_000; attempt++) {
      // hashed synchronously: the search takes about two thousand tries
      const bytes = dagCbor.encode({ salt, attempt, children: freshChildren.map(block => block.cid) })
      const cid = CID.createV1(dagCbor.code, Digest.create(sha256.code, createHash('sha256').update(bytes).digest()))
      if (bloom.has(bloomItem(cid))) {
        dropped = { cid, bytes }
      }
    }
    if (dropped == null) {
      throw new Error('no Bloom false positive found')
    }
    const root = await cborBlock({ salt, links: [subtree.cid, filler.cid, dropped.cid] })
    const fresh = [root, filler, dropped, ...freshChildren]
    await putBlocks(serverStore, held)
    await putBlocks(client.blockstore, [...held, ...fresh])
    serverStore.slowHas = new Set(keys(held.map(block => block.cid)))
    serverStore.hasDelay = 60

    const stats = await client.carMirror.push(addr(server), root.cid)

    await expectHeld(server, [...held, ...fresh])
    // F went out only when the server asked for it, in a straggler round
    expect(stats.roundTrips).to.be.at.least(2)
    // the new blocks, plus at most the held subtree's root sent in the cold call
    expect(stats.blocksSent).to.be.at.most(fresh.length + 1)
    expect(stats.duplicateBlocks).to.be.at.most(1)
  })

  describe('6. sessions', () => {
    it('6a. pull() resolves once the client is done, even when the sender leaves its end of the stream open', async () => {
      const server = await node()
      const client = await node({ idleTimeout: 3000 })
      const dag = await cborDag('issue-8/left-open')
      let sawDone = false
      const { errors } = await scriptServer(server, async (framed, stream: Stream) => {
        await firstMessage(framed)
        await framed.write({ type: 'header', roots: [dag.root] })
        for (const block of dag.stored) {
          await framed.write({ type: 'block', cid: block.cid, bytes: block.bytes })
        }
        await framed.write({ type: 'idle', statuses: 1 })
        for await (const message of framed.messages({ signal: AbortSignal.timeout(5000) })) {
          sawDone ||= message.type === 'done'
        }
        // never close: wait for the client (or the end of the test) to reset the stream
        await new Promise(resolve => {
          stream.addEventListener('close', resolve, { once: true })
          setTimeout(resolve, 5000).unref()
        })
      })

      const started = Date.now()
      const stats = await client.carMirror.pull(addr(server), dag.root)

      expect(Date.now() - started, 'the pull took').to.be.below(PROMPT_MS)
      expect(stats.blocksReceived).to.equal(dag.stored.length)
      await expectHeld(client, dag.stored)
      expect(await eventually(() => sawDone, 1000), 'the client said done').to.be.true()
      expect(errors).to.deep.equal([])
    })

    it('6b. keepalives keep a pull alive while the sender checks a want with a walk longer than the idle timeout', async () => {
      const store = new DelayedBlockstore()
      const server = await node({ blockstore: store, idleTimeout: 1000 })
      const client = await node({ idleTimeout: 1000 })
      const dag = await chainOf(20, 'issue-8/keepalive')
      await putBlocks(store, dag.all)
      // the client holds the top 15 levels: it wants level 15, which the
      // server finds only by reading 15 interior blocks (1.8 s)
      await putBlocks(client.blockstore, [...dag.links.slice(0, 15), ...dag.leaves.slice(0, 15)])
      store.getDelay = 120

      const started = Date.now()
      const stats = await client.carMirror.pull(addr(server), dag.links[0].cid)

      expect(Date.now() - started, 'the sender was silent for longer than the idle timeout').to.be.above(1500)
      expect(stats.blocksReceived).to.equal(10)
      await expectHeld(client, dag.all)
    })

    it('6c. the check walk keeps its place: wants ever deeper in the DAG read each interior block at most once', async () => {
      const store = new DelayedBlockstore()
      const server = await node({ blockstore: store, idleTimeout: 3000 })
      const client = await node()
      const dag = await chainOf(21, 'issue-8/keep-place')
      await putBlocks(store, dag.all)
      // the client claims to hold everything, so only the wanted blocks go out
      const bloom = BloomFilter.forCapacity(dag.all.length)
      for (const block of dag.all) {
        bloom.add(bloomItem(block.cid))
      }
      const wanted = [5, 10, 15, 20].map(level => dag.links[level])

      const framed = await openFramed(client, server)
      const sent: string[] = []
      for (let round = 0; round < wanted.length; round++) {
        if (round === 0) {
          await framed.write({ type: 'pull', roots: [dag.links[0].cid], wants: [wanted[0].cid], bloom })
        } else {
          await framed.write({ type: 'status', wants: [wanted[round].cid] })
        }
        const reading = await readUntilEnd(framed, 5000, message => message.type === 'idle' && message.statuses === round + 1)
        expect(reading.timedOut, `round ${round} ended with an idle`).to.be.false()
        sent.push(...keys(blocksIn(reading.messages).map(block => block.cid)))
      }
      await framed.write({ type: 'done', duplicates: 0 })
      await framed.closeWrite()

      expect(sent).to.deep.equal(keys(wanted.map(block => block.cid)))
      for (const block of dag.links) {
        expect(store.readsOf(block.cid), `reads of level ${dag.links.indexOf(block)}`).to.be.at.most(1)
      }
    })

    it('6d. a sender that cannot decode its own block ends the session with error code internal', async () => {
      const server = await node({ idleTimeout: IDLE_MS })
      const client = await node({ idleTimeout: IDLE_MS })
      const bytes = utf8('a block in a codec nobody here knows')
      const unknown: Block = { cid: CID.createV1(0x3f_0001, await sha256.digest(bytes)), bytes }
      const root = await cborBlock({ salt: 'issue-8/unknown-codec', unknown: unknown.cid })
      await putBlocks(server.blockstore, [root, unknown])

      const err = await rejection(client.carMirror.pull(addr(server), root.cid))

      expect(err.name).to.equal(RemoteError.name)
      expect((err as RemoteError).code).to.equal('internal')
    })

    it('6e. the cold call does not overshoot: at most coldCallBytes besides the roots go out before the server\'s rh', async () => {
      const server = await node()
      const client = await node({ idleTimeout: IDLE_MS, coldCallBytes: 100 * KiB })
      const salt = 'issue-8/overshoot'
      const children = await Promise.all([0, 1, 2, 3].map(async i => cborBlock({ salt, i, pad: pseudoRandomBytes(60 * KiB, seedOf(`${salt}/${i}`)) })))
      const root = await cborBlock({ salt, children: children.map(block => block.cid) })
      await putBlocks(client.blockstore, [root, ...children])
      const before: Array<Extract<Message, { type: 'block' }>> = []
      await scriptServer(server, async (framed, stream: Stream) => {
        await firstMessage(framed)
        // never send a status: record everything the cold call sends
        const reading = await readUntilEnd(framed, 700)
        before.push(...blocksIn(reading.messages))
        stream.abort(new Error('recorded the cold call'))
      })

      await rejection(client.carMirror.push(addr(server), root.cid))

      const rootBytes = root.bytes.byteLength
      const bytes = before.reduce((n, block) => n + block.bytes.byteLength, 0)
      expect(keys(before.map(block => block.cid))).to.include(root.cid.toString())
      expect(bytes - rootBytes, 'non-root bytes of the cold call').to.be.at.least(60 * KiB)
      expect(bytes, 'block bytes before rh').to.be.at.most(100 * KiB + rootBytes)
    })
  })

  it('7. the CID of a received block does not keep its frame alive (a copy, not a view into the frame)', async () => {
    const server = await node()
    const client = await node()
    // 256 KiB leaves: each arrives in a frame of more than 256 KiB
    const root = await addLargeFile(server, 1024 * KiB, seedOf('issue-8/cid-copies'))
    const received: CID[] = []

    await client.carMirror.pull(addr(server), root, {
      onProgress: (event: CarMirrorProgressEvents) => {
        if (event.type === 'car-mirror:block:received') {
          received.push(event.detail.cid)
        }
      }
    })

    expect(received).to.have.lengthOf(5)
    for (const cid of received) {
      expect(cid.bytes.buffer.byteLength, `the buffer under ${cid}`).to.be.below(1024)
      expect(cid.multihash.bytes.buffer.byteLength, `the buffer under ${cid}'s multihash`).to.be.below(1024)
    }
  })

  it('8. a pull from a server missing 3 blocks stores everything else and names exactly those 3; a later pull fetches only them', async () => {
    // 64 leaves under 16 nodes under 4 subtrees
    const tree = await bigTree(64, 512, 4, 'issue-8/partial')
    const serverStore = new MemoryBlockstore()
    const partial = await node({ blockstore: serverStore, idleTimeout: IDLE_MS })
    const complete = await node({ idleTimeout: IDLE_MS })
    const client = await node({ idleTimeout: IDLE_MS })
    await putBlocks(serverStore, tree.blocks)
    await putBlocks(complete.blockstore, tree.blocks)
    // breadth first: the root, 4 subtree roots, 16 nodes (4 per subtree), 64 leaves (4 per node)
    const level2 = tree.blocks.slice(5, 21)
    const leavesOf = (parent: Block): Block[] => {
      const links = keys((dagCbor.decode(parent.bytes) as { links: CID[] }).links)
      return tree.blocks.filter(block => links.includes(block.cid.toString()))
    }
    // a leaf in subtree 0, one in subtree 1, and one under a node of subtree 2 that the client already holds:
    // the server finds that last one missing only in a straggler round
    const heldByClient = level2[8]
    const lost = [leavesOf(level2[0])[1], leavesOf(level2[5])[2], leavesOf(heldByClient)[3]]
    for (const block of lost) {
      await serverStore.delete(block.cid)
    }
    await putBlocks(client.blockstore, [heldByClient])
    const lostKeys = keys(lost.map(block => block.cid))

    const err = await rejection(client.carMirror.pull(addr(partial), tree.root))

    expect(err.name).to.equal(BlocksNotAvailableError.name)
    expect(keys((err as BlocksNotAvailableError).cids).sort()).to.deep.equal([...lostKeys].sort())
    for (const block of tree.blocks) {
      expect(await client.blockstore.has(block.cid), `the client holds ${block.cid}`).to.equal(!lostKeys.includes(block.cid.toString()))
    }

    const stats = await client.carMirror.pull(addr(complete), tree.root)

    expect(stats.blocksReceived).to.equal(3)
    expect(stats.duplicateBlocks).to.equal(0)
    await expectHeld(client, tree.blocks)
  })
})
