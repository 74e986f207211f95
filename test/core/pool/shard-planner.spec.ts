/**
 * The CAR Pool shard planner, alone and driving a seeded simulation of
 * providers with their own bandwidths, a control latency, and failures.
 */
import { expect } from 'aegir/chai'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { ShardPlanner } from '../../../src/core/pool/shard-planner.ts'
import { Shard, bucketOf } from '../../../src/core/pool/shard.ts'
import { randomBytes, randomSource } from '../../fixtures/random.ts'
import type { BucketBacklog } from '../../../src/core/pool/shard-planner.ts'

interface SimBlock {
  cid: CID
  bytes: number
}

/** A DAG's blocks in the order a provider walks them, with seeded digests and sizes */
function blocksOf (seed: number, count: number): SimBlock[] {
  const random = randomSource(seed)
  return Array.from({ length: count }, () => ({
    cid: CID.createV1(0x55, Digest.create(0x12, randomBytes(random, 32))),
    bytes: 64 * 1024 + Math.floor(random() * 960 * 1024)
  }))
}

interface SimProvider {
  /** Block bytes per ms */
  rate: number
  /** When it stops sending for good (ms), if it fails */
  failsAt?: number
}

interface SimResult {
  /** When the receiver held every block (ms) */
  finishedAt: number
  /** Block bytes received twice */
  duplicateBytes: number
  totalBytes: number
  /** The providers the planner declared failed */
  failed: string[]
}

/**
 * Runs a pull of `blocks` from `providers` with the planner deciding who
 * sends what. A provider sends the blocks of its buckets in DAG order, one
 * at a time at its rate, skipping blocks it knows the receiver holds; what
 * the requestor decides reaches a provider `latency` ms later (with a Bloom
 * of what the receiver held at the decision); a block reaches the receiver
 * `latency` ms after it was sent; a failed provider is noticed `2 * latency`
 * ms after it stops. `steal: false` leaves every bucket where it started.
 */
function simulate (blocks: SimBlock[], providers: Record<string, SimProvider>, latency: number, steal = true): SimResult {
  const keys = Object.keys(providers)
  const planner = new ShardPlanner({ providers: keys })
  const held = new Set<number>()
  const tally = { duplicateBytes: 0 }
  const failed: string[] = []
  // what each provider knows: its buckets, and the blocks it will skip
  const known = new Map(keys.map(key => [key, { buckets: new Set(planner.bucketsOf(key)), skip: new Set<number>(), busyUntil: 0, next: 0, stopped: false }]))
  const events: Array<{ at: number, run(): void }> = []
  const at = (time: number, run: () => void): void => { events.push({ at: time, run }) }
  const moveAll = (moves: ReturnType<ShardPlanner['finished']>, now: number): void => {
    for (const move of moves) {
      const snapshot = new Set(held)
      at(now + latency, () => {
        const from = known.get(move.from)
        const to = known.get(move.to)
        move.buckets.forEach(bucket => { from?.buckets.delete(bucket); to?.buckets.add(bucket) })
        if (to != null) {
          // the new owner walks the DAG again, skipping what the receiver's Bloom says it holds
          to.skip = snapshot
          to.next = 0
          to.stopped = false
          schedule(move.to, Math.max(now + latency, to.busyUntil))
        }
      })
    }
    checkOwnership(planner, keys)
  }
  const schedule = (key: string, now: number): void => {
    const me = known.get(key)
    if (me == null || me.stopped) {
      return
    }
    const provider = providers[key]
    while (me.next < blocks.length) {
      const index = me.next++
      const block = blocks[index]
      if (!me.buckets.has(bucketOf(block.cid, planner.buckets)) || me.skip.has(index)) {
        continue
      }
      const sentAt = now + block.bytes / provider.rate
      if (provider.failsAt != null && sentAt > provider.failsAt) {
        me.stopped = true
        at(provider.failsAt + 2 * latency, () => {
          failed.push(key)
          moveAll(planner.failed(key, provider.failsAt! + 2 * latency), provider.failsAt! + 2 * latency)
        })
        return
      }
      me.busyUntil = sentAt
      at(sentAt + latency, () => {
        if (held.has(index)) {
          tally.duplicateBytes += block.bytes
        } else {
          held.add(index)
          planner.received(key, block.bytes, sentAt + latency)
        }
      })
      at(sentAt, () => { schedule(key, sentAt) })
      return
    }
    // every block of its buckets sent: the requestor hears of it a latency later
    me.stopped = true
    at(now + latency, () => {
      if (steal && planner.running.includes(key)) {
        // as the pool does: how soon a bucket's owner reaches it is where its first missing block lies in DAG order
        const backlog = new Map<number, BucketBacklog>()
        blocks.forEach((block, index) => {
          if (!held.has(index)) {
            const bucket = bucketOf(block.cid, planner.buckets)
            const entry = backlog.get(bucket)
            if (entry == null) {
              backlog.set(bucket, { wants: 1, position: index })
            } else {
              entry.wants++
            }
          }
        })
        moveAll(planner.finished(key, now + latency, undefined, backlog), now + latency)
      }
    })
  }
  keys.forEach(key => { schedule(key, latency) })
  let now = 0
  while (held.size < blocks.length) {
    events.sort((a, b) => a.at - b.at)
    const event = events.shift()
    if (event == null) {
      throw new Error(`stuck at ${now} ms with ${blocks.length - held.size} blocks missing`)
    }
    now = event.at
    event.run()
  }
  return { finishedAt: now, duplicateBytes: tally.duplicateBytes, totalBytes: blocks.reduce((sum, b) => sum + b.bytes, 0), failed }
}

