/**
 * @packageDocumentation
 *
 * The receiving side of a CAR Pool pull, free of any transport: one DAG from
 * several providers at once, one session per provider over one shared
 * frontier.
 *
 * Each provider is sent a `pull` with its shard (PROTOCOL.md §4.1, §6.8).
 * The first provider, the leader, walks the DAG with a shard of no bucket:
 * it sends every block that is not a raw leaf, and no leaf. The others get
 * a shallow pull (`dl: 0`) and are asked for the raw leaves of their
 * buckets as the leader's blocks reveal them (at most every 20 ms, while
 * they still send), so their links carry leaves from the start and only one
 * provider sends the interior blocks. The leader is asked for the leaves of
 * its buckets the same way from its first idle. Blocks are verified and
 * written once, whichever provider's copy comes first; the others' copies
 * are duplicates (the roots' own blocks, and what was in flight when work
 * moved).
 *
 * A provider is asked only a little ahead of what it delivers: about 250 ms
 * of its rate over the last 500 ms (at least 1 MiB), in bytes. A leaf
 * weighs what the dag-pb link naming it says (its Tsize), else the mean
 * size of the leaves stored so far. Leaves of 256 KiB or more are asked
 * first, one at a time, with up to 512 KiB of small ones beside: the last
 * leaves of a pull are small, so the providers end together. The rest of a
 * provider's buckets' leaves wait in its queue at the receiver, where they
 * can still move: when a provider's queue runs dry, it takes part of the
 * queue of the provider expected to finish last (work stealing), and what
 * that one was asked stays its own, so nothing moves that may be in flight.
 * A provider that fails (a reset, a stall, a forged or unrequested block, a
 * block it lacks) loses its buckets and what it was asked to the others;
 * when the leader fails, the others are asked for every want of their
 * buckets, a DAG level a round.
 * The pull is complete when the shared frontier is.
 */

import * as dagPb from '@ipld/dag-pb'
import * as raw from 'multiformats/codecs/raw'
import { BlocksNotAvailableError } from '../../errors.ts'
import { cidKey } from '../cid-key.ts'
import { ReceiverFrontier } from '../frontier.ts'
import { pbLinks } from '../pb-links.ts'
import { ReceiverSession } from '../receiver.ts'
import { BlockVerifier } from '../verify.ts'
import { ShardPlanner } from './shard-planner.ts'
import { Shard, bucketOf } from './shard.ts'
import type { BucketBacklog } from './shard-planner.ts'
import type { ReceiveOutcome } from '../frontier.ts'
import type { Message, PullMessage } from '../messages.ts'
import type { PbLinks } from '../pb-links.ts'
import type { ReceiverSessionInit } from '../receiver.ts'
import type { CID } from 'multiformats/cid'

/** Least time between two feeds of new leaves to the members that do not walk the DAG */
const FEED_INTERVAL_MS = 20

/**
 * How far ahead an asked member is asked: the bytes it delivers in this
 * long at its rate so far. Enough to keep a link busy whose round trip is
 * well under it; little enough that work can still move once it is asked
 */
const ASK_AHEAD_MS = 250

/** Least time between two steals by one member that still sends */
const STEAL_INTERVAL_MS = 50

/** An asked member's rate is what it delivered over this many ms */
const RATE_WINDOW_MS = 500

/** The least an asked member may have asked and not yet arrived, bytes (its first round trip) */
const MIN_ASK_AHEAD_BYTES = 1024 * 1024

/**
 * The small leaves a member may be asked past its room while a large leaf
 * waits for room, bytes: they keep its link busy after the large leaf it
 * was asked arrives, until the waiting one is asked and on its way
 */
const FILLER_BYTES = 512 * 1024

/**
 * The wants a member is asked ahead whatever their size: with large leaves,
 * one arrives while the next is on its way
 */
const MIN_WANTS_AHEAD = 2

/** What a raw leaf is taken to weigh before any has arrived, bytes */
const FIRST_LEAF_ESTIMATE = 16 * 1024

