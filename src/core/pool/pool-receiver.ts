/**
 * @packageDocumentation
 *
 * The receiving side of a CAR Pool pull, free of any transport: one DAG from
 * several providers at once, one session per provider over one shared
 * frontier.
 *
 * Each provider is sent a `pull` with its shard (PROTOCOL.md §4.1, §6.8).
 * The first provider, the leader, walks the DAG: it sends every block that
 * is not a raw leaf, and the raw leaves of its buckets. The others get a
 * shallow pull (`dl: 0`) and are asked for the raw leaves of their buckets
 * as the leader's blocks reveal them (at most every 20 ms, while they still
 * send), so their links carry leaves from the start and only one provider
 * sends the interior blocks. Blocks are verified and written once,
 * whichever provider's copy comes first; the others' copies are duplicates
 * (the roots' own blocks, and what was in flight when work moved).
 *
 * When a provider goes idle, it is asked for the wants of its buckets (the
 * stragglers of Bloom false positives); with none left, it takes part of
 * the backlog of the provider expected to finish last (work stealing): that
 * one is sent a status narrowing its shard, and the stealer is asked for
 * the wants of the buckets it took. A provider that fails (a reset, a
 * stall, a forged or unrequested block, a block it lacks) loses its
 * buckets to the others; when the leader fails, the others are asked for
 * every want of their buckets, a DAG level a round.
 * The pull is complete when the shared frontier is.
 */

import * as raw from 'multiformats/codecs/raw'
import { BlocksNotAvailableError } from '../../errors.ts'
import { cidKey } from '../cid-key.ts'
import { ReceiverFrontier } from '../frontier.ts'
import { ReceiverSession } from '../receiver.ts'
import { BlockVerifier } from '../verify.ts'
import { ShardPlanner } from './shard-planner.ts'
import { Shard, bucketOf } from './shard.ts'
import type { BucketBacklog } from './shard-planner.ts'
import type { ReceiveOutcome } from '../frontier.ts'
import type { Message, PullMessage } from '../messages.ts'
import type { ReceiverSessionInit } from '../receiver.ts'
import type { CID } from 'multiformats/cid'

/** Least time between two feeds of new leaves to the members that do not walk the DAG */
const FEED_INTERVAL_MS = 20

/**
 * A verifier that remembers the bytes it verified last for each CID, so a
 * block a pool member verified before its turn at the shared frontier is
 * not hashed again there: hashing a large leaf inside the turn held up
 * every other provider's blocks, the leader's interior blocks included
 */
class VerifiedOnce extends BlockVerifier {
  private readonly inner: BlockVerifier
  private readonly verified = new WeakMap<Uint8Array, string>()

  constructor (inner: BlockVerifier) {
    super()
    this.inner = inner
  }

  override async verify (cid: CID, bytes: Uint8Array): Promise<void> {
    const key = cidKey(cid)
    if (this.verified.get(bytes) === key) {
      return
    }
    await this.inner.verify(cid, bytes)
    this.verified.set(bytes, key)
  }
}

/** Where a {@link PoolReceiver} stores blocks, who provides them, and its limits */
export interface PoolReceiverInit extends ReceiverSessionInit {
  /** The providers, by a key of the caller's choosing (e.g. a peer id string); at least one */
  providers: string[]
  /**
   * Buckets the block space is cut into
   *
   * @default 256 (DEFAULT_POOL_BUCKETS)
   */
  buckets?: number
  /** The clock of the providers' rates; default Date.now */
  now?(): number
}

/** What one provider of a pool did */
export interface PoolProviderState {
  /** The provider's key */
  provider: string
  /** The buckets it owns now (a failed provider owns none) */
  buckets: number[]
  /** Why it was dropped, if it was */
  error?: Error
}

/**
 * The receiver of a CAR Pool pull: a shared frontier, a shard plan, and a
 * {@link PoolMember} session per provider
 *
 * @example
 *
 * ```ts
 * const pool = await PoolReceiver.create({ blockstore, roots: [root], providers: ['a', 'b'] })
 * await Promise.allSettled(['a', 'b'].map(async key => {
 *   const member = pool.member(key)
 *   try {
 *     await runReceiver(streamTo(key), member, { first: [await member.pullRequest()] })
 *   } catch (err) {
 *     pool.fail(key, err)
 *   }
 * }))
 * pool.complete // true when every block arrived from one provider or another
 * ```
 */
export class PoolReceiver {
  /** Which provider sends which buckets */
  readonly planner: ShardPlanner
  /** What the pull holds and wants, shared by every member */
  readonly frontier: ReceiverFrontier
  private readonly init: PoolReceiverInit
  private readonly members = new Map<string, PoolMember>()
  private readonly failures = new Map<string, Error>()
  /** Frontier updates run one at a time, whichever member's block it is */
  private turn: Promise<unknown> = Promise.resolve()
  /** The provider that walks the DAG and sends its interior blocks; undefined once it failed */
  private leader?: string
  /** When the other members were last given the leaves found since */
  private lastFeed = -Infinity
  /** Wants found since the last feed, in the order found */
  private readonly fresh: CID[]

