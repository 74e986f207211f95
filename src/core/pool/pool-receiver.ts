/**
 * @packageDocumentation
 *
 * The receiving side of a CAR Pool pull, free of any transport: one DAG from
 * several providers at once, one session per provider over one shared
 * frontier.
 *
 * Each provider is sent a `pull` with its shard (PROTOCOL.md §4.1): it sends
 * every block that is not a raw leaf, so that the receiver can follow the DAG
 * on each stream alone, and the raw leaves of its buckets. Blocks are
 * verified and written once, whichever provider's copy comes first; the
 * others' copies are duplicates (interior blocks, which are small, and what
 * was in flight when work moved).
 *
 * When a provider goes idle, it is asked for the wants of its buckets (the
 * stragglers of Bloom false positives); with none left, it takes half the
 * buckets of the provider expected to finish last (work stealing): that one
 * is sent a status narrowing its shard, and the stealer is asked for the
 * wants of the buckets it took. A provider that fails (a reset, a stall, a
 * forged or unrequested block, a block it lacks) loses its buckets to the
 * others. The pull is complete when the shared frontier is.
 */

import * as raw from 'multiformats/codecs/raw'
import { BlocksNotAvailableError } from '../../errors.ts'
import { ReceiverFrontier } from '../frontier.ts'
import { ReceiverSession } from '../receiver.ts'
import { BlockVerifier } from '../verify.ts'
import { ShardPlanner } from './shard-planner.ts'
import { Shard, bucketOf } from './shard.ts'
import type { ReceiveOutcome } from '../frontier.ts'
import type { Message, PullMessage } from '../messages.ts'
import type { ReceiverSessionInit } from '../receiver.ts'
import type { CID } from 'multiformats/cid'

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

  private constructor (init: PoolReceiverInit, frontier: ReceiverFrontier) {
    this.init = init
    this.frontier = frontier
    this.planner = new ShardPlanner({ providers: init.providers, buckets: init.buckets })
  }

  /** Builds the shared frontier from what the blockstore holds under the roots */
  static async create (init: PoolReceiverInit, options: { signal?: AbortSignal } = {}): Promise<PoolReceiver> {
    const frontier = await ReceiverFrontier.create(init.roots, init, { ...options, offline: true })
    return new PoolReceiver(init, frontier)
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
      member = new PoolMember(this.init, this.frontier, this, provider)
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
    // between frontier updates: the wants are then the whole story
    void this.exclusive(async () => { this.dispatch() })
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
    this.planner.received(provider, bytes, this.now())
    if (this.complete) {
      for (const member of this.members.values()) {
        member.news.notify()
      }
    }
  }

  /**
   * `member`'s sender has sent all it was asked for: the wants of its
   * buckets, or (with none) of the buckets it steals; none means it waits
   * until a failure or another member's blocks give it work
   */
  idle (member: PoolMember): Message[] {
    let wants = this.wantsOf(member.provider)
    // steal until the buckets taken hold wants (buckets whose leaves all
    // arrived go first: the victim would reach them last), or nothing is left to take
    while (wants.length === 0) {
      const order = this.sendOrder()
      const moves = this.planner.finished(member.provider, this.now(), bucket => order.get(bucket) ?? Infinity)
      if (moves.length === 0) {
        break
      }
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
   * For each bucket, the position of its first raw want in the frontier's
   * order, which is the order providers walk the DAG in and send their
   * leaves: how soon its owner will send it. Buckets without one are absent
   */
  private sendOrder (): Map<number, number> {
    const order = new Map<number, number>()
    let position = 0
    for (const want of this.frontier.wants()) {
      if (want.code === raw.code) {
        const bucket = bucketOf(want, this.planner.buckets)
        if (!order.has(bucket)) {
          order.set(bucket, position)
        }
      }
      position++
    }
    return order
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

  /** The wants whose buckets `provider` owns, at most one status's worth */
  private wantsOf (provider: string): CID[] {
    if (this.failures.has(provider)) {
      return []
    }
    const max = this.init.maxCidsPerMessage ?? Infinity
    const wants: CID[] = []
    for (const want of this.frontier.wants()) {
      if (wants.length >= max) {
        break
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
    return { ...request, wants: request.wants.filter(want => shard.sends(want)), shard }
  }

  /** The pool dropped this provider */
  markFailed (): void {
    this.dropped = true
    this.waiting = false
  }

  /** A round asking for `wants`, answering an idle; it carries the provider's shard now (which stealing or a failure may have widened) */
  round (wants: CID[]): Message {
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
    const outcome = await this.pool.exclusive(async () => super.storeBlock(cid, bytes, options))
    if (outcome === 'stored') {
      this.pool.stored(this.provider, bytes.byteLength)
    } else if (outcome === 'duplicate') {
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
    return this.pool.exclusive(async () => this.pool.idle(this))
  }
}
