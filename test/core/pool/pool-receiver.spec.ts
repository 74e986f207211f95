import { streamPair } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import * as raw from 'multiformats/codecs/raw'
import { PoolReceiver } from '../../../src/core/pool/pool-receiver.ts'
import { DEFAULT_POOL_BUCKETS } from '../../../src/core/pool/shard-planner.ts'
import { bucketOf } from '../../../src/core/pool/shard.ts'
import { SenderSession } from '../../../src/core/sender.ts'
import { BlocksNotAvailableError, HashMismatchError } from '../../../src/errors.ts'
import { FramedStream } from '../../../src/transport/framed-stream.ts'
import { runReceiver, runSender } from '../../../src/transport/run-session.ts'
import { buildDag, cborBlock, getBytes, pbSizedBlock, putAll, rawBlock } from '../../fixtures/dag.ts'
import { treeSpecs } from '../../fixtures/dags.ts'
import type { BlockSource } from '../../../src/core/blocks.ts'
import type { Message, PullMessage } from '../../../src/core/messages.ts'
import type { Block } from '../../fixtures/dag.ts'
import type { CID } from 'multiformats/cid'

const SESSION_TIMEOUT = 10_000

interface Provider {
  key: string
  store: BlockSource
  /** Serve the pull as a sender that does not know shards (revision 1.1) */
  unsharded?: boolean
}

interface PoolOutcome {
  pool: PoolReceiver
  /** Each provider's sender, by key */
  senders: Map<string, SenderSession>
  /** The raw leaves each provider sent, by key */
  leaves: Map<string, CID[]>
  /** Each member's session: fulfilled, or rejected with why */
  results: Map<string, PromiseSettledResult<void>>
  /** The pull each provider was sent, by key */
  requests: Map<string, PullMessage>
}

/** Reads the first message of a stream, as a server does */
async function firstMessage (framed: FramedStream, signal: AbortSignal): Promise<Message> {
  const first = await framed.messages({ signal }).next()
  if (first.done === true) {
    throw new Error('the stream closed before the first message')
  }
  return first.value
}

/**
 * A CAR Pool pull of `root` into `target` from `providers`, each a
 * SenderSession over an in-memory stream pair, served as the node serves a pull
 */
async function poolPull (target: MemoryBlockstore, root: CID, providers: Provider[], buckets?: number, watch?: (pool: PoolReceiver) => void): Promise<PoolOutcome> {
  const signal = AbortSignal.timeout(SESSION_TIMEOUT)
  const pool = await PoolReceiver.create({ blockstore: target, roots: [root], providers: providers.map(p => p.key), buckets })
  watch?.(pool)
  const senders = new Map<string, SenderSession>()
  const leaves = new Map<string, CID[]>()
  const results = new Map<string, PromiseSettledResult<void>>()
  const requests = new Map<string, PullMessage>()
  await Promise.all(providers.map(async provider => {
    const member = pool.member(provider.key)
    const [a, b] = await streamPair()
    const senderFramed = new FramedStream(a)
    const receiverFramed = new FramedStream(b)
    const sent: CID[] = []
    leaves.set(provider.key, sent)
    const sending = (async () => {
      const first = await firstMessage(senderFramed, signal)
      const request = first as PullMessage
      requests.set(provider.key, request)
      const sender = new SenderSession({ blockstore: provider.store, roots: request.roots, request: provider.unsharded === true ? { ...request, shard: undefined } : request })
      senders.set(provider.key, sender)
      await runSender(senderFramed, sender, {
        signal,
        onSent: m => {
          if (m.type === 'block' && m.cid.code === raw.code) {
            sent.push(m.cid)
          }
        }
      })
    })()
    sending.catch(() => {})
    const [received] = await Promise.allSettled([runReceiver(receiverFramed, member, { signal, first: [await member.pullRequest()] }), sending])
    if (received.status === 'rejected') {
      pool.fail(provider.key, received.reason)
    }
    results.set(provider.key, received)
  }))
  await pool.frontier.settle()
  pool.close()
  return { pool, senders, leaves, results, requests }
}

/**
 * A dag-pb root over `groups` dag-pb nodes, each linking raw leaves of
 * `sizes(group, i)` seeded bytes, the links naming `claim(size)` as their
 * size (the true size unless told otherwise)
 */