  private constructor (init: PoolReceiverInit, frontier: ReceiverFrontier, fresh: CID[]) {
    this.init = init
    this.frontier = frontier
    this.fresh = fresh
    this.planner = new ShardPlanner({ providers: init.providers, buckets: init.buckets })
    this.leader = init.providers[0]
  }

  /** Builds the shared frontier from what the blockstore holds under the roots */
  static async create (init: PoolReceiverInit, options: { signal?: AbortSignal } = {}): Promise<PoolReceiver> {
    // members verify blocks before their turn at the frontier, which then need not hash them again
    const fresh: CID[] = []
    const pooled = { ...init, verifier: new VerifiedOnce(init.verifier ?? new BlockVerifier()) }
    const frontier = await ReceiverFrontier.create(init.roots, { ...pooled, onWant: (cid: CID) => { fresh.push(cid) } }, { ...options, offline: true })
    // wants the store's walk found are in every member's pull
    fresh.length = 0
    return new PoolReceiver(pooled, frontier, fresh)
  }

  /** True when every block under the roots is held */
  get complete (): boolean {
    return this.frontier.complete
  }

  /** The session of `provider` (one per provider, made on first use) */
  member (provider: string): PoolMember {
    let member = this.members.get(provider)
    if (member == null) {
      this.planner.bucketsOf(provider) // throws for a provider outside the pool
      // the others ask for single blocks: the leader's interior blocks show which
      member = new PoolMember(provider === this.leader ? this.init : { ...this.init, shallow: true }, this.frontier, this, provider)
      this.members.set(provider, member)
    }
    return member
  }

  /** The providers, with the buckets each owns now and why any was dropped */
  providers (): PoolProviderState[] {
    return this.init.providers.filter((key, i, all) => all.indexOf(key) === i).map(provider => ({
      provider,
      buckets: this.planner.bucketsOf(provider),
      ...(this.failures.has(provider) ? { error: this.failures.get(provider) } : {})
    }))
  }

  /** The shard `provider` owns now */
  shardOf (provider: string): Shard {
    return Shard.of(this.planner.buckets, this.planner.bucketsOf(provider))
  }

  /**
   * Drops `provider` (its session failed, or it was never reached): its
   * buckets go to the others, and those waiting for work are asked for it
   */
  fail (provider: string, err: Error): void {
    if (this.failures.has(provider)) {
      return
    }
    this.failures.set(provider, err)
    this.members.get(provider)?.markFailed()
    this.planner.failed(provider, this.now())
    if (provider === this.leader) {
      // no one walks the DAG now: each member is asked for every want of its buckets, a level a round
      this.leader = undefined
    }
    // between frontier updates: the wants are then the whole story
    void this.exclusive(async () => {
      this.dispatch()
      this.feed()
    })
  }

  /** Gives back what the pull holds of node-wide budgets; call once when it ends */
  close (): void {
    this.frontier.release()
  }

  /** Runs `update` once the frontier updates before it are over */
  async exclusive<T> (update: () => Promise<T>): Promise<T> {
    const result = this.turn.then(update)
    this.turn = result.catch(() => {})
    return result
  }

  /** Counts a stored block towards its provider's rate; wakes every member once the pull is complete */
  stored (provider: string, bytes: number): void {
    const now = this.now()
    this.planner.received(provider, bytes, now)
    if (this.complete) {
      for (const member of this.members.values()) {
        member.news.notify()
      }
      return
    }
    if (now - this.lastFeed >= FEED_INTERVAL_MS) {
      this.lastFeed = now
      void this.exclusive(async () => { this.feed() })
    }
  }

  /** True when `provider` walks the DAG (the leader) rather than asking for single blocks */
  walks (provider: string): boolean {
    return provider === this.leader
  }

  /**
   * Gives each member other than the leader the wants of its buckets found
   * since it was last asked (the leaves below the leader's interior
   * blocks), while it still sends: its link need not wait for it to go idle
   */
  private feed (): void {
    if (this.complete) {
      this.fresh.length = 0
      return
    }
    const max = this.init.maxCidsPerMessage ?? Infinity
    const batches = new Map<PoolMember, CID[]>()
    let taken = 0
    for (; taken < this.fresh.length; taken++) {
      const want = this.fresh[taken]
      if ((this.leader != null && want.code !== raw.code) || !this.frontier.isWanted(want)) {
        continue
      }
      const member = this.members.get(this.planner.ownerOf(want))
      if (member == null || member.failed || this.walks(member.provider) || member.wasAsked(want)) {
        continue
      }
      const batch = batches.get(member) ?? []
      if (batch.length >= max) {
        // one status's worth each time: the rest at the next feed
        break
      }
      batch.push(want)
      batches.set(member, batch)
    }
    this.fresh.splice(0, taken)
    for (const [member, wants] of batches) {
      member.topUp(wants)
    }
  }