/**
 * A raw leaf its parent says is at least this large is asked before the
 * others of its member's queue: the last leaves of a pull are then small
 * ones, which work stealing can share out evenly at the end
 */
const LARGE_LEAF_BYTES = 256 * 1024

/** The most raw wants whose sizes (from their dag-pb parents) a pull keeps */
const MAX_SIZE_HINTS = 1 << 14

/** Hinted leaves stored before the hints are checked against their true sizes */
const HINT_CHECK_LEAVES = 8

/** The largest size a parent may give a leaf (a larger claim is capped: no block is this large) */
const MAX_SIZE_HINT = 4 * 1024 * 1024

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
  /** True once the leader's walk is over (it went idle): from then on it is asked for its leaves as the others are */
  private leaderWalked = false
  /** When the other members were last given the leaves found since */
  private lastFeed = -Infinity
  /** Wants found since the last feed, in the order found */
  private readonly fresh: CID[]
  /** Raw wants asked of an asked member and not yet held, by key, with what each was taken to weigh: each is asked of one member at a time */
  private readonly inFlight = new Map<string, { cid: CID, member: PoolMember, weight: number }>()
  /**
   * The sizes of raw wants, by key, as their dag-pb parents give them (the
   * link's Tsize). Only a hint: it orders and paces what is asked, and a
   * wrong one costs time, never a block
   */
  private readonly leafSizes = new Map<string, number>()
  /** The sizes hinted for the leaves stored so far that had one, and their true sizes: hints far off are dropped (HINT_CHECK_LEAVES) */
  private hintedLeaves = 0
  private hintedBytes = 0
  private hintedTrueBytes = 0
  private hintsOff = false
  /** Raw leaves stored, and their bytes: what an asked want is taken to weigh */
  private leavesStored = 0
  private leafBytesStored = 0
  /** A feed due once FEED_INTERVAL_MS has passed since the last one */
  private feedTimer?: ReturnType<typeof setTimeout>

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

  /** The shard `provider`'s sender is given now: none while it walks (it sends interior blocks only), else the buckets it owns */
  wireShardOf (provider: string): Shard {
    return this.walks(provider) ? Shard.of(this.planner.buckets, []) : this.shardOf(provider)
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
    const member = this.members.get(provider)
    member?.markFailed()
    this.planner.failed(provider, this.now())
    if (provider === this.leader) {
      // no one walks the DAG now: each member is asked for every want of its buckets, a level a round
      this.leader = undefined
    }
    // between frontier updates: the wants are then the whole story
    void this.exclusive(async () => {
      if (member != null) {
        // what it was asked and had not sent, and what it was yet to be asked, go to the new owners
        this.enqueue([...member.takeQueued(Infinity), ...this.forgetAsked(member, () => true)])
      }
      this.dispatch()
      this.feed()
    })
  }

  /** Gives back what the pull holds of node-wide budgets; call once when it ends */
  close (): void {
    clearTimeout(this.feedTimer)
    this.feedTimer = undefined
    this.frontier.release()
  }

  /** Runs `update` once the frontier updates before it are over */
  async exclusive<T> (update: () => Promise<T>): Promise<T> {
    const result = this.turn.then(update)
    this.turn = result.catch(() => {})
    return result
  }

  /**
   * Counts a stored block towards its provider's rate and settles it for the
   * member it was asked of; wakes every member once the pull is complete,
   * else feeds the asked members (at most every FEED_INTERVAL_MS)
   */
  stored (provider: string, cid: CID, bytes: number): void {
    const now = this.now()
    this.planner.received(provider, bytes, now)
    this.members.get(provider)?.delivered(bytes, now)
    if (cid.code === raw.code) {
      this.leavesStored++
      this.leafBytesStored += bytes
      // only raw leaves are asked of one member at a time
      const key = cidKey(cid)
      this.checkHint(key, bytes)
      const asked = this.inFlight.get(key)
      if (asked != null) {
        this.inFlight.delete(key)
        asked.member.settled(asked.weight)
      }
    }
    if (this.complete) {
      clearTimeout(this.feedTimer)
      this.feedTimer = undefined
      for (const member of this.members.values()) {
        member.news.notify()
      }
      return
    }
    this.scheduleFeed(now)
  }

  /** Feeds now when the last feed is FEED_INTERVAL_MS old, else once it is */
  private scheduleFeed (now: number): void {
    if (this.feedTimer != null) {
      return
    }
    const wait = this.lastFeed + FEED_INTERVAL_MS - now
    const run = (): void => {
      this.feedTimer = undefined
      this.lastFeed = this.now()
      void this.exclusive(async () => { this.feed() })
    }
    if (wait <= 0) {
      run()
    } else {
      this.feedTimer = setTimeout(run, wait)
    }
  }

  /** What an asked raw want is taken to weigh: the mean of the leaves stored so far */
  private leafEstimate (): number {
    return this.leavesStored > 0 ? this.leafBytesStored / this.leavesStored : FIRST_LEAF_ESTIMATE
  }

  /** What `want` is taken to weigh: the size its parent gave it, else the mean of the leaves stored so far */
  private weightOf (want: CID): number {
    return this.weightOfKey(cidKey(want))
  }

  /** `weightOf` for a want's `cidKey` */
  private weightOfKey (key: string): number {
    return this.leafSizes.get(key) ?? this.leafEstimate()
  }

  /** True when `want`'s parent says it is a large leaf (LARGE_LEAF_BYTES), asked before the others */
  isLarge (want: CID): boolean {
    return this.isLargeKey(cidKey(want))
  }

  /** `isLarge` for a want's `cidKey` */
  private isLargeKey (key: string): boolean {
    return (this.leafSizes.get(key) ?? 0) >= LARGE_LEAF_BYTES
  }

  /**
   * Compares a stored leaf's size with the size hinted for it. Once
   * HINT_CHECK_LEAVES hinted leaves have arrived, hints that are off by
   * more than half (too large or too small in all) are no longer used:
   * taken as true, far too large ones would have each provider asked for
   * two leaves at a time, far too small ones for everything at once
   */
  private checkHint (key: string, bytes: number): void {
    const hint = this.leafSizes.get(key)
    if (hint == null) {
      return
    }
    this.leafSizes.delete(key)
    this.hintedLeaves++
    this.hintedBytes += hint
    this.hintedTrueBytes += bytes
    if (this.hintedLeaves >= HINT_CHECK_LEAVES && (this.hintedTrueBytes * 2 < this.hintedBytes || this.hintedTrueBytes > this.hintedBytes * 2)) {
      this.hintsOff = true
      this.leafSizes.clear()
    }
  }

  /**
   * Notes the sizes a stored dag-pb block gives the raw leaves it links to
   * (as far as MAX_SIZE_HINTS allows, and while hints prove right); other
   * blocks give none
   */
  noteLinkSizes (cid: CID, bytes: Uint8Array): void {
    if (cid.code !== dagPb.code || this.hintsOff || this.leafSizes.size >= MAX_SIZE_HINTS) {
      return
    }
    let links: PbLinks
    try {
      links = pbLinks(bytes)
    } catch {
      return
    }
    for (let i = 0; i < links.cids.length; i++) {
      const cid = links.cids[i]
      const size = links.sizes[i]
      if (cid.code === raw.code && size != null && size > 0 && this.leafSizes.size < MAX_SIZE_HINTS && this.frontier.isWanted(cid)) {
        this.leafSizes.set(cidKey(cid), Math.min(size, MAX_SIZE_HINT))
      }
    }
  }

  /**
   * The bytes `member` may still be asked for now: ASK_AHEAD_MS of its rate
   * (at least MIN_ASK_AHEAD_BYTES), less what it was asked and has not
   * sent
   */
  private roomOf (member: PoolMember): number {
    const ahead = Math.max(MIN_ASK_AHEAD_BYTES, member.bytesPerMs(this.now()) * ASK_AHEAD_MS)
    return ahead - member.outstandingBytes
  }

  /**
   * Puts raw wants in the queues of their buckets' owners. The walking
   * leader's wait there too: its walk sends no raw leaf (its shard is empty
   * until its first idle), so they can still move to whoever runs dry first
   */
  private enqueue (wants: CID[]): void {
    for (const want of wants) {
      if (want.code !== raw.code || !this.frontier.isWanted(want) || this.inFlight.has(cidKey(want))) {
        continue
      }
      const owner = this.members.get(this.planner.ownerOf(want))
      if (owner != null && !owner.failed) {
        owner.queue(want)
      }
    }
  }

  /** Queues the raw wants of a member's first pull that it is not asked for in it (the leader's, until its first idle) */
  queueLeaves (wants: CID[]): void {
    this.enqueue(wants)
  }

  /** Takes up to `member`'s room from its queue (the large leaves first), and counts them as asked of it */
  private ask (member: PoolMember, max: number): CID[] {
    let room = this.roomOf(member)
    let fillers = member.outstandingBytes - member.outstandingLargeBytes
    let large = member.outstandingLargeBytes
    let blocked = false
    const freshKey = (key: string): boolean => this.frontier.isWantedKey(key) && !this.inFlight.has(key)
    const fresh = (want: CID): boolean => freshKey(cidKey(want))
    // a want held or asked meanwhile leaves the queue and takes no room;
    // the queue gives its large leaves first. Every queued want is looked
    // at on each feed, so its key is made once
    const taken = member.takeQueued(max, want => {
      const key = cidKey(want)
      if (!freshKey(key)) {
        return true
      }
      const weight = this.weightOfKey(key)
      if (this.isLargeKey(key)) {
        if (weight > room && large > 0) {
          // it waits until the one on its way arrives
          blocked = true
          return false
        }
        // it fits, or no large leaf is on its way: it goes now, whatever the small ones in flight weigh
        large += weight
      } else if (blocked) {
        // small leaves keep the link busy while a large one waits, but only
        // a little, so that it is the next large one sent
        if (fillers + weight > FILLER_BYTES) {
          return false
        }
        fillers += weight
      } else if (weight > room) {
        return false
      }
      room -= weight
      return true
    })
    const wants = taken.filter(fresh)
    const short = Math.min(max - taken.length, MIN_WANTS_AHEAD - member.outstanding - wants.length)
    if (short > 0) {
      // large leaves and nothing to fill with: the next one is asked while one arrives
      wants.push(...member.takeQueued(short, fresh))
    }
    for (const want of wants) {
      const weight = this.weightOf(want)
      this.inFlight.set(cidKey(want), { cid: want, member, weight })
      member.outstandingBytes += weight
      if (weight >= LARGE_LEAF_BYTES) {
        member.outstandingLargeBytes += weight
      }
    }
    member.outstanding += wants.length
    return wants
  }

  /**
   * The raw wants of `member`'s first pull, as far as its room allows; the
   * rest wait in its queue
   */
  firstAsk (member: PoolMember, wants: CID[]): CID[] {
    member.queue(...wants)
    return this.ask(member, this.init.maxCidsPerMessage ?? Infinity)
  }

  /** True when `provider` walks the DAG (the leader, until its walk is over) rather than being asked for single leaves */
  walks (provider: string): boolean {
    return provider === this.leader && !this.leaderWalked
  }

  /**
   * Gives each member other than the walking leader the wants of its buckets found
   * since (the leaves below the leader's interior blocks), as far as its
   * room allows, while it still sends: its link need not wait for it to go
   * idle, and what it was not asked yet can still move to another member
   */
  private feed (): void {
    if (this.complete) {
      this.fresh.length = 0
      return
    }
    if (this.leader == null) {
      this.feedLeaderless()
      return
    }
    this.enqueue(this.fresh.splice(0))
    const max = this.init.maxCidsPerMessage ?? Infinity
    const now = this.now()
    for (const member of this.members.values()) {
      if (member.failed || this.walks(member.provider)) {
        continue
      }
      if (member.queued === 0 && member.bytesPerMs(now) > 0 && now - member.lastSteal >= STEAL_INTERVAL_MS && this.roomOf(member) > 0) {
        // it will run dry before its next idle: it takes work while what it has in flight still keeps it busy
        this.steal(member, true)
      }
      if (member.queued > 0) {
        member.topUp(this.ask(member, max))
      }
    }
  }

  /**
   * With no leader, every want found (interior blocks too) is asked of its
   * bucket's owner as soon as found: nothing else will show the owner below
   * the blocks it sends
   */
  private feedLeaderless (): void {
    const max = this.init.maxCidsPerMessage ?? Infinity
    const batches = new Map<PoolMember, CID[]>()
    let taken = 0
    for (; taken < this.fresh.length; taken++) {
      const want = this.fresh[taken]
      if (!this.frontier.isWanted(want)) {
        continue
      }
      const member = this.members.get(this.planner.ownerOf(want))
      if (member == null || member.failed || member.wasAsked(want)) {
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
    if (member.provider === this.leader && !this.leaderWalked) {
      // its walk is over: the leaves of its buckets (queued as its blocks
      // showed them, and any the store's walk found) are asked of it a
      // little at a time, as of the others
      this.leaderWalked = true
      this.enqueue(this.frontier.wants())
    }
    this.settle(member)
    let wants = this.wantsOf(member)
    if (wants.length === 0) {
      this.steal(member)
      wants = this.wantsOf(member)
    }
    // the others that wait may own wants found since they went idle
    member.waiting = wants.length === 0
    this.dispatch()
    return wants.length > 0 ? [member.round(wants)] : []
  }

  /**
   * Forgets what `member` was asked that is no longer wanted: at its idle,
   * every want it was asked has arrived (from it or another member)
   */
  private settle (member: PoolMember): void {
    this.forgetAsked(member, cid => !this.frontier.isWanted(cid))
  }

  /** Forgets the wants asked of `member` that `which` picks (no longer counted as its own); returns them */
  private forgetAsked (member: PoolMember, which: (cid: CID) => boolean): CID[] {
    const forgotten: CID[] = []
    for (const [key, entry] of this.inFlight) {
      if (entry.member === member && which(entry.cid)) {
        this.inFlight.delete(key)
        forgotten.push(entry.cid)
        member.settled(entry.weight)
      }
    }
    return forgotten
  }

  /**
   * Moves to `thief` the part of the backlog of the provider expected to
   * finish last that it would reach last (ShardPlanner.finished). A victim
   * keeps what it was asked and loses what it was not; with no leader, the
   * victim finds its wants by itself and is told to leave the moved buckets out
   */
  private steal (thief: PoolMember, early = false): void {
    thief.lastSteal = this.now()
    const moves = this.planner.finished(thief.provider, this.now(), undefined, this.backlog())
    if (early && moves.length === 0) {
      this.planner.resumed(thief.provider)
    }
    for (const move of moves) {
      const from = this.members.get(move.from)
      if (from == null) {
        continue
      }
      const moved = new Set(move.buckets)
      const inMoved = (want: CID): boolean => moved.has(bucketOf(want, this.planner.buckets))
      if (this.leader == null) {
        // it finds its raw leaves by itself: it must be told to leave the
        // moved ones out, which withdraws what it was asked outside its
        // shard (S-15), in buckets moved earlier without a narrowing too
        const shard = this.shardOf(from.provider)
        from.narrow(shard)
        this.forgetAsked(from, cid => !shard.sends(cid))
        this.enqueue(this.frontier.wants().filter(inMoved))
      } else {
        // it sends only the leaves it is asked (the walking leader none yet): what it was asked stays its own, what it was not moves
        this.enqueue(from.takeQueued(Infinity, inMoved))
      }
    }
  }

  /**
   * The raw wants of each bucket that can still move, their bytes as far
   * as known, and how soon its owner will send the bucket: the place of its
   * first want in its owner's queue (the order it is asked in), else in
   * the frontier's order after every queued want (the order a provider
   * that finds its leaves itself walks in). Raw leaves are what a shard
   * divides; wants already asked of a member are its own, and buckets
   * without a movable want are absent
   */
  private backlog (): Map<number, BucketBacklog> {
    const queued = new Map<string, number>()
    for (const member of this.members.values()) {
      let place = 0
      for (const want of member.queueOrder()) {
        queued.set(cidKey(want), place++)
      }
    }
    const backlog = new Map<number, BucketBacklog>()
    let order = 0
    for (const want of this.frontier.wants()) {
      order++
      const key = cidKey(want)
      if (want.code !== raw.code || this.inFlight.has(key)) {
        continue
      }
      const bucket = bucketOf(want, this.planner.buckets)
      const position = queued.get(key) ?? queued.size + order
      const bytes = this.weightOf(want)
      const entry = backlog.get(bucket)
      if (entry == null) {
        backlog.set(bucket, { wants: 1, bytes, position })
      } else {
        entry.wants++
        entry.bytes = (entry.bytes ?? 0) + bytes
        entry.position = Math.min(entry.position, position)
      }
    }
    return backlog
  }

  /** Asks each waiting member for the wants its buckets hold now */
  private dispatch (): void {
    for (const member of this.members.values()) {
      if (!member.waiting || member.failed) {
        continue
      }
      const wants = this.wantsOf(member)
      if (wants.length > 0) {
        member.waiting = false
        member.askUnprompted(wants)
      }
    }
  }

  /**
   * The wants to ask of `member` now, at most one status's worth. While
   * there is a leader, an asked member gets the raw leaves of its buckets
   * from its queue, as far as its room allows, and the leader once its walk
   * is over also every other want; with no leader (or while it walks)
   * every want its buckets hold, less those asked of another member
   */
  private wantsOf (member: PoolMember): CID[] {
    if (member.failed) {
      return []
    }
    const max = this.init.maxCidsPerMessage ?? Infinity
    const wants: CID[] = []
    let leavesToo = true
    if (this.leader != null && !this.walks(member.provider)) {
      wants.push(...this.ask(member, max))
      if (member.provider !== this.leader) {
        return wants
      }
      // the leader also sends every block that is not a raw leaf, whatever its bucket (one a Bloom's false positive hid)
      leavesToo = false
    }
    for (const want of this.frontier.wants()) {
      if (wants.length >= max) {
        break
      }
      if (leavesToo ? this.planner.ownerOf(want) !== member.provider : want.code === raw.code) {
        continue
      }
      const asked = this.inFlight.get(cidKey(want))
      if (asked != null && asked.member !== member && !asked.member.failed) {
        continue
      }
      wants.push(want)
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
  /** Raw wants of its buckets it was not asked yet, in the order found: those its parents say are large, then the others */
  private waitingLarge: CID[] = []
  private waitingWants: CID[] = []
  /** The keys of `waitingWants` */
  private readonly waitingKeys = new Set<string>()
  /** Raw wants asked of it (by the pool's feeds and rounds) that are not held yet */
  outstanding = 0
  /** What those are taken to weigh, bytes */
  outstandingBytes = 0
  /** The part of it that large leaves weigh */
  outstandingLargeBytes = 0
  /** When it last stole work */
  lastSteal = -Infinity
  /** The shard its sender has now */
  private wireShard?: Shard
  /** Block bytes it delivered over the last RATE_WINDOW_MS, oldest first */
  private readonly deliveries: Array<{ at: number, bytes: number }> = []
  private bytesInWindow = 0

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
    const shard = this.pool.wireShardOf(this.provider)
    let wants = request.wants.filter(want => shard.sends(want))
    if (this.pool.walks(this.provider)) {
      // the leader walks with no bucket: its raw wants wait in its queue
      this.pool.queueLeaves(request.wants.filter(want => want.code === raw.code))
    } else if (request.depthLimit === 0) {
      // a member that does not walk: the raw leaves of its buckets known so far (as far as its room allows), else the roots' own blocks
      wants = this.pool.firstAsk(this, wants.filter(want => want.code === raw.code))
    }
    this.noteAsked(wants)
    this.wireShard = shard
    return { ...request, wants, shard }
  }

  /**
   * The shard to send with a status that asks for more. A walking member's
   * is exactly its buckets. An asked member's only grows between idles: a
   * bucket that moved away keeps what it was asked there (it sends only
   * what it is asked, S-14), and narrowing would withdraw those wants
   */
  private shardToSend (settled: boolean): Shard {
    const now = this.pool.shardOf(this.provider)
    if (this.pool.walks(this.provider) || settled || this.wireShard == null) {
      this.wireShard = now
    } else {
      this.wireShard = this.wireShard.union(now)
    }
    return this.wireShard
  }

  /** A want asked of it, which weighed `weight`, is held now or no longer its own */
  settled (weight: number): void {
    this.outstanding--
    this.outstandingBytes -= weight
    if (weight >= LARGE_LEAF_BYTES) {
      this.outstandingLargeBytes -= weight
    }
  }

  /** Its queue in the order it is asked: the large leaves, then the others */
  * queueOrder (): Iterable<CID> {
    yield * this.waitingLarge
    yield * this.waitingWants
  }

  /** Raw wants waiting in its queue */
  get queued (): number {
    return this.waitingLarge.length + this.waitingWants.length
  }

  /** Adds raw wants of its buckets to its queue (those queued already stay where they are) */
  queue (...wants: CID[]): void {
    for (const want of wants) {
      const key = cidKey(want)
      if (!this.waitingKeys.has(key)) {
        this.waitingKeys.add(key)
        ;(this.pool.isLarge(want) ? this.waitingLarge : this.waitingWants).push(want)
      }
    }
  }

  /** Takes up to `max` wants from its queue (those `which` accepts; all by default): the large ones first, each kind in the order queued */
  takeQueued (max: number, which: (want: CID) => boolean = () => true): CID[] {
    const taken: CID[] = []
    const take = (queue: CID[]): CID[] => {
      const kept: CID[] = []
      for (const want of queue) {
        if (taken.length < max && which(want)) {
          taken.push(want)
          this.waitingKeys.delete(cidKey(want))
        } else {
          kept.push(want)
        }
      }
      return kept
    }
    this.waitingLarge = take(this.waitingLarge)
    this.waitingWants = take(this.waitingWants)
    return taken
  }

  /** Counts a block it delivered towards its rate */
  delivered (bytes: number, now: number): void {
    this.deliveries.push({ at: now, bytes })
    this.bytesInWindow += bytes
    this.forget(now)
  }

  /** Block bytes per ms it delivered over the last RATE_WINDOW_MS */
  bytesPerMs (now: number): number {
    this.forget(now)
    return this.bytesInWindow / RATE_WINDOW_MS
  }

  private forget (now: number): void {
    while (this.deliveries.length > 0 && this.deliveries[0].at <= now - RATE_WINDOW_MS) {
      this.bytesInWindow -= (this.deliveries.shift() as { bytes: number }).bytes
    }
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
    this.unprompted.push({ type: 'status', wants, shard: this.shardToSend(false) })
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
      return { ...this.statusAsking(wants), shard: this.shardToSend(true) }
    }
    return { ...this.stragglerRound(wants), shard: this.shardToSend(true) }
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
    this.wireShard = shard
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
    const outcome = await this.pool.exclusive(async () => {
      const stored = await super.storeBlock(cid, bytes, options)
      if (stored === 'stored') {
        // in the turn: no feed may queue the leaves it links to before their sizes are known
        this.pool.noteLinkSizes(cid, bytes)
      }
      return stored
    })
    if (outcome === 'stored') {
      this.pool.stored(this.provider, cid, bytes.byteLength)
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