async function sizedLeaves (salt: string, groups: number, perGroup: number, sizes: (group: number, i: number) => number, claim: (size: number) => number = size => size): Promise<{ root: CID, blocks: Block[], leaves: Block[] }> {
  const leaves: Block[] = []
  const nodes: Block[] = []
  for (let g = 0; g < groups; g++) {
    const group: Block[] = []
    for (let i = 0; i < perGroup; i++) {
      const bytes = new Uint8Array(sizes(g, i))
      new DataView(bytes.buffer).setUint32(0, g * perGroup + i)
      bytes.set(new TextEncoder().encode(salt), 4)
      group.push(await rawBlock(bytes))
    }
    leaves.push(...group)
    nodes.push(await pbSizedBlock(`${salt} ${g}`, group.map(leaf => ({ cid: leaf.cid, size: claim(leaf.bytes.byteLength) }))))
  }
  const root = await pbSizedBlock(salt, nodes.map(node => ({ cid: node.cid, size: 1 })))
  return { root: root.cid, blocks: [root, ...nodes, ...leaves], leaves }
}

/** A tree of 216 raw leaves under 43 interior blocks (dag-cbor and dag-pb) */
async function tree (salt: string): Promise<{ root: CID, blocks: Block[], leaves: Block[] }> {
  const blocks = await buildDag(treeSpecs(3, 6), salt)
  return { root: blocks[0].cid, blocks, leaves: blocks.filter(b => b.cid.code === raw.code) }
}

/** A dag-cbor root over `groups` dag-cbor nodes, each linking `perGroup` raw leaves of `leafBytes` seeded bytes */
async function wideLeaves (salt: string, groups: number, perGroup: number, leafBytes: number): Promise<{ root: CID, blocks: Block[], leaves: Block[] }> {
  const leaves: Block[] = []
  const nodes: Block[] = []
  for (let g = 0; g < groups; g++) {
    const group: Block[] = []
    for (let i = 0; i < perGroup; i++) {
      const bytes = new Uint8Array(leafBytes)
      new DataView(bytes.buffer).setUint32(0, g * perGroup + i)
      bytes.set(new TextEncoder().encode(salt), 4)
      group.push(await rawBlock(bytes))
    }
    leaves.push(...group)
    nodes.push(await cborBlock({ group: g, leaves: group.map(leaf => leaf.cid) }))
  }
  const root = await cborBlock({ salt, groups: nodes.map(node => node.cid) })
  return { root: root.cid, blocks: [root, ...nodes, ...leaves], leaves }
}

async function storeOf (blocks: Iterable<Block>): Promise<MemoryBlockstore> {
  const store = new MemoryBlockstore()
  await putAll(store, blocks)
  return store
}

/** Every block is in `store` with its own bytes */
async function expectHoldsAll (store: MemoryBlockstore, blocks: Block[]): Promise<void> {
  for (const block of blocks) {
    expect(await store.has(block.cid), `${block.cid} is missing`).to.be.true()
  }
}

/** A store that waits `ms` before each read */
function slowStore (store: MemoryBlockstore, ms: number): BlockSource {
  return {
    has: async (cid, options) => store.has(cid, options),
    get: async function * (cid, options) {
      await new Promise(resolve => setTimeout(resolve, ms))
      yield * store.get(cid, options)
    }
  }
}

/** A store that answers `forged` with `replacement`, once `before()` has resolved */
function forgingStore (store: MemoryBlockstore, forged: CID, replacement: Uint8Array = new TextEncoder().encode('not the block'), before?: () => Promise<void>): BlockSource {
  return {
    has: async (cid, options) => store.has(cid, options),
    get: async function * (cid, options) {
      if (cid.equals(forged)) {
        await before?.()
        yield replacement
        return
      }
      yield * store.get(cid, options)
    }
  }
}

