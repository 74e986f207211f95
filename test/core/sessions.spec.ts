import { streamPair } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import fc from 'fast-check'
import { BloomFilter } from '../../src/core/bloom/bloom-filter.ts'
import { Budget } from '../../src/core/budget.ts'
import { CompleteRecord } from '../../src/core/complete-record.ts'
import { bloomItem } from '../../src/core/messages.ts'
import { ReceiverSession } from '../../src/core/receiver.ts'
import { SenderSession } from '../../src/core/sender.ts'
import { BlocksNotAvailableError, HashMismatchError, LimitExceededError, SessionRefusedError } from '../../src/errors.ts'
import { FramedStream } from '../../src/transport/framed-stream.ts'
import { runReceiver, runSender } from '../../src/transport/run-session.ts'
import { ReadCountingBlockstore, arbitraryDag, buildDag, cborBlock, isIdentity, keys, pbBlock, putAll, rawBlock, reachable, sampleDag } from '../fixtures/dag.ts'
import { cborDag, dagBlocks, holdsExactly, treeSpecs } from '../fixtures/dags.ts'
import { rejection } from '../fixtures/rejection.ts'
import type { Message } from '../../src/core/messages.ts'
import type { Block, RandomDag } from '../fixtures/dag.ts'
import type { AbortOptions } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'

/** How long any one session in this file may take before it counts as hung */
const SESSION_TIMEOUT = 5000

/** A Bloom filter that contains everything: every item is a false positive */
function saturatedBloom (bytes: number = 256, hashCount: number = 7): BloomFilter {
  return new BloomFilter(new Uint8Array(bytes).fill(0xff), hashCount)
}

/** Reads the first message of a stream, the way the service's server side does */
async function firstMessage (framed: FramedStream, signal: AbortSignal): Promise<Message> {
  const first = await framed.messages({ signal }).next()
  if (first.done === true) {
    throw new Error('the stream closed before the first message')
  }
  return first.value
}

interface Outcome {
  sender: SenderSession
  receiver: ReceiverSession
  senderFramed: FramedStream
  receiverFramed: FramedStream
  receivedTypes: string[]
}

interface PullOptions {
  hints?: CID[]
  /** The receiver's small-store limit (0: the Bloom holds only blocks under the roots and hints) */
  smallStoreBlocks?: number
  /** Replaces the Bloom the sender uses, whatever the receiver asked with */
  senderBloom?: BloomFilter
  /** A shallow pull: the roots' own blocks only */
  shallow?: boolean
  /** Most blocks the receiver walks under the hints */
  maxHintBlocks?: number
  /** The node-wide budget of CIDs kept from hint walks */
  heldBudget?: Budget
  /** The node's record of DAGs held whole */
  completeRecord?: CompleteRecord
}

/**
 * A pull as the service runs it: the receiver writes its pull request, the
 * sender's side reads it and starts a SenderSession from its wants and Bloom
 * (or `senderBloom`), then both run full duplex over an in-memory stream pair.
 */
async function pull (source: MemoryBlockstore, target: MemoryBlockstore, roots: CID[], options: PullOptions = {}): Promise<Outcome> {
  const signal = AbortSignal.timeout(SESSION_TIMEOUT)
  const [a, b] = await streamPair()
  const senderFramed = new FramedStream(a)
  const receiverFramed = new FramedStream(b)
  const receiver = await ReceiverSession.create({ blockstore: target, roots, hints: options.hints, smallStoreBlocks: options.smallStoreBlocks, shallow: options.shallow, maxHintBlocks: options.maxHintBlocks, heldBudget: options.heldBudget, completeRecord: options.completeRecord })
  const request = await receiver.pullRequest()
  const receivedTypes: string[] = []
  const receiving = runReceiver(receiverFramed, receiver, { signal, first: [request], onReceived: m => { receivedTypes.push(m.type) } })
  const sending = (async () => {
    const first = await firstMessage(senderFramed, signal)
    if (first.type !== 'pull') {
      throw new Error(`expected a pull, got ${first.type}`)
    }
    const sender = new SenderSession({ blockstore: source, roots: first.roots, request: options.senderBloom == null ? first : { ...first, bloom: options.senderBloom } })
    await runSender(senderFramed, sender, { signal })
    return sender
  })()
  const [sent, received] = await Promise.allSettled([sending, receiving])
  if (received.status === 'rejected') {
    throw received.reason
  }
  if (sent.status === 'rejected') {
    throw sent.reason
  }
  return { sender: sent.value, receiver, senderFramed, receiverFramed, receivedTypes }
}

/**
 * A session without a pull request: the SenderSession is built directly
 * with the roots and `bloom` (used until the receiver sends a Bloom of its
 * own); the receiver only answers.
 */
async function direct (source: MemoryBlockstore, target: MemoryBlockstore, roots: CID[], bloom?: BloomFilter): Promise<Outcome> {
  const signal = AbortSignal.timeout(SESSION_TIMEOUT)
  const [a, b] = await streamPair()
  const senderFramed = new FramedStream(a)
  const receiverFramed = new FramedStream(b)
  const receiver = await ReceiverSession.create({ blockstore: target, roots })
  const sender = new SenderSession({ blockstore: source, roots, bloom })
  const receivedTypes: string[] = []
  const results = await Promise.allSettled([
    runSender(senderFramed, sender, { signal }),
    runReceiver(receiverFramed, receiver, { signal, onReceived: m => { receivedTypes.push(m.type) } })
  ])
  for (const result of results) {
    if (result.status === 'rejected') {
      throw result.reason
    }
  }
  return { sender, receiver, senderFramed, receiverFramed, receivedTypes }
}

/**
 * A push as the service runs it: the sender writes a push message, the
 * receiver's side reads it, builds a ReceiverSession (small-store mode off),
 * writes its greeting (which opens the sender's cold-call window), and both run.
 */