  /**
   * `member`'s sender has sent all it was asked for: the wants of its
   * buckets, or (with none) of the buckets it steals; none means it waits
   * until a failure or another member's blocks give it work
   */
  idle (member: PoolMember): Message[] {
    let wants = this.wantsOf(member.provider)
    if (wants.length === 0) {
      // steal the part of the backlog of the one expected to finish last that it would reach last
      const moves = this.planner.finished(member.provider, this.now(), undefined, this.backlog())
      for (const move of moves) {
        this.members.get(move.from)?.narrow(this.shardOf(move.from))
      }
      wants = this.wantsOf(member.provider)
    }
    // the others that wait may own wants found since they went idle
    member.waiting = wants.length === 0
    this.dispatch()
    return wants.length > 0 ? [member.round(wants)] : []
  }

  /**
   * The raw wants of each bucket, and the position of its first one in the
   * frontier's order, which is the order providers walk the DAG in and
   * send their leaves (how soon its owner will send it). Raw leaves are
   * what a shard divides; buckets without one are absent
   */
  private backlog (): Map<number, BucketBacklog> {
    const backlog = new Map<number, BucketBacklog>()
    let position = 0
    for (const want of this.frontier.wants()) {
      if (want.code === raw.code) {
        const bucket = bucketOf(want, this.planner.buckets)
        const entry = backlog.get(bucket)
        if (entry == null) {
          backlog.set(bucket, { wants: 1, position })
        } else {
          entry.wants++
        }
      }
      position++
    }
    return backlog
  }

  /** Asks each waiting member for the wants its buckets hold now */
  private dispatch (): void {
    for (const member of this.members.values()) {
      if (!member.waiting || member.failed) {
        continue
      }
      const wants = this.wantsOf(member.provider)
      if (wants.length > 0) {
        member.waiting = false
        member.askUnprompted(wants)
      }
    }
  }

  /**
   * The wants whose buckets `provider` owns, at most one status's worth;
   * only raw leaves while a leader walks the DAG and `provider` is not it
   * (the leader sends the other blocks)
   */
  private wantsOf (provider: string): CID[] {
    if (this.failures.has(provider)) {
      return []
    }
    const leavesOnly = this.leader != null && !this.walks(provider)
    const max = this.init.maxCidsPerMessage ?? Infinity
    const wants: CID[] = []
    for (const want of this.frontier.wants()) {
      if (wants.length >= max) {
        break
      }
      if (leavesOnly && want.code !== raw.code) {
        continue
      }
      if (this.planner.ownerOf(want) === provider) {
        wants.push(want)
      }
    }
    return wants
  }

  private now (): number {
    return this.init.now?.() ?? Date.now()
  }
}

/**
 * One provider's session of a {@link PoolReceiver}: a receiver session over
 * the pool's shared frontier whose pull names the provider's shard, and
 * whose idles the pool answers
 */
export class PoolMember extends ReceiverSession {
  /** The provider's key in the pool */
  readonly provider: string
  /** True while its sender is idle and the pool has nothing for it */
  waiting = false
  private readonly pool: PoolReceiver
  private readonly verifier: BlockVerifier
  private dropped = false
  private error?: Error
  /** The status count of the last idle the pool answered */
  private idleAnswered = -1
  /** The wants asked of it so far (a member that does not walk the DAG is fed new ones only) */
  private readonly asked = new Set<string>()

  /** Made by {@link PoolReceiver.member} */
  constructor (init: ReceiverSessionInit, frontier: ReceiverFrontier, pool: PoolReceiver, provider: string) {
    super(init, frontier)
    this.pool = pool
    this.provider = provider
    this.verifier = init.verifier ?? new BlockVerifier()
  }

  /** True once the pool dropped the provider */
  get failed (): boolean {
    return this.dropped
  }

  override get speaksUnprompted (): boolean {
    return true
  }

  /**
   * The messages to send that the sender did not prompt
   *
   * @throws {Error} the error that ended the member from outside its own session (e.g. rounds used up while the pool dispatched)
   */
  override takeUnprompted (): Message[] {
    if (this.error != null) {
      throw this.error
    }
    return super.takeUnprompted()
  }