describe('core/pool PoolReceiver over stream pairs', () => {
  it('3 providers: the DAG arrives whole, each leaf about once, the interior blocks from the first provider only', async () => {
    const { root, blocks, leaves } = await tree('pool-3')
    const target = new MemoryBlockstore()
    const providers = await Promise.all(['a', 'b', 'c'].map(async key => ({ key, store: await storeOf(blocks) })))

    const { pool, leaves: sentLeaves, results, senders } = await poolPull(target, root, providers)

    expect([...results.values()].map(r => r.status)).to.deep.equal(['fulfilled', 'fulfilled', 'fulfilled'])
    expect(pool.complete).to.be.true()
    await expectHoldsAll(target, blocks)
    const totalLeaves = [...sentLeaves.values()].reduce((sum, sent) => sum + sent.length, 0)
    // each leaf came once, but for those in flight when work moved (in-memory
    // streams hold many); without shards every provider would send all of them
    expect(totalLeaves).to.be.within(leaves.length, Math.ceil(leaves.length * 1.5))
    for (const [key, sent] of sentLeaves) {
      // how the leaves split depends on which stream runs first (a fast one steals); each sends some
      expect(sent.length, `leaves from ${key}`).to.be.above(0)
      const interior = (senders.get(key)?.counters.blocksSent ?? 0) - sent.length
      if (key === 'a') {
        // the leader walks the DAG: its interior blocks show the receiver the leaves
        expect(interior, 'interior blocks from the leader').to.equal(blocks.length - leaves.length)
      } else {
        // the others are asked for leaves, and send the root's own block with their shallow pull
        expect(interior, `interior blocks from ${key}`).to.be.at.most(1)
      }
    }
  })

  it('a target store with slow lookups (on disk): no member sees the pull complete while another is taking a block', async () => {
    const { root, blocks } = await tree('pool-slow-target')
    /** Lookups take a few ms, as on disk: a block taken leaves the wants well before its links join them */
    class SlowLookups extends MemoryBlockstore {
      async has (cid: CID): Promise<boolean> {
        await new Promise(resolve => setTimeout(resolve, 2))
        return super.has(cid)
      }
    }
    const target = new SlowLookups()
    const providers = await Promise.all(['a', 'b', 'c'].map(async key => ({ key, store: await storeOf(blocks) })))

    const { pool, results } = await poolPull(target, root, providers)

    expect(pool.complete).to.be.true()
    expect([...results.values()].map(r => r.status)).to.deep.equal(['fulfilled', 'fulfilled', 'fulfilled'])
    await expectHoldsAll(target, blocks)
  })

  it('the leader\'s first leaves are those of its own buckets; the other sends no interior block but the root', async () => {
    const { root, blocks } = await tree('pool-shard')
    const target = new MemoryBlockstore()
    const providers = await Promise.all(['a', 'b'].map(async key => ({ key, store: await storeOf(blocks) })))

    const { leaves: sentLeaves, senders } = await poolPull(target, root, providers, 8)

    // with 8 buckets, a owns 0-3 and b owns 4-7 until one of them steals; b,
    // idle while a sends the interior blocks, may take some of a's, but never the other way first
    const first = (key: string): number[] => (sentLeaves.get(key) ?? []).slice(0, 20).map(cid => bucketOf(cid, 8))
    expect(first('a').every(bucket => bucket < 4)).to.be.true()
    expect((senders.get('b')?.counters.blocksSent ?? 0) - (sentLeaves.get('b')?.length ?? 0)).to.be.at.most(1)
    await expectHoldsAll(target, blocks)
  })

  it('a receiver that holds the interior blocks asks each provider for the leaves of its own buckets only', async () => {
    const { root, blocks, leaves } = await tree('pool-warm')
    const target = await storeOf(blocks.filter(block => block.cid.code !== raw.code))
    const providers = await Promise.all(['a', 'b'].map(async key => ({ key, store: await storeOf(blocks) })))

    const { pool, leaves: sentLeaves } = await poolPull(target, root, providers, 8)

    expect(pool.complete).to.be.true()
    await expectHoldsAll(target, blocks)
    const total = (sentLeaves.get('a')?.length ?? 0) + (sentLeaves.get('b')?.length ?? 0)
    expect(total).to.be.within(leaves.length, Math.ceil(leaves.length * 1.5))
    // the first want lists split the leaves by bucket
    expect(sentLeaves.get('a')?.slice(0, 20).every(cid => bucketOf(cid, 8) < 4)).to.be.true()
    expect(sentLeaves.get('b')?.slice(0, 20).every(cid => bucketOf(cid, 8) >= 4)).to.be.true()
  })

  it('the leader walks with a shard of no bucket: it sends every interior block and no leaf until it is asked', async () => {
    const { root, blocks, leaves } = await tree('pool-leader-shard')
    const target = new MemoryBlockstore()
    const providers = await Promise.all(['a', 'b'].map(async key => ({ key, store: await storeOf(blocks) })))

    const { pool, requests, senders, leaves: sentLeaves } = await poolPull(target, root, providers, 8)

    expect(pool.complete).to.be.true()
    await expectHoldsAll(target, blocks)
    // a walks (no dl) owning no bucket; b is asked (dl: 0) and owns 4-7
    expect(requests.get('a')?.depthLimit).to.be.undefined()
    expect(requests.get('a')?.shard?.buckets()).to.deep.equal([])
    expect(requests.get('b')?.depthLimit).to.equal(0)
    expect(requests.get('b')?.shard?.buckets()).to.deep.equal([4, 5, 6, 7])
    // a still sent leaves, each asked of it in a status once its walk was over
    const a = senders.get('a')
    expect(sentLeaves.get('a')?.length).to.be.above(0)
    expect(a?.counters.statusesReceived).to.be.above(0)
    expect((a?.counters.blocksSent ?? 0) - (sentLeaves.get('a')?.length ?? 0)).to.equal(blocks.length - leaves.length)
  })

  it('a provider that runs dry takes leaves of the walking leader\'s buckets before the leader is asked: none arrives twice', async () => {
    const { root, blocks, leaves } = await tree('pool-leader-steal')
    const target = new MemoryBlockstore()

    // the leader reads each block slowly: its walk of the interior blocks takes long
    const { pool, leaves: sentLeaves, results } = await poolPull(target, root, [
      { key: 'leader', store: slowStore(await storeOf(blocks), 15) },
      { key: 'fast', store: await storeOf(blocks) }
    ])

    expect([...results.values()].map(r => r.status)).to.deep.equal(['fulfilled', 'fulfilled'])
    expect(pool.complete).to.be.true()
    await expectHoldsAll(target, blocks)
    const fast = sentLeaves.get('fast') ?? []
    const leader = new Set((sentLeaves.get('leader') ?? []).map(cid => cid.toString()))
    // the fast one sent most leaves, the leader's buckets' among them, and nothing the leader sent too
    expect(fast.length).to.be.above(leaves.length * 0.75)
    expect(fast.some(cid => bucketOf(cid, DEFAULT_POOL_BUCKETS) < DEFAULT_POOL_BUCKETS / 2)).to.be.true()
    expect(fast.filter(cid => leader.has(cid.toString()))).to.deep.equal([])
    expect(fast.length + leader.size).to.equal(leaves.length)
  })

  it('leaves their dag-pb parents say are large are asked before the small ones', async () => {
    // one group: 200 small leaves, then 16 large ones, in link order
    const { root, blocks, leaves } = await sizedLeaves('pool-large-first', 1, 216, (_, i) => i < 200 ? 8_000 : 300_000)
    const target = new MemoryBlockstore()
    const providers = await Promise.all(['a', 'b'].map(async key => ({ key, store: await storeOf(blocks) })))
    const large = new Set(leaves.filter(leaf => leaf.bytes.byteLength > 8_000).map(leaf => leaf.cid.toString()))

    const { pool, leaves: sentLeaves } = await poolPull(target, root, providers)

    expect(pool.complete).to.be.true()
    await expectHoldsAll(target, blocks)
    for (const [key, sent] of sentLeaves) {
      // in link order they come last; asked first (the first ask of each
      // provider has room for at least two), each provider's first two
      // leaves are large ones
      expect(sent.slice(0, 2).map(cid => large.has(cid.toString())), `the first leaves from ${key}`).to.deep.equal([true, true])
    }
  })

  it('sizes the links claim only order and pace what is asked: claims far too large or too small still bring the whole DAG, each leaf about once', async () => {
    for (const [salt, claim] of [['huge', () => 2 ** 40], ['tiny', () => 1]] as const) {
      const { root, blocks, leaves } = await sizedLeaves(`pool-claims-${salt}`, 4, 40, () => 3_000, claim)
      const target = new MemoryBlockstore()
      // each read takes a moment, so what each provider was asked can be seen
      const providers = await Promise.all(['a', 'b', 'c'].map(async key => ({ key, store: slowStore(await storeOf(blocks), 2) })))
      let mostAhead = 0
      let sampler: ReturnType<typeof setInterval> | undefined

      const { pool, leaves: sentLeaves, results } = await poolPull(target, root, providers, undefined, watched => {
        sampler = setInterval(() => { mostAhead = Math.max(mostAhead, ...['a', 'b', 'c'].map(key => watched.member(key).outstanding)) }, 1)
      })
      clearInterval(sampler)

      // taken as true, 4 MiB claims would have each provider asked for two
      // leaves at a time; once the first leaves show them wrong, they are not used
      expect(mostAhead, salt).to.be.above(8)
      expect([...results.values()].map(r => r.status), salt).to.deep.equal(['fulfilled', 'fulfilled', 'fulfilled'])
      expect(pool.complete, salt).to.be.true()
      await expectHoldsAll(target, blocks)
      const total = [...sentLeaves.values()].reduce((sum, sent) => sum + sent.length, 0)
      expect(total, salt).to.be.within(leaves.length, Math.ceil(leaves.length * 1.5))
    }
  })

  it('a fast provider steals from a slow one: the slow one sends less than its share', async () => {
    const { root, blocks, leaves } = await tree('pool-steal')
    const target = new MemoryBlockstore()
    const slowShare = leaves.filter(leaf => bucketOf(leaf.cid, DEFAULT_POOL_BUCKETS) >= DEFAULT_POOL_BUCKETS / 2).length

    // the fast one walks the DAG first (it is the leader): the slow one,
    // asked for its leaves meanwhile, must be slow enough to still hold
    // most of them when the fast one is done, even on a loaded machine
    const { pool, leaves: sentLeaves } = await poolPull(target, root, [
      { key: 'fast', store: await storeOf(blocks) },
      { key: 'slow', store: slowStore(await storeOf(blocks), 20) }
    ])

    expect(pool.complete).to.be.true()
    await expectHoldsAll(target, blocks)
    expect(sentLeaves.get('slow')?.length).to.be.below(slowShare / 2)
    expect(pool.planner.bucketsOf('fast').length).to.be.above(DEFAULT_POOL_BUCKETS / 2)
  })

  it('an asked provider is asked only a little ahead of what it sends, and what it was asked stays its own when others take its work', async () => {
    // 512 leaves of 64 KiB: the slow provider's buckets hold about 170 of
    // them, and before any leaf has arrived (a first estimate of 16 KiB) it
    // may be asked for up to 65 at once
    const { root, blocks, leaves } = await wideLeaves('pool-ahead', 16, 32, 64 * 1024)
    const target = new MemoryBlockstore()
    const share = leaves.filter(leaf => bucketOf(leaf.cid, DEFAULT_POOL_BUCKETS) >= DEFAULT_POOL_BUCKETS / 3 && bucketOf(leaf.cid, DEFAULT_POOL_BUCKETS) < DEFAULT_POOL_BUCKETS * 2 / 3).length
    let mostAhead = 0
    let sampler: ReturnType<typeof setInterval> | undefined

    const { pool, leaves: sentLeaves, results } = await poolPull(target, root, [
      { key: 'leader', store: await storeOf(blocks) },
      { key: 'slow', store: slowStore(await storeOf(blocks), 20) },
      { key: 'fast', store: await storeOf(blocks) }
    ], undefined, watched => {
      sampler = setInterval(() => { mostAhead = Math.max(mostAhead, watched.member('slow').outstanding) }, 1)
    })
    clearInterval(sampler)

    expect([...results.values()].map(r => r.status)).to.deep.equal(['fulfilled', 'fulfilled', 'fulfilled'])
    expect(pool.complete).to.be.true()
    await expectHoldsAll(target, blocks)
    // asked all at once, it would hold its whole share; ahead by its rate, well under half of it
    expect(share).to.be.above(140)
    expect(mostAhead).to.be.within(1, share / 2)
    // the others took most of its work, and none of what it was asked: it sent no leaf another sent
    const slow = sentLeaves.get('slow') ?? []
    expect(slow.length).to.be.below(share / 2)
    const others = new Set([...(sentLeaves.get('leader') ?? []), ...(sentLeaves.get('fast') ?? [])].map(cid => cid.toString()))
    expect(slow.filter(cid => others.has(cid.toString()))).to.deep.equal([])
  })

  it('a provider that lacks blocks is dropped and named; the others send its buckets', async () => {
    const { root, blocks, leaves } = await tree('pool-partial')
    const target = new MemoryBlockstore()
    const partial = await storeOf(blocks.filter(block => !leaves.slice(0, 100).includes(block)))

    // the whole providers read slowly: neither can take the partial one's buckets before it finds a block missing
    const { pool, results } = await poolPull(target, root, [
      { key: 'whole-1', store: slowStore(await storeOf(blocks), 2) },
      { key: 'partial', store: partial },
      { key: 'whole-2', store: slowStore(await storeOf(blocks), 2) }
    ])

    expect(pool.complete).to.be.true()
    await expectHoldsAll(target, blocks)
    const partialResult = results.get('partial')
    expect(partialResult?.status).to.equal('rejected')
    expect((partialResult as PromiseRejectedResult).reason.name).to.equal(BlocksNotAvailableError.name)
    const state = pool.providers().find(p => p.provider === 'partial')
    expect(state?.error?.name).to.equal(BlocksNotAvailableError.name)
    expect(state?.buckets).to.deep.equal([])
  })

  it('a leader that lacks an interior block is dropped; the others, asked level by level, send the whole DAG', async () => {
    const { root, blocks } = await tree('pool-leader-lacks')
    const interior = blocks.filter(block => block.cid.code !== raw.code)
    // an interior block below the root: the leader walks into a hole
    const hole = interior[interior.length - 1]
    const target = new MemoryBlockstore()

    const { pool, results, senders, leaves: sentLeaves } = await poolPull(target, root, [
      { key: 'leader', store: await storeOf(blocks.filter(block => block !== hole)) },
      { key: 'b', store: await storeOf(blocks) },
      { key: 'c', store: await storeOf(blocks) }
    ])

    expect(pool.complete).to.be.true()
    await expectHoldsAll(target, blocks)
    expect((results.get('leader') as PromiseRejectedResult).reason.name).to.equal(BlocksNotAvailableError.name)
    expect(results.get('b')?.status).to.equal('fulfilled')
    expect(results.get('c')?.status).to.equal('fulfilled')
    // besides the root's own block each: the hole, asked of its bucket's owner once no one walks
    const fromOthers = ['b', 'c'].reduce((sum, key) => sum + (senders.get(key)?.counters.blocksSent ?? 0) - (sentLeaves.get(key)?.length ?? 0), 0)
    expect(fromOthers).to.be.at.least(3)
  })

  it('a leader that fails while a slow provider still has leaves asked of it: work a fast one takes from it is not lost', async () => {
    // 256 leaves of 16 KiB in 8 groups; the leader lacks the last group's block
    const { root, blocks } = await wideLeaves('pool-leaderless-steal', 8, 32, 16 * 1024)
    const hole = blocks[8]
    const target = new MemoryBlockstore()

    const { pool, results } = await poolPull(target, root, [
      { key: 'leader', store: slowStore(await storeOf(blocks.filter(block => block !== hole)), 5) },
      { key: 'slow', store: slowStore(await storeOf(blocks), 20) },
      { key: 'fast', store: await storeOf(blocks) }
    ])

    expect((results.get('leader') as PromiseRejectedResult).reason.name).to.equal(BlocksNotAvailableError.name)
    expect(results.get('slow')?.status).to.equal('fulfilled')
    expect(results.get('fast')?.status).to.equal('fulfilled')
    expect(pool.complete).to.be.true()
    await expectHoldsAll(target, blocks)
    // with no one walking, a steal narrows the slow one's shard, which withdraws what it was asked outside it
    // (in buckets moved before the leader failed too): those leaves were asked of the fast one instead
    expect(pool.planner.bucketsOf('fast').length).to.be.above(pool.planner.bucketsOf('slow').length)
  })

  it('a provider that sends a forged block is dropped, even when another provider\'s copy came first', async () => {
    const { root, blocks } = await tree('pool-forged-late')
    // the root, which the leader sends and the other sends too (its shallow
    // pull asks for the roots' own blocks): the forger, not the leader, sends
    // other bytes that decode (an empty node, no links) once the honest copy is stored
    const empty = root.code === 0x71 ? Uint8Array.of(0xa0) : new Uint8Array(0)
    const target = new MemoryBlockstore()
    const honestStored = async (): Promise<void> => {
      while (!await target.has(root)) {
        await new Promise(resolve => setTimeout(resolve, 1))
      }
    }

    const { pool, results } = await poolPull(target, root, [
      { key: 'honest', store: await storeOf(blocks) },
      { key: 'forger', store: forgingStore(await storeOf(blocks), root, empty, honestStored) }
    ])

    expect(pool.complete).to.be.true()
    expect((results.get('forger') as PromiseRejectedResult).reason.name).to.equal(HashMismatchError.name)
    expect(pool.providers().find(p => p.provider === 'forger')?.error?.name).to.equal(HashMismatchError.name)
    await expectHoldsAll(target, blocks)
  })

  it('a provider that sends a forged block is dropped; the forged bytes are never stored', async () => {
    const { root, blocks, leaves } = await tree('pool-forged')
    const target = new MemoryBlockstore()
    // a leaf of the first provider's buckets (the lower half): it sends it first-hand
    const victim = leaves.find(leaf => bucketOf(leaf.cid, DEFAULT_POOL_BUCKETS) < DEFAULT_POOL_BUCKETS / 2)
    if (victim == null) {
      throw new Error('no leaf in the forger\'s buckets')
    }

    // the honest provider reads slowly: it cannot finish and take the forger's buckets before the forger sends its leaves
    const { pool, results } = await poolPull(target, root, [
      { key: 'forger', store: forgingStore(await storeOf(blocks), victim.cid) },
      { key: 'honest', store: slowStore(await storeOf(blocks), 2) }
    ])

    expect(pool.complete).to.be.true()
    expect((results.get('forger') as PromiseRejectedResult).reason.name).to.equal(HashMismatchError.name)
    expect(results.get('honest')?.status).to.equal('fulfilled')
    await expectHoldsAll(target, blocks)
    expect(await getBytes(target, victim.cid)).to.equalBytes(victim.bytes)
  })

  it('a provider that does not know shards serves as a plain provider: the pull completes', async () => {
    const { root, blocks } = await tree('pool-plain')
    const target = new MemoryBlockstore()

    const { pool, results } = await poolPull(target, root, [
      { key: 'old', store: await storeOf(blocks), unsharded: true },
      { key: 'new', store: await storeOf(blocks) }
    ])

    expect(pool.complete).to.be.true()
    expect([...results.values()].every(r => r.status === 'fulfilled')).to.be.true()
    await expectHoldsAll(target, blocks)
  })

  it('an idle repeated while the member waits costs the pool nothing: it is answered with nothing, unexamined', async () => {
    const { root, blocks } = await tree('pool-repeat-idle')
    // 2 buckets: a owns 0, b owns 1; the target lacks only b's leaves, so a has nothing to do and nothing to take
    const target = await storeOf(blocks.filter(block => block.cid.code !== raw.code || bucketOf(block.cid, 2) === 0))
    const pool = await PoolReceiver.create({ blockstore: target, roots: [root], providers: ['a', 'b'], buckets: 2 })
    const a = pool.member('a')
    pool.member('b')
    let examined = 0
    const idle = pool.idle.bind(pool)
    pool.idle = (member) => {
      examined++
      return idle(member)
    }
    await a.pullRequest()
    await a.receive({ type: 'header', roots: [root] })

    expect((await a.receive({ type: 'idle', statuses: 1 })).replies).to.deep.equal([])
    expect(a.waiting).to.be.true()
    for (let i = 0; i < 100; i++) {
      expect((await a.receive({ type: 'idle', statuses: 1 })).replies).to.deep.equal([])
    }
    expect(examined).to.equal(1)
    pool.close()
  })

  it('when every provider fails, the pull is incomplete and each is named with its error', async () => {
    const { root, blocks, leaves } = await tree('pool-none')
    const target = new MemoryBlockstore()
    const partial = blocks.filter(block => block !== leaves[0])

    const { pool } = await poolPull(target, root, [
      { key: 'p1', store: await storeOf(partial) },
      { key: 'p2', store: await storeOf(partial) }
    ])

    expect(pool.complete).to.be.false()
    expect(pool.providers().map(p => p.error?.name)).to.deep.equal([BlocksNotAvailableError.name, BlocksNotAvailableError.name])
    expect(await target.has(leaves[0].cid)).to.be.false()
  })
})
