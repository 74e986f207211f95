/**
 * @packageDocumentation
 *
 * The requestor's side of CAR Pool (one DAG from several providers at once),
 * without any transport: which provider sends which blocks, and how the work
 * moves when one is slow or fails.
 *
 * The block space is cut into `buckets` by the first four bytes of each
 * block's multihash digest (uniform for a cryptographic hash). Each provider
 * is assigned a set of buckets and sends the blocks of its buckets (one of
 * them also sends the interior blocks the receiver needs to follow the DAG).
 * The planner tracks each provider's rate; when a provider finishes its
 * buckets, it takes part of what the provider expected to finish last has
 * left (work stealing: by the requestor's backlog of wanted blocks when it
 * is given, else half of that provider's buckets); when a provider fails,
 * its buckets go to the others. Buckets
 * only ever move to a provider that is still running, and every bucket is
 * always assigned to exactly one provider, so the union of what the
 * providers are asked for is the whole DAG.
 *
 * This module is the planning logic only: `Shard` (./shard.ts) carries a
 * provider's buckets on the wire and `PoolReceiver` (./pool-receiver.ts)
 * runs the sessions that follow the plan.
 */

import { bucketOf } from './shard.ts'
import type { CID } from 'multiformats/cid'

/** Options of a {@link ShardPlanner} */
export interface ShardPlannerInit {
  /**
   * Buckets the block space is cut into; more buckets let work move in
   * smaller pieces
   *
   * @default 256 (DEFAULT_POOL_BUCKETS)
   */
  buckets?: number
  /** The providers, by a key of the caller's choosing (e.g. a peer id string) */
  providers: string[]
}

/** Buckets that moved from one provider to another */
export interface BucketMove {
  /** The provider that gives them up (it should stop sending them) */
  from: string
  /** The provider that takes them (it should start sending them) */
  to: string
  /** The buckets that moved */
  buckets: number[]
}

/** What is left to receive of one bucket, as the requestor sees it */
export interface BucketBacklog {
  /** Blocks of the bucket the requestor still wants from its owner */
  wants: number
  /**
   * Their bytes, as far as the requestor can tell (e.g. from the sizes its
   * parents give them). When every entry has them, time is reckoned in bytes
   * over byte rates, else in blocks over block rates
   */
  bytes?: number
  /** How soon its owner reaches the bucket: the position of its first want in DAG order (lower: sooner) */
  position: number
}

/** Buckets a pool cuts the block space into unless told otherwise */
export const DEFAULT_POOL_BUCKETS = 256

interface ProviderState {
  buckets: Set<number>
  /** Block bytes received from it */
  bytes: number
  /** Verified blocks received from it */
  blocks: number
  /** When its first block arrived, and its latest */
  firstAt?: number
  lastAt?: number
  state: 'running' | 'finished' | 'failed'
}

/**
 * Plans which provider sends which buckets of a DAG, and moves buckets when
 * a provider finishes early or fails
 *
 * @example
 *
 * ```ts
 * const planner = new ShardPlanner({ providers: ['a', 'b', 'c'] })
 * planner.bucketsOf('a') // about a third of 0..63
 * planner.received('a', cid, bytes, Date.now())
 * const moves = planner.finished('a', Date.now()) // a takes half of the slowest one's buckets
 * ```
 */
export class ShardPlanner {
  /** How many buckets the block space is cut into */
  readonly buckets: number
  private readonly providers = new Map<string, ProviderState>()

  constructor (init: ShardPlannerInit) {
    this.buckets = init.buckets ?? DEFAULT_POOL_BUCKETS
    if (!Number.isInteger(this.buckets) || this.buckets < 1) {
      throw new RangeError(`buckets must be a positive integer, got ${this.buckets}`)
    }
    const keys = [...new Set(init.providers)]
    if (keys.length === 0) {
      throw new RangeError('a pool needs at least one provider')
    }
    for (const key of keys) {
      this.providers.set(key, { buckets: new Set(), bytes: 0, blocks: 0, state: 'running' })
    }
    // contiguous ranges, as even as the count allows
    for (let bucket = 0; bucket < this.buckets; bucket++) {
      const owner = keys[Math.floor(bucket * keys.length / this.buckets)]
      this.state(owner).buckets.add(bucket)
    }
  }

  /** The buckets `provider` is asked to send now */
  bucketsOf (provider: string): number[] {
    return [...this.state(provider).buckets].sort((a, b) => a - b)
  }