async function push (source: MemoryBlockstore, target: MemoryBlockstore, roots: CID[], hints: CID[] = [], coldCallBytes?: number): Promise<Outcome> {
  const signal = AbortSignal.timeout(SESSION_TIMEOUT)
  const [a, b] = await streamPair()
  const senderFramed = new FramedStream(a)
  const receiverFramed = new FramedStream(b)
  const sender = new SenderSession({ blockstore: source, roots, coldCallBytes })
  const sending = runSender(senderFramed, sender, { signal, first: [{ type: 'push', roots, hints }] })
  const receivedTypes: string[] = []
  const receiving = (async () => {
    const first = await firstMessage(receiverFramed, signal)
    if (first.type !== 'push') {
      throw new Error(`expected a push, got ${first.type}`)
    }
    const receiver = await ReceiverSession.create({ blockstore: target, roots: first.roots, hints: first.hints, smallStoreBlocks: 0, announceRoots: true })
    const greeting = await receiver.pushGreeting()
    await runReceiver(receiverFramed, receiver, { signal, first: [greeting], onReceived: m => { receivedTypes.push(m.type) } })
    return receiver
  })()
  const [sent, received] = await Promise.allSettled([sending, receiving])
  if (received.status === 'rejected') {
    throw received.reason
  }
  if (sent.status === 'rejected') {
    throw sent.reason
  }
  return { sender, receiver: received.value, senderFramed, receiverFramed, receivedTypes }
}

async function storeOf (blocks: Iterable<Block>): Promise<MemoryBlockstore> {
  const store = new MemoryBlockstore()
  await putAll(store, blocks)
  return store
}

async function expectHoldsAll (store: MemoryBlockstore, blocks: Iterable<Block>): Promise<void> {
  for (const block of blocks) {
    expect(await holdsExactly(store, block), `store holds ${block.cid}`).to.be.true()
  }
}