/** Every bucket has exactly one owner */
function checkOwnership (planner: ShardPlanner, keys: string[]): void {
  const owned = keys.flatMap(key => planner.bucketsOf(key)).sort((a, b) => a - b)
  expect(owned).to.deep.equal(Array.from({ length: planner.buckets }, (_, i) => i))
}

const MB_PER_MS = 50_000 / 8 // 50 Mbit/s in bytes per ms
const LATENCY = 25
const SEEDS = Array.from({ length: 40 }, (_, i) => i + 1)

describe('core/pool ShardPlanner', () => {
  it('bucketOf spreads CIDs evenly', () => {
    const counts = new Array(16).fill(0)
    for (const block of blocksOf(9, 4000)) {
      counts[bucketOf(block.cid, 16)]++
    }
    expect(Math.min(...counts)).to.be.above(4000 / 16 * 0.8)
    expect(Math.max(...counts)).to.be.below(4000 / 16 * 1.2)
  })

  it('starts with every bucket owned by exactly one provider, in contiguous ranges as even as can be', () => {
    const planner = new ShardPlanner({ providers: ['a', 'b', 'c'], buckets: 64 })
    checkOwnership(planner, ['a', 'b', 'c'])
    expect(['a', 'b', 'c'].map(key => planner.bucketsOf(key).length)).to.deep.equal([22, 21, 21])
    expect(() => new ShardPlanner({ providers: [] })).to.throw(RangeError)
    expect(() => new ShardPlanner({ providers: ['a'], buckets: 0 })).to.throw(RangeError)
  })

  it('a provider that finishes takes half the buckets of the one expected to finish last', () => {
    const planner = new ShardPlanner({ providers: ['fast', 'slow'], buckets: 8 })
    planner.received('fast', 4000, 0)
    planner.received('fast', 4000, 10)
    planner.received('slow', 1000, 0)
    planner.received('slow', 1000, 10)
    expect(planner.finished('fast', 10)).to.deep.equal([{ from: 'slow', to: 'fast', buckets: [6, 7] }])
    expect(planner.bucketsOf('fast')).to.deep.equal([0, 1, 2, 3, 6, 7])
    checkOwnership(planner, ['fast', 'slow'])
  })

  it('a provider that found nothing to take while still sending runs on: another can take from it later', () => {
    const planner = new ShardPlanner({ providers: ['a', 'b'], buckets: 4 })
    const backlog = (wants: number[]): Map<number, BucketBacklog> => new Map(wants.map((count, bucket) => [bucket, { wants: count, position: bucket }]))
    // a looks for work while b has nothing left to take: a finishes, unless resumed
    expect(planner.finished('a', 10, undefined, backlog([3, 3, 0, 0]))).to.deep.equal([])
    expect(planner.running).to.deep.equal(['b'])
    planner.resumed('a')
    expect(planner.running).to.deep.equal(['a', 'b'])
    // now b, done with its own, can take from a, which is running again
    expect(planner.finished('b', 20, undefined, backlog([3, 3, 0, 0]))).to.deep.equal([{ from: 'a', to: 'b', buckets: [1] }])
    checkOwnership(planner, ['a', 'b'])
  })

  it('shards join: the union owns the buckets of both, of one count only', () => {
    const joined = Shard.of(16, [0, 1, 9]).union(Shard.of(16, [1, 2, 15]))
    expect(joined.buckets()).to.deep.equal([0, 1, 2, 9, 15])
    expect(() => Shard.of(16, [0]).union(Shard.of(8, [0]))).to.throw(RangeError)
  })

  it('a failed provider\'s buckets go to the others, the fastest first; with none left nothing moves', () => {
    const planner = new ShardPlanner({ providers: ['a', 'b', 'c'], buckets: 6 })
    planner.received('a', 100, 0)
    planner.received('a', 100, 10)
    planner.received('c', 900, 0)
    planner.received('c', 900, 10)
    expect(planner.failed('b', 10)).to.deep.equal([{ from: 'b', to: 'c', buckets: [2] }, { from: 'b', to: 'a', buckets: [3] }])
    checkOwnership(planner, ['a', 'b', 'c'])
    planner.failed('a', 20)
    expect(planner.failed('c', 30)).to.deep.equal([])
    expect(planner.running).to.deep.equal([])
  })

  it('a provider that finishes takes the buckets the slowest one would reach last, given its send order', () => {
    const planner = new ShardPlanner({ providers: ['fast', 'slow'], buckets: 8 })
    planner.received('fast', 100, 0)
    planner.received('fast', 100, 10)
    // slow owns 4-7 and will send 6 first, then 4, then 7, then 5
    const order = new Map([[6, 0], [4, 1], [7, 2], [5, 3]])
    expect(planner.finished('fast', 10, bucket => order.get(bucket) ?? Infinity)).to.deep.equal([{ from: 'slow', to: 'fast', buckets: [5, 7] }])
    expect(planner.bucketsOf('slow')).to.deep.equal([4, 6])
  })

  it('with a backlog, a provider that finishes takes from the one with the most time left the buckets it would reach last, up to its share by rate; empty buckets stay', () => {
    const planner = new ShardPlanner({ providers: ['a', 'b', 'c'], buckets: 9 })
    // a owns 0-2, b 3-5, c 6-8; b delivers 1 block per ms, c 2 blocks per ms, a 3
    for (const [key, blocks] of [['a', 30], ['b', 10], ['c', 20]] as const) {
      for (let i = 0; i < blocks; i++) {
        planner.received(key, 100, i * 10 / blocks)
      }
    }
    // b: 12 wants (12 ms at its rate), c: 16 wants (8 ms); bucket 5 is empty
    const backlog = new Map<number, BucketBacklog>([
      [3, { wants: 4, position: 0 }], [4, { wants: 8, position: 10 }],
      [6, { wants: 6, position: 1 }], [7, { wants: 6, position: 2 }], [8, { wants: 4, position: 3 }]
    ])
    // a's share of b's 12 wants at rates 3:1 is 9: bucket 4 (8 wants, reached last) and no more, b keeping its soonest
    expect(planner.finished('a', 10, undefined, backlog)).to.deep.equal([{ from: 'b', to: 'a', buckets: [4] }])
    expect(planner.bucketsOf('b')).to.deep.equal([3, 5])
    checkOwnership(planner, ['a', 'b', 'c'])
  })

  it('with a backlog in bytes, time left and shares are reckoned in bytes over byte rates, not in blocks', () => {
    const planner = new ShardPlanner({ providers: ['a', 'b', 'c'], buckets: 9 })
    // a, b and c each deliver 10 blocks in 10 ms; a and b 100 bytes a block, c 1,000
    for (const [key, bytes] of [['a', 100], ['b', 100], ['c', 1000]] as const) {
      for (let i = 0; i < 10; i++) {
        planner.received(key, bytes, i)
      }
    }
    // in blocks, b has more left (40 wants to c's 30); in bytes b has 4,000
    // (40 ms at 100 bytes per ms) and c 300,000 (300 ms at 1,000)
    const backlog = new Map<number, BucketBacklog>([
      [3, { wants: 20, bytes: 2000, position: 0 }], [4, { wants: 20, bytes: 2000, position: 5 }],
      [6, { wants: 10, bytes: 100_000, position: 1 }], [7, { wants: 10, bytes: 100_000, position: 2 }], [8, { wants: 10, bytes: 100_000, position: 3 }]
    ])
    // a's share of c's 300,000 bytes at rates 100:1,000 is 27,272: bucket 8, reached last
    expect(planner.finished('a', 10, undefined, backlog)).to.deep.equal([{ from: 'c', to: 'a', buckets: [8] }])
    // without bytes, the same wants make b the victim
    const blocksOnly = new Map([...backlog].map(([bucket, { wants, position }]) => [bucket, { wants, position }]))
    expect(planner.finished('a', 10, undefined, blocksOnly)).to.deep.equal([{ from: 'b', to: 'a', buckets: [4] }])
    checkOwnership(planner, ['a', 'b', 'c'])
  })

  it('a provider that finished with nothing left to steal inherits a failed one\'s buckets and runs again', () => {
    const planner = new ShardPlanner({ providers: ['a', 'b'], buckets: 2 })
    // b holds one bucket: nothing to take from it
    expect(planner.finished('a', 0)).to.deep.equal([])
    expect(planner.running).to.deep.equal(['b'])
    expect(planner.failed('b', 10)).to.deep.equal([{ from: 'b', to: 'a', buckets: [1] }])
    expect(planner.running).to.deep.equal(['a'])
    expect(planner.bucketsOf('a')).to.deep.equal([0, 1])
  })

  describe(`seeded simulation: ${SEEDS.length} DAGs of 200 blocks (64 KiB-1 MiB), 50 Mbit/s links, 25 ms one way`, () => {
    /** The median and the worst (lowest for `low`, highest otherwise) of `values` */
    function spread (values: number[], low: boolean): { median: number, worst: number } {
      const sorted = [...values].sort((a, b) => a - b)
      return { median: sorted[Math.floor(sorted.length / 2)], worst: low ? sorted[0] : sorted[sorted.length - 1] }
    }
    const equal = (n: number): Record<string, SimProvider> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, { rate: MB_PER_MS }]))

    it('2 and 3 equal providers: a median of at least 1.8x and 2.6x one provider\'s throughput (worst 1.8x, 2.4x), duplicates a median under 5% (worst 15%: a steal late in the run re-sends what is in flight)', () => {
      const speedup2: number[] = []
      const speedup3: number[] = []
      const duplicates: number[] = []
      for (const seed of SEEDS) {
        const blocks = blocksOf(seed, 200)
        const one = simulate(blocks, equal(1), LATENCY)
        const two = simulate(blocks, equal(2), LATENCY)
        const three = simulate(blocks, equal(3), LATENCY)
        speedup2.push(one.finishedAt / two.finishedAt)
        speedup3.push(one.finishedAt / three.finishedAt)
        duplicates.push(two.duplicateBytes / two.totalBytes, three.duplicateBytes / three.totalBytes)
      }
      expect(spread(speedup2, true).median).to.be.at.least(1.8)
      expect(spread(speedup2, true).worst).to.be.at.least(1.8)
      expect(spread(speedup3, true).median).to.be.at.least(2.6)
      expect(spread(speedup3, true).worst).to.be.at.least(2.4)
      expect(spread(duplicates, false).median).to.be.below(0.05)
      expect(spread(duplicates, false).worst).to.be.below(0.15)
    })

    it('unequal links (1, 1/2, 1/4): stealing finishes a median within 1.2x of the combined bandwidth\'s time (worst 1.4x); fixed shards take at least 1.5x longer', () => {
      const overIdeal: number[] = []
      const gain: number[] = []
      for (const seed of SEEDS) {
        const blocks = blocksOf(seed, 200)
        const links = { a: { rate: MB_PER_MS }, b: { rate: MB_PER_MS / 2 }, c: { rate: MB_PER_MS / 4 } }
        const stealing = simulate(blocks, links, LATENCY)
        const fixed = simulate(blocks, links, LATENCY, false)
        overIdeal.push(stealing.finishedAt / (stealing.totalBytes / (MB_PER_MS * 1.75)))
        gain.push(fixed.finishedAt / stealing.finishedAt)
      }
      expect(spread(overIdeal, false).median).to.be.below(1.2)
      expect(spread(overIdeal, false).worst).to.be.below(1.4)
      expect(spread(gain, true).worst).to.be.at.least(1.5)
    })

    it('a provider that dies at half its share: every block arrives from the other two, extra bytes a median under 5% (worst 8%), in under 1.8x the healthy time', () => {
      const extra: number[] = []
      const slower: number[] = []
      for (const seed of SEEDS) {
        const blocks = blocksOf(seed, 200)
        const healthy = simulate(blocks, equal(3), LATENCY)
        const share = healthy.totalBytes / 3
        const dying = simulate(blocks, { ...equal(3), p1: { rate: MB_PER_MS, failsAt: LATENCY + share / 2 / MB_PER_MS } }, LATENCY)
        expect(dying.failed, `seed ${seed}`).to.deep.equal(['p1'])
        extra.push(dying.duplicateBytes / dying.totalBytes)
        slower.push(dying.finishedAt / healthy.finishedAt)
      }
      expect(spread(extra, false).median).to.be.below(0.05)
      expect(spread(extra, false).worst).to.be.below(0.08)
      expect(spread(slower, false).worst).to.be.below(1.8)
    })
  })
})