  /**
   * The pull request, with the provider's shard. Wants are sent whatever
   * their bucket (S-15), so a raw leaf is asked of its bucket's owner only;
   * other wants go to every provider, which sends what lies below them in
   * its shard. (Left with no wants, a provider walks from the roots, which
   * the Bloom covers, and goes idle.)
   */
  override async pullRequest (options: { signal?: AbortSignal } = {}): Promise<PullMessage> {
    const request = await super.pullRequest(options)
    const shard = this.pool.shardOf(this.provider)
    let wants = request.wants.filter(want => shard.sends(want))
    if (request.depthLimit === 0) {
      // a member that does not walk: the raw leaves of its buckets known so far, else the roots' own blocks
      wants = wants.filter(want => want.code === raw.code)
    }
    this.noteAsked(wants)
    return { ...request, wants, shard }
  }

  /** True when `cid` was asked of this provider */
  wasAsked (cid: CID): boolean {
    return this.asked.has(cidKey(cid))
  }

  private noteAsked (wants: CID[]): void {
    for (const want of wants) {
      this.asked.add(cidKey(want))
    }
  }

  /**
   * Asks for `wants` (none asked before) while the sender may still be
   * sending: they join the wants its next idle must have answered
   */
  topUp (wants: CID[]): void {
    if (this.dropped || wants.length === 0) {
      return
    }
    this.noteAsked(wants)
    this.lastAsked.push(...wants)
    this.counters.statusesSent++
    this.waiting = false
    this.unprompted.push({ type: 'status', wants, shard: this.pool.shardOf(this.provider) })
    this.news.notify()
  }

  /** The pool dropped this provider */
  markFailed (): void {
    this.dropped = true
    this.waiting = false
  }

  /** A round asking for `wants`, answering an idle; it carries the provider's shard now (which stealing or a failure may have widened) */
  round (wants: CID[]): Message {
    this.noteAsked(wants)
    if (!this.pool.walks(this.provider)) {
      // asking for single blocks as the leader's interior blocks show them
      // is how this member works, not a straggler round: each round needs
      // the last one answered, so their count is bounded by the DAG's size
      this.checkAnswered()
      return { ...this.statusAsking(wants), shard: this.pool.shardOf(this.provider) }
    }
    return { ...this.stragglerRound(wants), shard: this.pool.shardOf(this.provider) }
  }

  /** Asks for `wants` while the sender waits */
  askUnprompted (wants: CID[]): void {
    try {
      this.unprompted.push(this.round(wants))
    } catch (err) {
      this.error = err as Error
    }
    this.news.notify()
  }

  /** The provider gave up buckets: its sender leaves their raw leaves out from now on */
  narrow (shard: Shard): void {
    if (this.dropped) {
      return
    }
    // the raw wants of the buckets it gave up are withdrawn: it will not send them
    this.lastAsked = this.lastAsked.filter(want => shard.sends(want))

    this.counters.statusesSent++
    this.unprompted.push({ type: 'status', wants: [], shard })
    this.news.notify()
  }

  /**
   * Stores the block through the pool. A duplicate is verified too: another
   * provider's copy came first, but a provider that forges a block must be
   * dropped whichever copy wins (duplicates are few: interior blocks and
   * what was in flight when work moved)
   */
  protected override async storeBlock (cid: CID, bytes: Uint8Array, options: { signal?: AbortSignal }): Promise<ReceiveOutcome> {
    if (this.frontier.isWanted(cid) || this.frontier.holds(cid)) {
      // before the turn: the others' blocks need not wait for this hash (the frontier does not hash it again)
      await this.verifier.verify(cid, bytes)
    }
    const outcome = await this.pool.exclusive(async () => super.storeBlock(cid, bytes, options))
    if (outcome === 'stored') {
      this.pool.stored(this.provider, bytes.byteLength)
    } else if (outcome === 'duplicate') {
      // a block that turned from wanted to held while it waited: verified above, or now
      await this.verifier.verify(cid, bytes)
    }
    return outcome
  }

  /** A provider that lacks blocks is dropped: another one may hold them */
  protected override onMissing (cids: CID[]): void {
    throw new BlocksNotAvailableError(`The provider does not hold ${cids.length} block(s), including ${cids[0]}`, cids)
  }

  /** An idle is answered by the pool: the wants of this provider's buckets (after a steal, if need be), or nothing while it waits */
  protected override async afterIdle (statusesSeen: number): Promise<Message[]> {
    const early = await this.idleVerdict(statusesSeen)
    if (early != null) {
      return early
    }
    if (this.waiting && statusesSeen === this.idleAnswered) {
      // the same idle again tells nothing new (an honest sender idles once
      // per pass or status): the pool's work for it is not done again
      return []
    }
    this.idleAnswered = statusesSeen
    this.checkAnswered()
    // between frontier updates: a block being taken has left the wants, and its links are not in them yet
    return this.pool.exclusive(async () => {
      if (statusesSeen < this.counters.statusesSent) {
        // the pool asked it for more meanwhile (a feed): the sender's next idle will say
        return []
      }
      return this.pool.idle(this)
    })
  }
}