describe('core/sessions over a stream pair', function () {
  this.timeout(30_000)

  describe('pull', () => {
    it('mirrors a mixed-codec DAG cold in one round', async () => {
      const dag = await sampleDag('cold')
      const source = await storeOf(dag.stored)
      const target = new MemoryBlockstore()

      const { sender, receiver, senderFramed, receiverFramed } = await pull(source, target, [dag.root.cid])

      await expectHoldsAll(target, dag.stored)
      expect(receiver.complete).to.be.true()
      expect(receiver.counters.blocksReceived).to.equal(dag.stored.length)
      expect(receiver.counters.duplicateBlocks).to.equal(0)
      expect(receiver.counters.unrequestedBlocks).to.equal(0)
      expect(receiver.counters.stragglerRounds).to.equal(0)
      expect(sender.counters.blocksSent).to.equal(dag.stored.length)
      expect(sender.counters.blockBytesSent).to.equal(dag.stored.reduce((n, b) => n + b.bytes.byteLength, 0))
      expect(sender.counters.passes).to.equal(1)
      expect(sender.done).to.be.true()
      // both sides counted the same bytes on the wire
      expect(senderFramed.bytesWritten).to.equal(receiverFramed.bytesRead)
      expect(receiverFramed.bytesWritten).to.equal(senderFramed.bytesRead)
    })

    it('never sends identity blocks', async () => {
      const dag = await cborDag('identity')
      const source = await storeOf(dag.stored)
      const target = new MemoryBlockstore()

      const { sender, receiver } = await pull(source, target, [dag.root])

      await expectHoldsAll(target, dag.stored)
      expect(sender.counters.blocksSent).to.equal(dag.stored.length)
      expect(receiver.counters.blocksReceived).to.equal(dag.stored.length)
      for (const block of dag.identity) {
        // the receiver's store never had an identity block written to it
        const stored = await target.has(block.cid)
        expect(stored, `identity block ${block.cid} written`).to.be.false()
      }
    })

    it('sends only the blocks missing from a warm receiver with a hint', async () => {
      const v1 = await buildDag(treeSpecs(3, 3), 'warm')
      // version 2: a new root over v1's first two subtrees plus one new subtree
      const fresh = await buildDag(treeSpecs(1, 3), 'warm-new')
      const v1Root = v1[0]
      const root2 = await cborBlock({ keep: [v1[1].cid, v1[2].cid], add: fresh[0].cid })
      const source = await storeOf([...v1, ...fresh, root2])
      const target = await storeOf(v1)
      const expected = [root2, ...fresh]

      const { receiver, sender } = await pull(source, target, [root2.cid], { hints: [v1Root.cid] })

      await expectHoldsAll(target, expected)
      expect(receiver.counters.blocksReceived).to.equal(expected.length)
      expect(receiver.counters.duplicateBlocks).to.equal(0)
      expect(sender.counters.blocksSent).to.equal(expected.length)
    })

    it('trusts a hinted DAG the node recorded whole: none of its blocks is read, and only the new ones are sent', async () => {
      const v1 = await buildDag(treeSpecs(3, 3), 'recorded')
      const fresh = await buildDag(treeSpecs(1, 3), 'recorded-new')
      const root2 = await cborBlock({ keep: [v1[1].cid, v1[2].cid], add: fresh[0].cid })
      const source = await storeOf([...v1, ...fresh, root2])
      const target = new ReadCountingBlockstore()
      await putAll(target, v1)
      const record = new CompleteRecord({ maxRoots: 4, maxCids: 1000 })
      await record.record(v1[0].cid, v1.map(block => block.cid), { generation: record.generation })
      const withLinks = v1.filter(block => block.cid.code !== 0x55)
      expect(withLinks).to.not.be.empty()

      // small-store mode off: the Bloom is made of the hinted DAG's list
      const { receiver, sender } = await pull(source, target, [root2.cid], { hints: [v1[0].cid], smallStoreBlocks: 0, completeRecord: record })

      await expectHoldsAll(target, [root2, ...fresh])
      expect(receiver.counters.recordedHintBlocks).to.equal(v1.length)
      expect(sender.counters.blocksSent).to.equal(1 + fresh.length)
      expect(receiver.counters.duplicateBlocks).to.equal(0)
      for (const block of withLinks) {
        expect(target.readsOf(block.cid), `reads of ${block.cid}`).to.equal(0)
      }
    })

    it('a complete session records its roots, listing every block under them (held, and whole below)', async () => {
      const v1 = await buildDag(treeSpecs(3, 3), 'records')
      const fresh = await buildDag(treeSpecs(1, 3), 'records-new')
      const root2 = await cborBlock({ keep: [v1[1].cid, v1[2].cid], add: fresh[0].cid })
      const source = await storeOf([...v1, ...fresh, root2])
      const target = await storeOf(v1)
      const record = new CompleteRecord({ maxRoots: 4, maxCids: 1000 })
      await record.record(v1[0].cid, v1.map(block => block.cid), { generation: record.generation })

      const { receiver } = await pull(source, target, [root2.cid], { hints: [v1[0].cid], completeRecord: record })
      expect(await receiver.recordWhole()).to.be.true()

      const listed = await record.cidsUnder(root2.cid) ?? []
      const under = await dagBlocks(target, root2.cid)
      expect(keys(listed)).to.include.members([...under.keys()])
      for (const cid of listed) {
        expect(await target.has(cid), `holds ${cid}`).to.be.true()
      }
    })

    it('a session records nothing when the record was forgotten after it began (a block may have been deleted)', async () => {
      const blocks = await buildDag(treeSpecs(2, 3), 'forgotten-during')
      const source = await storeOf(blocks)
      const target = new MemoryBlockstore()
      const record = new CompleteRecord({ maxRoots: 4, maxCids: 1000 })
      const { receiver } = await pull(source, target, [blocks[0].cid], { completeRecord: record })
      await record.forget()
      expect(await receiver.recordWhole()).to.be.false()
      expect(await record.cidsUnder(blocks[0].cid)).to.be.undefined()
    })

    it('completes when a saturated Bloom makes the sender skip everything but the wants', async () => {
      const depth = 4
      const blocks = await buildDag(treeSpecs(depth, 2), 'saturated-direct')
      const source = await storeOf(blocks)
      const target = new MemoryBlockstore()

      const { receiver, sender } = await direct(source, target, [blocks[0].cid], saturatedBloom())

      await expectHoldsAll(target, blocks)
      // one level per round: the root in the first, then one straggler round per level below it
      expect(receiver.counters.stragglerRounds).to.equal(depth)
      expect(sender.counters.passes).to.equal(depth + 1)
      expect(receiver.counters.blocksReceived).to.equal(blocks.length)
      expect(receiver.counters.duplicateBlocks).to.equal(0)
      expect(sender.counters.blocksSent).to.equal(blocks.length)
    })

    it('completes a pull whose request Bloom has false positives (straggler rounds after a pull request)', async () => {
      const depth = 3
      const blocks = await buildDag(treeSpecs(depth, 2), 'saturated-pull')
      const source = await storeOf(blocks)
      const target = new MemoryBlockstore()

      const { receiver, sender } = await pull(source, target, [blocks[0].cid], { senderBloom: saturatedBloom() })

      await expectHoldsAll(target, blocks)
      expect(receiver.counters.stragglerRounds).to.equal(depth)
      expect(sender.counters.blocksSent).to.equal(blocks.length)
    })

    it('completes a pull into a store holding a subtree whose deep leaves are missing', async () => {
      // the receiver holds interior node 1 but not the root, and not all of 1's children:
      // the sender skips 1 (in the Bloom), so 1's missing children come in a straggler round
      const blocks = await buildDag(treeSpecs(3, 2), 'partial')
      const source = await storeOf(blocks)
      const held = [blocks[1], blocks[3], blocks[7], blocks[8]]
      const target = await storeOf(held)
      const heldKeys = new Set(keys(held.map(b => b.cid)))
      const missing = blocks.filter(b => !heldKeys.has(b.cid.toString()))

      const { receiver } = await pull(source, target, [blocks[0].cid])

      await expectHoldsAll(target, blocks)
      expect(receiver.counters.blocksReceived - receiver.counters.duplicateBlocks).to.equal(missing.length)
      expect(receiver.counters.stragglerRounds).to.be.at.least(1)
    })

    it('completes when a hinted block in the Bloom has a missing child (a Bloom status crosses the sender\'s idle)', async () => {
      // root -> [C, A], A -> [H], H -> [M]. The receiver holds only H and hints at it, so its
      // request's Bloom holds H: the sender sends root, C, A, skips H (and so M), and goes idle
      // right after A. Storing A makes the receiver find H in its store (a Bloom status goes
      // out) and want M, which only a straggler round can bring.
      const M = await rawBlock('crossing M')
      const H = await cborBlock({ held: true, m: M.cid })
      const A = await cborBlock({ a: H.cid })
      const C = await rawBlock('crossing C')
      const root = await cborBlock({ c: C.cid, a: A.cid })
      const source = await storeOf([root, C, A, H, M])
      const target = await storeOf([H])

      const { receiver } = await pull(source, target, [root.cid], { hints: [H.cid], smallStoreBlocks: 0 })

      await expectHoldsAll(target, [root, C, A, H, M])
      expect(receiver.counters.stragglerRounds).to.equal(1)
      expect(receiver.counters.blocksReceived).to.equal(4)
    })

    it('rejects with BlocksNotAvailableError naming the blocks the sender lacks', async () => {
      const dag = await sampleDag('missing')
      const source = await storeOf(dag.stored.filter(b => b !== dag.E && b !== dag.D))
      const target = new MemoryBlockstore()

      const err = await rejection(pull(source, target, [dag.root.cid]))

      expect(err.name).to.equal(BlocksNotAvailableError.name)
      expect(keys((err as BlocksNotAvailableError).cids).sort()).to.deep.equal(keys([dag.D.cid, dag.E.cid]).sort())
      // what the sender had was stored, verified
      for (const block of dag.stored.filter(b => b !== dag.E && b !== dag.D)) {
        expect(await holdsExactly(target, block)).to.be.true()
      }
    })
  })

  describe('push', () => {
    it('pushes cold to an empty receiver', async () => {
      const dag = await sampleDag('push-cold')
      const source = await storeOf(dag.stored)
      const target = new MemoryBlockstore()

      const { sender, receiver } = await push(source, target, [dag.root.cid])

      await expectHoldsAll(target, dag.stored)
      expect(sender.counters.blocksSent).to.equal(dag.stored.length)
      expect(receiver.counters.blocksReceived).to.equal(dag.stored.length)
      expect(sender.counters.duplicatesReported).to.equal(0)
    })

    it('reports duplicates the receiver already held and ends with every block stored', async () => {
      const v1 = await buildDag(treeSpecs(4, 2), 'push-warm')
      const extra = await rawBlock('push-warm extra leaf')
      const root2 = await cborBlock({ old: v1[0].cid, extra: extra.cid })
      const source = await storeOf([...v1, extra, root2])
      const target = await storeOf(v1)

      // a cold-call window, as the service uses: without one, how much of v1
      // goes out before the receiver's Bloom arrives is a race
      const { sender, receiver } = await push(source, target, [root2.cid], [], 1)

      await expectHoldsAll(target, [...v1, extra, root2])
      // the receiver's done frame carries its duplicate count back to the sender
      expect(sender.counters.duplicatesReported).to.equal(receiver.counters.duplicateBlocks)
      expect(receiver.counters.blocksReceived - receiver.counters.duplicateBlocks - receiver.counters.unrequestedBlocks).to.equal(2)
      // once the receiver's Bloom arrives the sender stops descending into v1
      expect(sender.counters.blocksSent).to.be.lessThan(v1.length + 2)
    })

    it('sends the receiver\'s Bloom of hinted blocks first so a warm push sends little', async () => {
      const v1 = await buildDag(treeSpecs(4, 3), 'push-hint')
      const extra = await rawBlock('push-hint extra leaf')
      const root2 = await cborBlock({ children: [v1[1].cid, v1[2].cid, v1[3].cid], extra: extra.cid })
      const source = await storeOf([...v1, extra, root2])
      const target = await storeOf(v1)

      // a cold-call window of half of v1's bytes: without one, whether the
      // greeting's Bloom arrives before the sender has sent all of v1 is a
      // race (a loaded machine loses it); with it, the sender stops at half
      // and the Bloom of the hinted v1 has it skip the rest
      const half = Math.floor(v1.reduce((sum, block) => sum + block.bytes.length, 0) / 2)
      const { sender, receiver } = await push(source, target, [root2.cid], [v1[0].cid], half)

      await expectHoldsAll(target, [...v1, extra, root2])
      expect(receiver.counters.blocksReceived - receiver.counters.duplicateBlocks).to.equal(2)
      expect(sender.counters.blocksSent).to.be.lessThan(v1.length)
    })

    it('with a cold-call window the sender waits for the greeting\'s Bloom, then skips what it holds', async () => {
      const v1 = await buildDag(treeSpecs(4, 3), 'push-window')
      const extra = await rawBlock('push-window extra leaf')
      const root2 = await cborBlock({ children: [v1[1].cid, v1[2].cid, v1[3].cid], extra: extra.cid })
      const source = await storeOf([...v1, extra, root2])
      const target = await storeOf(v1)

      // a 1 byte window: the root goes out, then nothing until the greeting (a Bloom of v1) is in
      const { sender, receiver } = await push(source, target, [root2.cid], [v1[0].cid], 1)

      await expectHoldsAll(target, [...v1, extra, root2])
      expect(sender.counters.blocksSent).to.equal(2)
      expect(receiver.counters.duplicateBlocks).to.equal(0)
      expect(sender.counters.duplicatesReported).to.equal(0)
    })

    it('a warm push whose greeting\'s Bloom of the hinted DAG holds every held block found sends its raw leaves without a sync round', async () => {
      const v1 = await buildDag(treeSpecs(4, 3), 'push-no-sync')
      const leaves = await Promise.all([0, 1, 2].map(async i => rawBlock(`push-no-sync new leaf ${i}`)))
      const dir = await cborBlock({ leaves: leaves.slice(1).map(leaf => leaf.cid) })
      const root2 = await cborBlock({ children: [v1[1].cid, v1[2].cid, v1[3].cid], leaf: leaves[0].cid, dir: dir.cid })
      const source = await storeOf([...v1, ...leaves, dir, root2])
      const target = await storeOf(v1)

      // a 1 byte window: the root goes out, then nothing until the greeting (a Bloom of v1, trusted whole)
      const { sender, receiver } = await push(source, target, [root2.cid], [v1[0].cid], 1)

      await expectHoldsAll(target, [...v1, ...leaves, dir, root2])
      // neither the greeting's Bloom nor the roots-held status (no Bloom: nothing found outside v1) calls for one
      expect(sender.counters.syncs).to.equal(0)
      expect(sender.counters.blocksSent).to.equal(2 + leaves.length)
      expect(receiver.counters.duplicateBlocks).to.equal(0)
    })

    it('a push with a cold call sends its raw leaves within it before the server says anything; without one it holds them back', async () => {
      const leaves = await Promise.all([0, 1, 2].map(async i => rawBlock(`push-early-leaves leaf ${i}`)))
      const dir = await cborBlock({ leaves: leaves.map(leaf => leaf.cid) })
      const source = await storeOf([...leaves, dir])
      const leafKeys = new Set(leaves.map(leaf => leaf.cid.toString()))

      /** The CIDs of the block frames a silent server reads until the sender's idle, or until `quietMs` without a frame */
      const silentServer = async (coldCallBytes: number, quietMs: number): Promise<string[]> => {
        const [a, b] = await streamPair()
        const senderFramed = new FramedStream(a)
        const serverFramed = new FramedStream(b)
        const sender = new SenderSession({ blockstore: source, roots: [dir.cid], coldCallBytes })
        const controller = new AbortController()
        const sending = runSender(senderFramed, sender, { signal: controller.signal, first: [{ type: 'push', roots: [dir.cid], hints: [] }] }).catch(() => {})
        const received: string[] = []
        const frames = serverFramed.messages({ signal: controller.signal })
        try {
          while (true) {
            let timer: ReturnType<typeof setTimeout> | undefined
            const quiet = new Promise<'quiet'>(resolve => { timer = setTimeout(() => { resolve('quiet') }, quietMs) })
            const next = await Promise.race([frames.next(), quiet])
            clearTimeout(timer)
            if (next === 'quiet' || next.done === true || next.value.type === 'idle') {
              break
            }
            if (next.value.type === 'block') {
              received.push(next.value.cid.toString())
            }
          }
        } finally {
          controller.abort()
          senderFramed.abort(new Error('test over'))
          serverFramed.abort(new Error('test over'))
          await sending
        }
        return received
      }

      // a cold call (a push with hints): the root, then its leaves, then idle, with no status from the server at all
      const early = await silentServer(64 * 1024, SESSION_TIMEOUT)
      expect(early[0]).to.equal(dir.cid.toString())
      expect(early.filter(cid => leafKeys.has(cid))).to.have.lengthOf(leaves.length)
      // no cold call (a push without hints): the root only, the leaves wait for the server's word on the roots
      const held = await silentServer(0, 300)
      expect(held).to.deep.equal([dir.cid.toString()])
    })

    it('a push whose receiver holds a subgraph outside the hints names it in its roots-held Bloom, and the sender syncs before its leaves', async () => {
      const v1 = await buildDag(treeSpecs(4, 3), 'push-outside')
      const held = await Promise.all([0, 1, 2, 3].map(async i => rawBlock(`push-outside held leaf ${i}`)))
      const heldDir = await cborBlock({ leaves: held.map(leaf => leaf.cid) })
      const fresh = await rawBlock('push-outside new leaf')
      const root2 = await cborBlock({ children: [v1[1].cid, v1[2].cid], held: heldDir.cid, fresh: fresh.cid })
      const source = await storeOf([...v1, ...held, heldDir, fresh, root2])
      // the receiver holds v1 (hinted) and, apart from it, heldDir with its leaves
      const target = await storeOf([...v1, ...held, heldDir])

      const { sender, receiver } = await push(source, target, [root2.cid], [v1[0].cid], 1)

      await expectHoldsAll(target, [...v1, ...held, heldDir, fresh, root2])
      expect(sender.counters.syncs).to.equal(1)
      // heldDir itself may go out before the roots-held status arrives; its leaves wait for the sync and are skipped
      expect(receiver.counters.duplicateBlocks).to.be.at.most(1)
      expect(sender.counters.blocksSent).to.be.at.most(3)
    })
  })

  describe('a malicious sender', () => {
    /** Writes `messages` as a sender would, then closes its end; collects what the receiver says */
    async function malicious (target: MemoryBlockstore, root: CID, messages: Message[]): Promise<{ result: PromiseSettledResult<void>, replies: Message[], receiver: ReceiverSession }> {
      const signal = AbortSignal.timeout(SESSION_TIMEOUT)
      const [a, b] = await streamPair()
      const evil = new FramedStream(a)
      const receiver = await ReceiverSession.create({ blockstore: target, roots: [root] })
      const receiving = runReceiver(new FramedStream(b), receiver, { signal })
      const replies: Message[] = []
      const reading = (async () => {
        try {
          for await (const message of evil.messages({ signal })) {
            replies.push(message)
          }
        } catch {
          // the receiver resets the stream after an error frame
        }
      })()
      try {
        for (const message of messages) {
          await evil.write(message, { signal })
        }
        await evil.closeWrite({ signal })
      } catch {
        // the receiver may reset the stream before everything is written
      }
      const [result] = await Promise.allSettled([receiving])
      await reading
      return { result, replies, receiver }
    }

    it('a block whose bytes do not match its CID fails the session with HashMismatchError and is not stored', async () => {
      const leaf = await rawBlock('honest leaf')
      const root = await cborBlock({ leaf: leaf.cid })
      const forged = new TextEncoder().encode('forged bytes for the root')
      const target = new MemoryBlockstore()

      const { result, replies } = await malicious(target, root.cid, [
        { type: 'header', roots: [root.cid] },
        { type: 'block', cid: root.cid, bytes: forged }
      ])

      expect(result.status).to.equal('rejected')
      expect((result as PromiseRejectedResult).reason.name).to.equal(HashMismatchError.name)
      expect(await target.has(root.cid)).to.be.false()
      // the receiver told the sender why before resetting the stream
      const error = replies.find(m => m.type === 'error')
      expect(error).to.have.property('code', 'verification')
    })

    it('a forged block deeper in the DAG fails after the honest blocks before it were stored', async () => {
      const leaf = await rawBlock('deep honest leaf')
      const mid = await pbBlock('mid', [leaf.cid])
      const root = await cborBlock({ mid: mid.cid })
      const target = new MemoryBlockstore()

      const { result } = await malicious(target, root.cid, [
        { type: 'header', roots: [root.cid] },
        { type: 'block', cid: root.cid, bytes: root.bytes },
        { type: 'block', cid: mid.cid, bytes: mid.bytes },
        { type: 'block', cid: leaf.cid, bytes: new TextEncoder().encode('not the leaf') }
      ])

      expect(result.status).to.equal('rejected')
      expect((result as PromiseRejectedResult).reason.name).to.equal(HashMismatchError.name)
      expect(await holdsExactly(target, root)).to.be.true()
      expect(await holdsExactly(target, mid)).to.be.true()
      expect(await target.has(leaf.cid)).to.be.false()
    })

    it('blocks the receiver never asked for are not stored, even valid ones', async () => {
      const leaf = await rawBlock('wanted leaf')
      const root = await cborBlock({ leaf: leaf.cid })
      const stranger = await rawBlock('nobody asked for this')
      const forgedStranger = await rawBlock('another stranger')
      const target = new MemoryBlockstore()

      const { result, replies, receiver } = await malicious(target, root.cid, [
        { type: 'header', roots: [root.cid] },
        { type: 'block', cid: stranger.cid, bytes: stranger.bytes },
        // an unrequested block with bad bytes is ignored too, without verifying it
        { type: 'block', cid: forgedStranger.cid, bytes: stranger.bytes },
        { type: 'block', cid: root.cid, bytes: root.bytes },
        // the leaf before it is wanted: unrequested until the root is stored
        { type: 'block', cid: leaf.cid, bytes: leaf.bytes }
      ])

      expect(result.status).to.equal('fulfilled')
      expect(receiver.complete).to.be.true()
      expect(receiver.counters.unrequestedBlocks).to.equal(2)
      expect(await target.has(stranger.cid)).to.be.false()
      expect(await target.has(forgedStranger.cid)).to.be.false()
      expect(await holdsExactly(target, root)).to.be.true()
      expect(await holdsExactly(target, leaf)).to.be.true()
      expect(replies.map(m => m.type)).to.include('done')
    })

    it('an error frame from the sender ends the session with the matching error', async () => {
      const root = await rawBlock('refused root')
      const target = new MemoryBlockstore()

      const { result } = await malicious(target, root.cid, [
        { type: 'error', code: 'refused', message: 'go away', cids: [] }
      ])

      expect(result.status).to.equal('rejected')
      expect((result as PromiseRejectedResult).reason.name).to.equal(SessionRefusedError.name)
    })
  })

  describe('random DAGs', () => {
    /** Mirrors a random DAG into a store holding the blocks `heldMask` picks, over a pull or a saturated-Bloom session */
    async function mirrorRandom ({ specs, roots }: RandomDag, heldMask: boolean[], saturate: boolean): Promise<void> {
      const blocks = await buildDag(specs, `random-${specs.length}`)
      const rootCids = roots.map(i => blocks[i].cid)
      const expected = [...reachable(specs, roots)].map(i => blocks[i]).filter(b => !isIdentity(b))
      const source = await storeOf(blocks.filter(b => !isIdentity(b)))
      const held = expected.filter((_, i) => heldMask[i])
      const target = await storeOf(held)

      const { receiver } = saturate
        ? await direct(source, target, rootCids, saturatedBloom())
        : await pull(source, target, rootCids)

      await expectHoldsAll(target, expected)
      const walked = await dagBlocks(target, rootCids)
      expect(walked.size).to.equal(expected.length)
      // stored outcomes are exactly the blocks that were missing
      expect(receiver.counters.blocksReceived - receiver.counters.duplicateBlocks - receiver.counters.unrequestedBlocks).to.equal(expected.length - held.length)
    }

    it('every pull of a random DAG into a random partial store ends with the whole DAG stored', async () => {
      await fc.assert(fc.asyncProperty(arbitraryDag(25), fc.array(fc.boolean(), { minLength: 25, maxLength: 25 }), fc.boolean(), mirrorRandom), { numRuns: 40 })
    })
  })

  it('the Bloom a receiver sends holds the blocks it has', async () => {
    const dag = await sampleDag('bloom')
    const target = await storeOf([dag.A, dag.C])
    const receiver = await ReceiverSession.create({ blockstore: target, roots: [dag.root.cid], hints: [dag.A.cid], smallStoreBlocks: 0 })
    const request = await receiver.pullRequest()
    expect(request.bloom).to.not.equal(undefined)
    expect(request.bloom?.has(bloomItem(dag.A.cid))).to.be.true()
    expect(request.bloom?.has(bloomItem(dag.C.cid))).to.be.true()
    expect(keys(request.wants)).to.deep.equal(keys([dag.root.cid]))
  })

  // last: while the sender's failure goes unobserved (see the report), a browser run stops at the first of these
  describe('failures', () => {
    /** A real store whose reads of one block fail with `error` */
    class FailingStore extends MemoryBlockstore {
      readonly failing: string
      readonly error: Error

      constructor (failing: CID, error: Error) {
        super()
        this.failing = failing.toString()
        this.error = error
      }

      get (key: CID, options?: AbortOptions): ReturnType<MemoryBlockstore['get']> {
        if (key.toString() === this.failing) {
          throw this.error
        }
        return super.get(key, options)
      }
    }

    it('a sender whose store fails ends the session at once: the receiver gets an internal error frame', async () => {
      const dag = await sampleDag('failing-store')
      const source = new FailingStore(dag.B.cid, new Error('the disk is on fire'))
      await putAll(source, dag.stored)
      const target = new MemoryBlockstore()

      const started = Date.now()
      const err = await rejection(pull(source, target, [dag.root.cid]))

      // not the helper's 5 s deadline: the failure itself ended the session
      expect(Date.now() - started).to.be.lessThan(2000)
      expect(err.name).to.equal('RemoteError')
      expect(err).to.have.property('code', 'internal')
    })

    it('a sender whose store reports a missing block the Helia way (BlockNotFoundWhileOfflineError) names it in BlocksNotAvailableError', async () => {
      const dag = await sampleDag('helia-missing')
      const offline = new Error('The block was not present in the blockstore and the node is running offline so cannot fetch it')
      offline.name = 'BlockNotFoundWhileOfflineError'
      const source = new FailingStore(dag.D.cid, offline)
      await putAll(source, dag.stored)
      const target = new MemoryBlockstore()

      const started = Date.now()
      const err = await rejection(pull(source, target, [dag.root.cid]))

      expect(Date.now() - started).to.be.lessThan(2000)
      expect(err.name).to.equal(BlocksNotAvailableError.name)
      expect(keys((err as BlocksNotAvailableError).cids)).to.deep.equal(keys([dag.D.cid]))
    })
  })
})