  /** The provider asked for `cid`'s bucket now */
  ownerOf (cid: CID): string {
    const bucket = bucketOf(cid, this.buckets)
    for (const [key, provider] of this.providers) {
      if (provider.buckets.has(bucket)) {
        return key
      }
    }
    // unreachable: every bucket always has one owner
    throw new Error(`bucket ${bucket} has no provider`)
  }

  /** Providers still sending */
  get running (): string[] {
    return [...this.providers].filter(([, p]) => p.state === 'running').map(([key]) => key)
  }

  /** Counts a verified block from `provider` towards its rate */
  received (provider: string, bytes: number, now: number): void {
    const state = this.state(provider)
    state.bytes += bytes
    state.blocks++
    state.firstAt ??= now
    state.lastAt = now
  }

  /**
   * `provider` has sent every block of its buckets. It takes half of the
   * buckets of the running provider expected to finish last, if that one
   * has more than one; returns the move (none when there is nothing to take).
   *
   * `sendOrder` says how soon the victim will send a block of a bucket
   * (lower: sooner; default the bucket's number): the stealer takes the
   * buckets the victim would reach last, so that what the victim has in
   * flight stays its own and does not arrive twice.
   *
   * With `backlog` (the requestor's wanted blocks per bucket), the victim is
   * the provider with the most time left by its backlog and rate, and the
   * stealer takes the buckets it would reach last until they hold its
   * share of that backlog (see takeBacklog)
   */
  finished (provider: string, now: number, sendOrder: (bucket: number) => number = bucket => bucket, backlog?: Map<number, BucketBacklog>): BucketMove[] {
    const state = this.state(provider)
    state.state = 'finished'
    const moves = backlog == null ? this.takeHalf(provider, now, sendOrder) : this.takeBacklog(provider, now, backlog)
    if (moves.length > 0) {
      // it is sending again
      state.state = 'running'
    }
    return moves
  }

  /**
   * `provider` took no work in {@link finished} but is still sending what it
   * was asked: it runs on (others may take from it again)
   */
  resumed (provider: string): void {
    const state = this.state(provider)
    if (state.state === 'finished') {
      state.state = 'running'
    }
  }

  /** Without a backlog: half of the buckets of the provider with the most buckets per unit of rate */
  private takeHalf (provider: string, now: number, sendOrder: (bucket: number) => number): BucketMove[] {
    const victim = this.slowest(now)
    if (victim == null) {
      return []
    }
    const from = this.state(victim)
    if (from.buckets.size < 2) {
      return []
    }
    const taken = [...from.buckets].sort((a, b) => sendOrder(a) - sendOrder(b) || a - b).slice(Math.ceil(from.buckets.size / 2))
    return this.move(victim, provider, taken)
  }

  /**
   * With a backlog: the victim is the running provider with the most time
   * left (its wanted blocks over its block rate). The stealer takes the
   * buckets the victim would reach last, until they hold the stealer's
   * share of the victim's wanted blocks (by the two block rates; half when
   * a rate is unknown). The victim keeps its soonest bucket with wants, so
   * what it has in flight stays its own and does not arrive twice, and
   * buckets with nothing wanted stay where they are
   */
  private takeBacklog (thief: string, now: number, backlog: Map<number, BucketBacklog>): BucketMove[] {
    const victim = this.victimOf(thief, now, backlog)
    if (victim == null) {
      return []
    }
    const latestFirst = [...this.state(victim).buckets]
      .filter(bucket => (backlog.get(bucket)?.wants ?? 0) > 0)
      .sort((a, b) => (backlog.get(b)?.position ?? 0) - (backlog.get(a)?.position ?? 0) || b - a)
    const weigh = weigher(backlog)
    const total = latestFirst.reduce((sum, bucket) => sum + weigh(bucket), 0)
    const thiefRate = this.rateIn(backlog, thief, now)
    const victimRate = this.rateIn(backlog, victim, now)
    const share = thiefRate > 0 && victimRate > 0 ? thiefRate / (thiefRate + victimRate) : 0.5
    const target = Math.max(1, Math.floor(total * share))
    const taken: number[] = []
    let work = 0
    for (const bucket of latestFirst.slice(0, -1)) {
      if (work >= target) {
        break
      }
      taken.push(bucket)
      work += weigh(bucket)
    }
    return this.move(victim, thief, taken)
  }

  /** The running provider other than `thief` with the most time left by `backlog` */
  private victimOf (thief: string, now: number, backlog: Map<number, BucketBacklog>): string | undefined {
    let victim: string | undefined
    let longest = 0
    for (const key of this.running) {
      const time = this.timeLeft(key, now, backlog)
      if (key !== thief && time > longest) {
        victim = key
        longest = time
      }
    }
    return victim
  }