describe('core/sessions: shallow pulls (dl: 0)', () => {
  it('sends the roots\' own blocks and nothing below them, with no Bloom in the request', async () => {
    const leaf = await rawBlock('leaf under a')
    const child = await pbBlock('child under b', [leaf.cid])
    const a = await pbBlock('directory a', [leaf.cid])
    const b = await pbBlock('directory b', [child.cid])
    const source = await storeOf([leaf, child, a, b])
    // the target holds something, so a whole pull would send a Bloom of it
    const target = await storeOf([await rawBlock('unrelated')])
    const outcome = await pull(source, target, [a.cid, b.cid], { shallow: true })
    expect(outcome.receiver.complete).to.be.true()
    expect(outcome.sender.counters.blocksSent).to.equal(2)
    await expectHoldsAll(target, [a, b])
    expect(await target.has(leaf.cid)).to.be.false()
    expect(await target.has(child.cid)).to.be.false()
    expect(outcome.receiver.counters.bloomBytesSent).to.equal(0)
  })

  it('reports a root the sender lacks as missing and stores the others', async () => {
    const held = await pbBlock('held root', [(await rawBlock('below')).cid])
    const absent = await pbBlock('root the sender lacks')
    const source = await storeOf([held])
    const target = new MemoryBlockstore()
    const err = await rejection(pull(source, target, [held.cid, absent.cid], { shallow: true }))
    expect(err).to.be.an.instanceOf(BlocksNotAvailableError)
    expect((err as BlocksNotAvailableError).cids.map(String)).to.deep.equal([absent.cid.toString()])
    await expectHoldsAll(target, [held])
  })

  it('a whole pull of the same roots sends the blocks below them (the depth limit is what differs)', async () => {
    const leaf = await rawBlock('leaf under c')
    const c = await pbBlock('directory c', [leaf.cid])
    const target = new MemoryBlockstore()
    const outcome = await pull(await storeOf([leaf, c]), target, [c.cid])
    expect(outcome.sender.counters.blocksSent).to.equal(2)
    await expectHoldsAll(target, [c, leaf])
  })
})