  private move (from: string, to: string, buckets: number[]): BucketMove[] {
    if (buckets.length === 0) {
      return []
    }
    const sorted = [...buckets].sort((a, b) => a - b)
    for (const bucket of sorted) {
      this.state(from).buckets.delete(bucket)
      this.state(to).buckets.add(bucket)
    }
    return [{ from, to, buckets: sorted }]
  }

  /** Ms `provider` needs for the wanted blocks of its buckets at its rate (0 with none; the most of all before its first block) */
  private timeLeft (provider: string, now: number, backlog: Map<number, BucketBacklog>): number {
    const weigh = weigher(backlog)
    let work = 0
    for (const bucket of this.state(provider).buckets) {
      work += weigh(bucket)
    }
    if (work === 0) {
      return 0
    }
    const rate = this.rateIn(backlog, provider, now)
    return rate > 0 ? work / rate : Number.MAX_SAFE_INTEGER * (work / (work + 1))
  }

  /** `provider`'s rate in the unit of `backlog`: bytes per ms when it weighs buckets in bytes, else blocks per ms */
  private rateIn (backlog: Map<number, BucketBacklog>, provider: string, now: number): number {
    return inBytes(backlog) ? this.rate(provider, now) : this.blocksPerMs(provider, now)
  }

  /** Verified blocks per ms `provider` has delivered so far (0 before it has delivered over some time) */
  private blocksPerMs (provider: string, now: number): number {
    const state = this.state(provider)
    if (state.firstAt == null) {
      return 0
    }
    const elapsed = Math.max(now, state.lastAt ?? now) - state.firstAt
    return elapsed > 0 ? state.blocks / elapsed : 0
  }

  /**
   * `provider` failed (reset, stalled, or sent a forged or out-of-DAG
   * block): its buckets go to the providers that have not failed (running,
   * or finished and waiting for work, which then run again), the fastest
   * first. Returns the moves; none when every provider failed, in which case
   * the caller fails the pull
   */
  failed (provider: string, now: number): BucketMove[] {
    const state = this.state(provider)
    state.state = 'failed'
    const heirs = [...this.providers].filter(([, p]) => p.state !== 'failed').map(([key]) => key).sort((a, b) => this.rate(b, now) - this.rate(a, now))
    if (heirs.length === 0) {
      return []
    }
    const orphans = [...state.buckets].sort((a, b) => a - b)
    state.buckets.clear()
    const moves = new Map<string, number[]>()
    orphans.forEach((bucket, i) => {
      const heir = heirs[i % heirs.length]
      this.state(heir).buckets.add(bucket)
      this.state(heir).state = 'running'
      moves.set(heir, [...(moves.get(heir) ?? []), bucket])
    })
    return [...moves].map(([to, buckets]) => ({ from: provider, to, buckets }))
  }

  /** Block bytes per ms `provider` has delivered so far (0 before two blocks) */
  rate (provider: string, now: number): number {
    const state = this.state(provider)
    if (state.firstAt == null) {
      return 0
    }
    const elapsed = Math.max(now, state.lastAt ?? now) - state.firstAt
    return elapsed > 0 ? state.bytes / elapsed : 0
  }

  /** The running provider with the most buckets per unit of rate: the one expected to finish last */
  private slowest (now: number): string | undefined {
    let worst: string | undefined
    let worstLoad = -1
    for (const key of this.running) {
      const buckets = this.state(key).buckets.size
      const rate = this.rate(key, now)
      // a provider that has sent nothing yet is the slowest of all
      const load = rate > 0 ? buckets / rate : buckets * Number.MAX_SAFE_INTEGER
      if (load > worstLoad) {
        worst = key
        worstLoad = load
      }
    }
    return worst
  }

  private state (provider: string): ProviderState {
    const state = this.providers.get(provider)
    if (state == null) {
      throw new RangeError(`${provider} is not a provider of this pool`)
    }
    return state
  }
}

/** True when every bucket of `backlog` says its bytes */
function inBytes (backlog: Map<number, BucketBacklog>): boolean {
  for (const entry of backlog.values()) {
    if (entry.bytes == null) {
      return false
    }
  }
  return backlog.size > 0
}

/** What a bucket of `backlog` weighs: its bytes when every bucket says them, else its wanted blocks */
function weigher (backlog: Map<number, BucketBacklog>): (bucket: number) => number {
  const bytes = inBytes(backlog)
  return bucket => {
    const entry = backlog.get(bucket)
    return entry == null ? 0 : bytes ? entry.bytes ?? 0 : entry.wants
  }
}