describe('core/sessions: the sender\'s want queue', () => {
  it('a status past the queue cap ends the session with LimitExceededError, and the budget counts exactly what was queued', async () => {
    const source = new MemoryBlockstore()
    const root = await rawBlock(new Uint8Array([1, 2, 3]))
    await source.put(root.cid, root.bytes)
    const queuedWants = new Budget('queuedWants', 1_000_000)
    // the queue takes 2 + one list of 2 (maxCidsPerMessage): 4 wants at most
    const sender = new SenderSession({ blockstore: source, roots: [root.cid], maxCidsPerMessage: 2, maxQueuedWants: 2, budgets: { queuedWants } })
    expect(queuedWants.used).to.equal(1)
    const wants = await Promise.all([10, 11, 12, 13].map(async i => (await rawBlock(new Uint8Array([i]))).cid))
    const err = await rejection(sender.receive({ type: 'status', wants }))
    expect(err).to.be.an.instanceOf(LimitExceededError)
    // the root and three wants were queued before the cap: all four are charged, no more
    expect(queuedWants.used).to.equal(4)
    sender.close()
    expect(queuedWants.used).to.equal(0)
  })
})

describe('core/sessions: a hinted DAG found whole is trusted, one found damaged is not', function () {
  this.timeout(30_000)

  /**
   * Version 1 (a tree three levels deep: nodes 1 and 2 below the root, 3 to 6
   * below them, raw leaves 7 to 14) and version 2: a new root over version
   * 1's root and a new subtree. The sender holds both; the receiver holds
   * version 1 but for the nodes listed in `lost`.
   */
  async function versions (salt: string, lost: number[] = []): Promise<{ old: Block[], added: Block[], root: Block, source: MemoryBlockstore, target: ReadCountingBlockstore }> {
    const old = await buildDag(treeSpecs(3, 2), salt)
    const fresh = await buildDag(treeSpecs(1, 2), `${salt} new`)
    const root = await cborBlock({ version: 2, previous: old[0].cid, added: fresh[0].cid })
    const source = await storeOf([...old, ...fresh, root])
    const target = new ReadCountingBlockstore()
    await putAll(target, old.filter((_, i) => !lost.includes(i)))
    return { old, added: [root, ...fresh], root, source, target }
  }

  const paths: Array<{ name: string, smallStoreBlocks?: number }> = [
    { name: 'with a request Bloom of the hinted blocks (the hint walk runs in pullRequest)', smallStoreBlocks: 0 },
    { name: 'with a request Bloom of the whole store (the hint walk runs in the background)' }
  ]

  for (const { name, smallStoreBlocks } of paths) {
    describe(name, () => {
      for (const { what, node } of [{ what: 'a leaf', node: 14 }, { what: 'an interior block', node: 2 }]) {
        it(`fetches ${what} missing from the hinted DAG`, async () => {
          const { old, root, source, target } = await versions(`lost ${what} ${smallStoreBlocks}`, [node])

          const { receiver } = await pull(source, target, [root.cid], { hints: [old[0].cid], smallStoreBlocks })

          expect(receiver.complete).to.be.true()
          expect(await holdsExactly(target, old[node]), `${what}, lost, is stored`).to.be.true()
          await expectHoldsAll(target, old)
        })
      }

      it('with the hinted DAG whole, receives only the new blocks and reads no old block twice', async () => {
        const { old, added, root, source, target } = await versions(`whole ${smallStoreBlocks}`)

        const { receiver } = await pull(source, target, [root.cid], { hints: [old[0].cid], smallStoreBlocks })

        expect(receiver.complete).to.be.true()
        expect(receiver.counters.blocksReceived).to.equal(added.length)
        expect(receiver.counters.duplicateBlocks).to.equal(0)
        // the hint walk read the old root; the frontier, trusting what it found whole, did not read it again
        expect(target.readsOf(old[0].cid)).to.equal(1)
        for (const block of old) {
          expect(target.readsOf(block.cid), `reads of ${block.cid}`).to.be.at.most(1)
        }
        await expectHoldsAll(target, [...added, ...old])
      })

      it('trusts nothing when maxHintBlocks cuts the hint walk off: a block missing past the cut is fetched', async () => {
        // breadth first, the walk reads the root and nodes 1 and 2, then stops: it never meets the lost leaf 14
        const { old, root, source, target } = await versions(`cut off ${smallStoreBlocks}`, [14])

        const { receiver } = await pull(source, target, [root.cid], { hints: [old[0].cid], smallStoreBlocks, maxHintBlocks: 3 })

        expect(receiver.complete).to.be.true()
        expect(await holdsExactly(target, old[14]), 'the lost leaf is stored').to.be.true()
        await expectHoldsAll(target, old)
      })

      it('a hint walk that finds the node\'s held budget used up keeps nothing and trusts nothing; the frontier still gets its room', async () => {
        const { old, root, source, target } = await versions(`held budget cut ${smallStoreBlocks}`, [14])
        // 13 of 20 free: the hint walk (14 held blocks) does not fit, the frontier (14) does once the other session ends
        const heldBudget = new Budget('heldCids', 20)
        heldBudget.charge(7)
        setTimeout(() => { heldBudget.release(7) }, 100)

        const { receiver } = await pull(source, target, [root.cid], { hints: [old[0].cid], smallStoreBlocks, heldBudget })

        expect(receiver.complete).to.be.true()
        expect(await holdsExactly(target, old[14]), 'the lost leaf is stored').to.be.true()
        // nothing trusted: the frontier read the old root again
        expect(target.readsOf(old[0].cid)).to.equal(2)
        // what the frontier found held below the new root, not the hint walk's
        expect(heldBudget.used).to.equal(14)
        receiver.close()
        expect(heldBudget.used).to.equal(0)
      })

      it('charges the held budget once for each block the hint walk keeps and once more for trusting them whole', async () => {
        const { old, root, source, target } = await versions(`held budget whole ${smallStoreBlocks}`)
        const heldBudget = new Budget('heldCids', 1000)

        const { receiver } = await pull(source, target, [root.cid], { hints: [old[0].cid], smallStoreBlocks, heldBudget })

        expect(receiver.complete).to.be.true()
        // and the frontier keeps the old root it meets below the new one, without walking below it
        expect(heldBudget.used).to.equal(2 * old.length + 1)
        expect(target.readsOf(old[0].cid)).to.equal(1)
        receiver.close()
        expect(heldBudget.used).to.equal(0)
      })

      it('reads the hinted DAG again when maxHintBlocks cuts the hint walk off', async () => {
        const { old, root, source, target } = await versions(`cut off whole ${smallStoreBlocks}`)

        const { receiver } = await pull(source, target, [root.cid], { hints: [old[0].cid], smallStoreBlocks, maxHintBlocks: 3 })

        expect(receiver.complete).to.be.true()
        // once by the hint walk, once by the frontier, which was given nothing to trust
        expect(target.readsOf(old[0].cid)).to.equal(2)
      })
    })
  }

  it('a push server counts the trusted blocks a sender sends before it reads the greeting as duplicates, not unrequested blocks', async () => {
    // 31 blocks below the link to version 1: more than the 16 unrequested blocks a receiver tolerates
    const old = await buildDag(treeSpecs(4, 2), 'pushed before the greeting')
    const root = await cborBlock({ version: 2, previous: old[0].cid })
    const target = await storeOf(old)
    const receiver = await ReceiverSession.create({ blockstore: target, roots: [root.cid], hints: [old[0].cid], smallStoreBlocks: 0, announceRoots: true })
    await receiver.pushGreeting()

    // a sender in its cold call sends the whole DAG before the greeting's Bloom reaches it
    await receiver.receive({ type: 'header', roots: [root.cid] })
    for (const block of [root, ...old]) {
      await receiver.receive({ type: 'block', cid: block.cid, bytes: block.bytes })
    }

    expect(receiver.complete).to.be.true()
    expect(receiver.counters.duplicateBlocks).to.equal(old.length)
    expect(receiver.counters.unrequestedBlocks).to.equal(0)
  })

  it('a block that arrives during the background hint walk is taken only once the walk has ended', async () => {
    /** Holds the first read (the hint walk's, of the old root) until `open` is called */
    class HeldFirstRead extends ReadCountingBlockstore {
      private held?: Promise<void>
      open: () => void = () => {}

      constructor () {
        super()
        this.held = new Promise(resolve => { this.open = resolve })
      }

      async * get (key: CID, options?: AbortOptions): AsyncGenerator<Uint8Array> {
        const held = this.held
        this.held = undefined
        await held
        yield * super.get(key, options)
      }
    }
    const old = await buildDag(treeSpecs(3, 2), 'held hint walk')
    const root = await cborBlock({ version: 2, previous: old[0].cid })
    const target = new HeldFirstRead()
    await putAll(target, old)
    const receiver = await ReceiverSession.create({ blockstore: target, roots: [root.cid], hints: [old[0].cid] })
    await receiver.pullRequest()
    await receiver.receive({ type: 'header', roots: [root.cid] })

    const taking = receiver.receive({ type: 'block', cid: root.cid, bytes: root.bytes })
    for (let i = 0; i < 5; i++) {
      await new Promise(resolve => setTimeout(resolve, 0))
    }
    // the hint walk is held at its first read: the block has not reached the frontier
    expect(receiver.frontier.isWanted(root.cid)).to.be.true()
    expect(await target.has(root.cid)).to.be.false()
    target.open()
    const step = await taking

    expect(step.block?.outcome).to.equal('stored')
    expect(receiver.complete).to.be.true()
    expect(step.replies.map(reply => reply.type)).to.deep.equal(['done'])
    // read by the hint walk only: the frontier trusted what the walk found whole
    expect(target.readsOf(old[0].cid)).to.equal(1)
  })
})
