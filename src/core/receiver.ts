import { DEFAULT_MAX_CIDS_PER_MESSAGE, DEFAULT_MAX_STRAGGLER_ROUNDS, DEFAULT_MAX_UNREQUESTED_BLOCKS, DEFAULT_SMALL_STORE_BLOCKS, MAX_SENT_BLOOM_BYTES, PUSH_QUOTA_BYTES_PER_LINK } from '../constants.ts'
import { BlocksNotAvailableError, LimitExceededError, ProtocolError, RemoteError, SessionRefusedError } from '../errors.ts'
import { Yielder } from './budget.ts'
import { cidKey } from './cid-key.ts'
import { ReceiverFrontier } from './frontier.ts'
import { bloomOfListsInSlices } from './messages.ts'
import { Wakeup } from './signal.ts'
import { walkHeldCids } from './walk.ts'
import type { BlockSink } from './blocks.ts'
import type { BloomFilter } from './bloom/bloom-filter.ts'
import type { Budget } from './budget.ts'
import type { CompleteRecord } from './complete-record.ts'
import type { ReceiveOutcome, ReceiverFrontierInit } from './frontier.ts'
import type { LinkReader } from './links.ts'
import type { Message, PullMessage, StatusMessage } from './messages.ts'
import type { BlockVerifier } from './verify.ts'
import type { Blockstore } from 'interface-blockstore'
import type { CID } from 'multiformats/cid'

/** Where a {@link ReceiverSession} finds and stores blocks, what it asks for, and its limits */
export interface ReceiverSessionInit extends Pick<ReceiverFrontierInit, 'maxWants' | 'wantBudget' | 'heldBudget' | 'maxLinksPerBlock' | 'maxExploreBlocks' | 'maxMissing' | 'shallow'> {
  /** Where held blocks are found and received blocks written */
  blockstore: BlockSink & Partial<Pick<Blockstore, 'getAll'>>
  /** The roots of the DAG to receive */
  roots: CID[]
  /** Roots of related DAGs the receiver may hold (for example the previous version); their held blocks go into the Bloom */
  hints?: CID[]
  /** Reads the links of held and received blocks; default a LinkReader with the built-in codecs */
  linkReader?: LinkReader
  /** Checks that received blocks hash to their CIDs; default a BlockVerifier with the built-in hashers */
  verifier?: BlockVerifier
  /**
   * A store with at most this many blocks (and a `getAll` method) goes into
   * the first Bloom whole (spec §3.5.1); 0 turns this off. Default
   * DEFAULT_SMALL_STORE_BLOCKS
   */
  smallStoreBlocks?: number
  /** Most CIDs listed in one status frame; default DEFAULT_MAX_CIDS_PER_MESSAGE */
  maxCidsPerMessage?: number
  /**
   * Most bytes this session may write to the store; each link of a stored
   * block counts PUSH_QUOTA_BYTES_PER_LINK bytes too (it becomes a want).
   * Default no limit
   */
  maxStoredBytes?: number
  /** Most blocks walked under the hints; default no limit */
  maxHintBlocks?: number
  /** Node-wide concurrency of local walks; a hint walk holds one unit */
  walkBudget?: Budget
  /** Called when the session moves forward: a block is stored */
  onProgress?(): void
  /** Called with each block that was wanted and verified, as its write to the blockstore begins */
  onBlockStored?(cid: CID, bytes: Uint8Array): void
  /** Most blocks tolerated that the session never asked for; default DEFAULT_MAX_UNREQUESTED_BLOCKS */
  maxUnrequestedBlocks?: number
  /** Most straggler rounds; default DEFAULT_MAX_STRAGGLER_ROUNDS */
  maxStragglerRounds?: number
  /** Write a status with `rootsHeld` once the roots are held (push servers do, to end the client's cold call) */
  announceRoots?: boolean
  /**
   * A Bloom of the whole local store (see `StoreBloom`): a pull's request
   * carries it, and a push server sends it as its greeting, and again to
   * answer a `sync`, instead of Blooms of what it finds under the roots and
   * hints, which it covers
   */
  storeBloom?: BloomFilter
  /**
   * DAGs the node recorded whole (see `CompleteRecord`): a hint found there
   * is trusted without a walk
   */
  completeRecord?: Pick<CompleteRecord, 'cidsUnder' | 'keysUnder' | 'bloomUnder' | 'record' | 'generation'>
}

/** What a receiver has done so far */
export interface ReceiverCounters {
  /** Block frames received, duplicates and unrequested blocks included */
  blocksReceived: number
  /** Bytes of block data received, duplicates and unrequested blocks included */
  blockBytesReceived: number
  /** Received blocks the receiver already held */
  duplicateBlocks: number
  /** Received blocks the session never asked for (not stored) */
  unrequestedBlocks: number
  /** Status-bearing messages written: the `pull` (when pulling) and every `status` */
  statusesSent: number
  /** Bytes of Bloom filter bits sent, in the `pull` and `status` frames */
  bloomBytesSent: number
  /** Status frames that asked for stragglers after the sender went idle */
  stragglerRounds: number
  /** Block bytes written to the store */
  bytesStored: number
  /** Blocks under the hints that the node's record of whole DAGs listed, so no walk read them */
  recordedHintBlocks: number
}

/** What happened to one received message */
export interface ReceiverStep {
  /** Messages to send back, in order */
  replies: Message[]
  /** Set when the message was a block */
  block?: {
    /** The block's CID */
    cid: CID
    /** The size of the block's data (bytes) */
    bytes: number
    /** What became of the block: stored, a duplicate, or unrequested */
    outcome: ReceiveOutcome
  }
}

/**
 * The receiving side of a CAR Mirror session, free of any transport: it
 * keeps the frontier, builds Bloom filters and decides when to send status.
 * Feed it the sender's messages with `receive`, one at a time, and send the
 * replies it returns.
 *
 * @example
 *
 * ```ts
 * const receiver = await ReceiverSession.create({ blockstore, roots: [root] })
 * await write(await receiver.pullRequest())
 * for await (const message of read()) {
 *   for (const reply of (await receiver.receive(message)).replies) await write(reply)
 *   if (receiver.complete) break
 * }
 * ```
 */
export class ReceiverSession {
  /** The roots of the DAG to receive, from `init` */
  readonly roots: CID[]
  /** Which blocks of the DAG the session holds and which it wants */
  readonly frontier: ReceiverFrontier
  /** What the session has done so far, updated as it runs */
  readonly counters: ReceiverCounters = { blocksReceived: 0, blockBytesReceived: 0, duplicateBlocks: 0, unrequestedBlocks: 0, statusesSent: 0, bloomBytesSent: 0, stragglerRounds: 0, bytesStored: 0, recordedHintBlocks: 0 }
  /**
   * Notified when the session has messages to send that no message from the
   * sender prompted (see `takeUnprompted`): a CAR Pool member's new work,
   * or the pool's completion
   */
  readonly news = new Wakeup()
  /** What the session was made with */
  protected readonly init: ReceiverSessionInit
  /** Messages for `takeUnprompted` */
  protected readonly unprompted: Message[] = []
  private hintedHeld: CID[] = []
  /** The lists of hinted DAGs the node's record holds whole: shared with other sessions, not copied */
  private readonly recordedHints: Array<readonly CID[]> = []
  /** The hints whose lists `recordedHints` holds, in the same order */
  private readonly recordedRoots: CID[] = []
  /**
   * What the hint walk took from `heldBudget`: one per held block it found,
   * one more for each when the hinted DAG is trusted whole. When the budget
   * is used up during the walk, the walk stops and keeps nothing (hints
   * only save bytes; the frontier needs the room); `close` gives it back
   */
  private hintsKept = 0
  /** The hint walk, begun once by `hinted` */
  private hintWalking?: Promise<CID[]>
  /** The same walk when `pullRequest` left it running in the background: the first block waits for it; its errors are dropped, hints only save work */
  private backgroundHintWalk?: Promise<void>
  private nextBloomAt = 1
  private doneSent = false
  /** The wants of the latest round: each must arrive before the sender's next idle */
  protected lastAsked: CID[] = []
  private rootsAnnounced = false
  private headerSeen = false
  private storeBloomSent = false
  /**
   * The frontier's `foundOutsideWhole` when the last Bloom of held blocks
   * under the roots and hints (not a store Bloom) was built: blocks found
   * past it are not in it. Undefined until one is sent
   */
  private outsideAtLastBloom?: number

  /** The record's generation when the session began: a block deleted since drops the recording (see `recordWhole`) */
  private readonly recordGeneration?: number
  private readonly yielder = new Yielder()

  protected constructor (init: ReceiverSessionInit, frontier: ReceiverFrontier) {
    this.init = init
    this.recordGeneration = init.completeRecord?.generation
    this.roots = init.roots
    this.frontier = frontier
  }

  /** Builds the session's frontier from what the blockstore holds under the roots */
  static async create (init: ReceiverSessionInit, options: { signal?: AbortSignal } = {}): Promise<ReceiverSession> {
    const frontier = await ReceiverFrontier.create(init.roots, init, { ...options, offline: true })
    return new ReceiverSession(init, frontier)
  }

  /** True when the receiver holds every block reachable from the roots */
  get complete (): boolean {
    return this.frontier.complete
  }

  /**
   * Once the session is complete: records its roots in the node's record of
   * whole DAGs (see `CompleteRecord`), listing every block held under them,
   * so later sessions hinting them need no walk. When links into whole
   * hinted DAGs were trusted rather than walked, those DAGs' blocks are
   * listed too (held, and whole below: more than the roots need, never a
   * block that is missing). Returns false when nothing was recorded: an
   * incomplete or shallow session, a block deleted meanwhile, a DAG too large
   */
  async recordWhole (options: { signal?: AbortSignal } = {}): Promise<boolean> {
    const record = this.init.completeRecord
    if (record == null || this.recordGeneration == null || !this.complete || this.init.shallow === true) {
      return false
    }
    let listing: Promise<CID[]> | undefined
    const list = async (): Promise<CID[]> => {
      listing ??= this.wholeCids(options)
      return listing
    }
    // each root queued at once: a session that begins after this call finds them
    const recorded = await Promise.all(this.roots.map(async root => record.record(root, list, { generation: this.recordGeneration as number, signal: options.signal })))
    return recorded.includes(true)
  }

  /** The CIDs `recordWhole` lists: the held blocks under the roots, and those of the whole hinted DAGs links into which were trusted */
  private async wholeCids (options: { signal?: AbortSignal }): Promise<CID[]> {
    const cids = [...this.frontier.held()]
    if (!this.frontier.trustedWhole) {
      return cids
    }
    const seen = new Set<string>()
    for (const cid of cids) {
      seen.add(cidKey(cid))
    }
    for (const list of [this.hintedHeld, ...this.recordedHints]) {
      for (let i = 0; i < list.length; i++) {
        if ((i & 0x3ff) === 0x3ff) {
          await this.yielder.maybeYield(options.signal)
        }
        const key = cidKey(list[i])
        if (!seen.has(key)) {
          seen.add(key)
          cids.push(list[i])
        }
      }
    }
    return cids
  }

  /** Gives back what the session holds of node-wide budgets; call once when the session ends */
  close (): void {
    this.frontier.release()
    this.init.heldBudget?.release(this.hintsKept)
    this.hintsKept = 0
  }

  /**
   * True when the session may have messages to send that the sender did not
   * prompt: a runner then waits for `news` as well as for the sender's frames
   */
  get speaksUnprompted (): boolean {
    return false
  }

  /** The messages to send that the sender did not prompt, once each */
  takeUnprompted (): Message[] {
    return this.unprompted.splice(0)
  }

  /**
   * The first message of a pull: roots, wants and a Bloom of what this node
   * holds. With a small store the Bloom covers the whole store; otherwise the
   * held blocks under the roots and under the hints.
   */
  async pullRequest (options: { signal?: AbortSignal } = {}): Promise<PullMessage> {
    if (this.init.shallow === true) {
      // the sender sends the wants whatever a Bloom holds: a shallow pull needs none (and reveals nothing)
      this.nextBloomAt = Infinity
      this.counters.statusesSent++
      const wanted = this.frontier.wants()
      return { type: 'pull', roots: this.roots, wants: wanted.length <= this.maxCids ? wanted : [], depthLimit: 0 }
    }
    const store = this.init.storeBloom
    if (store != null) {
      // the node's Bloom of its whole store: no listing, and it holds whatever the session finds later
      this.storeBloomSent = true
      this.nextBloomAt = Infinity
      this.backgroundHintWalk = this.hinted(options).then(() => {}, () => {})
      this.counters.bloomBytesSent += store.bytes.byteLength
      const wants = this.frontier.wants()
      this.counters.statusesSent++
      return { type: 'pull', roots: this.roots, wants: wants.length <= this.maxCids ? wants : [], bloom: store }
    }
    const storeItems = await this.storeItems(options)
    if (storeItems != null) {
      // the Bloom needs no hint walk, but the walk still spares later ones: it runs while the request travels
      this.backgroundHintWalk = this.hinted(options).then(() => {}, () => {})
    }
    const lists = storeItems != null ? [storeItems] : [[...this.frontier.held()], ...await this.hintedLists(options)]
    const bloom = await this.bloomOf(lists, options)
    // a Bloom of the whole store already holds whatever the session finds later
    this.nextBloomAt = storeItems != null ? Infinity : Math.max(1, countOf(lists) * 2)
    const wants = this.frontier.wants()
    this.counters.statusesSent++
    return { type: 'pull', roots: this.roots, wants: wants.length <= this.maxCids ? wants : [], bloom }
  }

  /**
   * A push server's first status, sent before any block arrives: a Bloom of
   * what it holds under the roots and the hints, or a cleared Bloom when it
   * holds nothing there (so a client's hint Bloom that was wrong is dropped at
   * once). It opens the pushing client's window.
   */
  async pushGreeting (options: { signal?: AbortSignal } = {}): Promise<StatusMessage> {
    await this.hinted(options)
    return await this.rootsStatus(options) ?? await this.bloomStatus(true, options) ?? this.emptyStatus(null)
  }

  /** A status with no wants: `null` clears the sender's Bloom, undefined leaves it */
  private emptyStatus (bloom?: null): StatusMessage {
    this.counters.statusesSent++
    return bloom === null ? { type: 'status', wants: [], bloom } : { type: 'status', wants: [] }
  }

  /**
   * Once, when the session announces roots and holds them all: a status
   * saying so, with a Bloom of what it holds that the sender cannot know
   */
  private async rootsStatus (options: { signal?: AbortSignal } = {}): Promise<StatusMessage | undefined> {
    if (!this.rootsDue()) {
      return undefined
    }
    this.rootsAnnounced = true
    // a Bloom already sent that holds everything found since (a store Bloom,
    // or one whose hinted DAGs, trusted whole, hold every block found since)
    // stays in place: no bb, and so no Bloom that has the sender sync before
    // its leaves. Otherwise a Bloom, or a clear when nothing is held
    const covered = this.storeBloomSent || this.frontier.foundOutsideWhole === this.outsideAtLastBloom
    const status = covered ? this.emptyStatus() : await this.bloomStatus(true, options) ?? this.emptyStatus(null)
    status.rootsHeld = true
    return status
  }

  /**
   * Takes one message from the sender.
   *
   * @throws {HashMismatchError | UnsupportedHashError | UnknownCodecError | InvalidBlockError} for a wanted block that fails verification
   * @throws {BlocksNotAvailableError | SessionRefusedError | RemoteError} when the sender sent an error frame
   * @throws {ProtocolError} for a message a receiver does not expect
   */
  async receive (message: Message, options: { signal?: AbortSignal } = {}): Promise<ReceiverStep> {
    if (message.type !== 'error' && !this.headerSeen && message.type !== 'header') {
      throw new ProtocolError(`The sender's first frame must be a CAR header, not a ${message.type} frame`)
    }
    switch (message.type) {
      case 'header':
        this.checkHeader(message.roots)
        return { replies: [] }
      case 'block':
        return this.receiveBlock(message.cid, message.bytes, options)
      case 'idle':
        return { replies: await this.afterIdle(message.statuses) }
      case 'sync':
        return { replies: await this.afterSync(message.statuses, options) }
      case 'missing':
        this.onMissing(message.cids)
        return { replies: [] }
      case 'error':
        throw remoteError(message.code, message.message, message.cids)
      default:
        throw new ProtocolError(`A receiver does not expect a ${message.type} message`)
    }
  }

  /** The sender's CAR header comes once and lists exactly the session's roots, in order (PROTOCOL.md R-4) */
  private checkHeader (roots: CID[]): void {
    if (this.headerSeen) {
      throw new ProtocolError('The sender wrote a second CAR header')
    }
    this.headerSeen = true
    if (roots.length !== this.roots.length || roots.some((root, i) => !root.equals(this.roots[i]))) {
      throw new ProtocolError('The CAR header does not list the session\'s roots')
    }
  }

  private async receiveBlock (cid: CID, bytes: Uint8Array, options: { signal?: AbortSignal }): Promise<ReceiverStep> {
    const maxStoredBytes = this.init.maxStoredBytes ?? Infinity
    if (this.counters.bytesStored + bytes.byteLength > maxStoredBytes && this.frontier.isWanted(cid)) {
      throw new LimitExceededError(`The session may store at most ${maxStoredBytes} bytes`)
    }
    const wantsBefore = this.frontier.wantCount
    const outcome = await this.storeBlock(cid, bytes, options)
    this.counters.blocksReceived++
    this.counters.blockBytesReceived += bytes.byteLength
    if (outcome === 'stored') {
      // each new want costs quota too, so links cannot be pushed for free
      const newWants = Math.max(0, this.frontier.wantCount - wantsBefore + 1)
      this.counters.bytesStored += bytes.byteLength + newWants * PUSH_QUOTA_BYTES_PER_LINK
      if (this.counters.bytesStored > maxStoredBytes) {
        throw new LimitExceededError(`The session may store at most ${maxStoredBytes} bytes (links counted)`)
      }
      this.init.onProgress?.()
      this.init.onBlockStored?.(cid, bytes)
    } else if (outcome === 'duplicate') {
      this.counters.duplicateBlocks++
      // an honest sender sends each block at most once, plus wants it is asked for again
      if (this.counters.duplicateBlocks > this.frontier.holdCount + this.maxCids) {
        throw new ProtocolError('The sender keeps sending blocks the receiver already holds')
      }
    } else {
      this.counters.unrequestedBlocks++
      if (this.counters.unrequestedBlocks > (this.init.maxUnrequestedBlocks ?? DEFAULT_MAX_UNREQUESTED_BLOCKS)) {
        throw new ProtocolError(`The sender sent ${this.counters.unrequestedBlocks} blocks the session never asked for, the last ${cid}`)
      }
    }

    const replies: Message[] = []
    if (this.complete) {
      await this.frontier.settle()
      replies.push(...this.doneOnce())
    } else {
      // most blocks call for no status: no await then, so a block is taken in one go as before Blooms were built in slices
      const status = this.rootsDue() || this.bloomDue(false) ? await this.rootsStatus(options) ?? await this.bloomStatus(false, options) : undefined
      if (status != null) {
        replies.push(status)
      }
    }
    return { replies, block: { cid, bytes: bytes.byteLength, outcome } }
  }

  /** Hands a received block to the frontier (a pool member takes turns with the others) */
  protected async storeBlock (cid: CID, bytes: Uint8Array, options: { signal?: AbortSignal }): Promise<ReceiveOutcome> {
    if (this.backgroundHintWalk != null) {
      // what it finds whole, the frontier need not walk again
      await this.backgroundHintWalk
      this.backgroundHintWalk = undefined
    }
    return this.frontier.receive(cid, bytes, { ...options, offline: true })
  }

  /** The sender cannot send `cids`: they stop being wants */
  protected onMissing (cids: CID[]): void {
    this.frontier.markUnavailable(cids)
  }

  /** What to answer an idle with: done, nothing (a status in flight), or a straggler round */
  protected async afterIdle (statusesSeen: number): Promise<Message[]> {
    const early = await this.idleVerdict(statusesSeen)
    if (early != null) {
      return early
    }
    if (this.frontier.wantCount === 0) {
      // everything the sender has is here; what is left it does not hold
      await this.frontier.settle()
      const missing = this.frontier.missing()
      throw new BlocksNotAvailableError(`The sender does not hold ${missing.length} block(s), including ${missing[0]}`, missing)
    }
    return [this.stragglerRound(this.frontier.wants().slice(0, this.maxCids))]
  }

  /**
   * What an idle calls for before anything is asked: the done frame when
   * the session is complete, nothing while a status is still on its way to
   * the sender; undefined when the sender has all it was asked for and waits
   *
   * @throws {ProtocolError} when the sender claims to have read more statuses than were sent
   */
  protected async idleVerdict (statusesSeen: number): Promise<Message[] | undefined> {
    if (this.complete) {
      await this.frontier.settle()
      return this.doneOnce()
    }
    if (statusesSeen < this.counters.statusesSent) {
      // the sender has not read our latest status yet: what we miss may still be on its way
      return []
    }
    if (statusesSeen > this.counters.statusesSent) {
      throw new ProtocolError(`The sender claims to have read ${statusesSeen} status frames; ${this.counters.statusesSent} were sent`)
    }
    return undefined
  }

  /**
   * Every want asked for in the last round must have arrived once the sender is idle
   *
   * @throws {ProtocolError} when one has not (the sender ignored it)
   */
  protected checkAnswered (): void {
    const ignored = this.lastAsked.find(cid => this.frontier.isWanted(cid))
    if (ignored != null) {
      throw new ProtocolError(`The sender went idle without sending ${ignored}, which the receiver asked for`)
    }
  }

  /**
   * The status of a straggler round asking for `wants` (at most maxCids)
   *
   * @throws {ProtocolError} when a want of the last round has not arrived (the sender ignored it)
   * @throws {LimitExceededError} when the rounds are used up
   */
  protected stragglerRound (wants: CID[]): StatusMessage {
    this.checkAnswered()
    if (this.counters.stragglerRounds >= (this.init.maxStragglerRounds ?? DEFAULT_MAX_STRAGGLER_ROUNDS)) {
      throw new LimitExceededError(`Still missing ${this.frontier.wantCount} block(s) after ${this.counters.stragglerRounds} straggler rounds`)
    }
    this.counters.stragglerRounds++
    return this.statusAsking(wants)
  }

  /** A status asking for `wants`, counted as sent; the sender's next idle must have answered them */
  protected statusAsking (wants: CID[]): StatusMessage {
    this.counters.statusesSent++
    this.lastAsked = wants
    return { type: 'status', wants }
  }

  /** A sync asks for a Bloom of everything held that the sender cannot know, before it sends leaves */
  private async afterSync (statusesSeen: number, options: { signal?: AbortSignal }): Promise<Message[]> {
    if (statusesSeen > this.counters.statusesSent) {
      throw new ProtocolError(`The sender claims to have read ${statusesSeen} status frames; ${this.counters.statusesSent} were sent`)
    }
    return [await this.bloomStatus(true, options) ?? this.emptyStatus(null)]
  }

  /** The done frame, unless it was written already: to send once the receiver is complete */
  doneOnce (): Message[] {
    if (this.doneSent) {
      return []
    }
    this.doneSent = true
    return [{ type: 'done', duplicates: this.counters.duplicateBlocks }]
  }

  /**
   * A status with a Bloom of the held blocks the sender cannot know about,
   * sent each time their number has doubled, so all Bloom bytes together stay
   * under twice the last one.
   */
  private async bloomStatus (evenIfNotDoubled: boolean, options: { signal?: AbortSignal }): Promise<StatusMessage | undefined> {
    if (!this.bloomDue(evenIfNotDoubled)) {
      return undefined
    }
    const store = this.init.storeBloom
    if (store != null) {
      // it already holds whatever the session finds in the store: sent once, and again only for a sync
      this.storeBloomSent = true
      this.counters.statusesSent++
      this.counters.bloomBytesSent += store.bytes.byteLength
      return { type: 'status', wants: [], bloom: store }
    }
    const found = this.frontier.foundHeld()
    const count = found.length + this.hintedCount
    this.nextBloomAt = count * 2
    this.outsideAtLastBloom = this.frontier.foundOutsideWhole
    // counted before it is built: it is a reply, written before any status a
    // CAR Pool member is given meanwhile (the runner sends those after the
    // replies), and the sender counts them in that order
    this.counters.statusesSent++
    return { type: 'status', wants: [], bloom: await this.bloomOf([this.hintedHeld, ...this.recordedHints, found], options) }
  }

  /** True when the roots-held status is due: the session announces roots, has not, and holds them all */
  private rootsDue (): boolean {
    return this.init.announceRoots === true && !this.rootsAnnounced && !this.roots.some(root => this.frontier.isWanted(root))
  }

  /** True when `bloomStatus` has a status to give */
  private bloomDue (evenIfNotDoubled: boolean): boolean {
    if (this.init.storeBloom != null) {
      return !this.storeBloomSent || evenIfNotDoubled
    }
    const count = this.frontier.foundHeld().length + this.hintedCount
    return count > 0 && (count >= this.nextBloomAt || evenIfNotDoubled)
  }

  private async bloomOf (lists: ReadonlyArray<readonly CID[]>, options: { signal?: AbortSignal }): Promise<BloomFilter | undefined> {
    if (countOf(lists) === 0) {
      return undefined
    }
    // the Bloom of one recorded DAG alone is the record's, built once for every session
    const nonEmpty = lists.filter(list => list.length > 0)
    const recorded = nonEmpty.length === 1 ? this.recordedHints.indexOf(nonEmpty[0]) : -1
    const shared = recorded < 0 ? undefined : await this.init.completeRecord?.bloomUnder(this.recordedRoots[recorded], MAX_SENT_BLOOM_BYTES, options)
    const bloom = shared ?? await bloomOfListsInSlices(lists, MAX_SENT_BLOOM_BYTES, options)
    this.counters.bloomBytesSent += bloom.bytes.byteLength
    return bloom
  }

  /** How many CIDs the hints gave: walked, and listed by the record */
  private get hintedCount (): number {
    return this.hintedHeld.length + countOf(this.recordedHints)
  }

  /** The held blocks under the hints: the walk's and the record's lists */
  private async hintedLists (options: { signal?: AbortSignal }): Promise<Array<readonly CID[]>> {
    await this.hinted(options)
    return [this.hintedHeld, ...this.recordedHints]
  }

  /** Every block in a small store, or undefined when the store is large or cannot list itself */
  private async storeItems (options: { signal?: AbortSignal }): Promise<CID[] | undefined> {
    const limit = this.init.smallStoreBlocks ?? DEFAULT_SMALL_STORE_BLOCKS
    if (limit <= 0 || this.init.blockstore.getAll == null) {
      return undefined
    }
    const cids: CID[] = []
    for await (const { cid } of this.init.blockstore.getAll(options)) {
      if (cids.length === limit) {
        return undefined
      }
      cids.push(cid)
    }
    return cids
  }

  /** The held blocks under the hint roots (walked once) */
  private async hinted (options: { signal?: AbortSignal }): Promise<CID[]> {
    this.hintWalking ??= this.walkHints(options)
    return this.hintWalking
  }

  private async walkHints (options: { signal?: AbortSignal }): Promise<CID[]> {
    const hints = this.init.hints ?? []
    if (hints.length === 0) {
      return this.hintedHeld
    }
    // hinted DAGs the node recorded whole need no walk: their lists are trusted as they are
    const unrecorded: CID[] = []
    for (const hint of hints) {
      const record = this.init.completeRecord
      // a delete since the entry was read (a forget) ends the trust: links into the DAG are looked up again
      const generation = record?.generation
      const cids = await record?.cidsUnder(hint, options)
      const keys = cids != null && cids.length <= (this.init.maxHintBlocks ?? Infinity) ? await record?.keysUnder(hint, options) : undefined
      if (cids == null || keys == null) {
        unrecorded.push(hint)
        continue
      }
      // shared with every session that hints the DAG: nothing to keep per block
      this.recordedHints.push(cids)
      this.recordedRoots.push(hint)
      this.frontier.trustWholeSet(keys, { held: () => record?.generation === generation })
      this.counters.recordedHintBlocks += cids.length
    }
    if (unrecorded.length === 0) {
      return this.hintedHeld
    }
    const walk = async (): Promise<void> => {
      let whole = true
      try {
        for await (const cid of walkHeldCids(this.init.blockstore, unrecorded, { ...options, offline: true, linkReader: this.init.linkReader, onMissing: () => { whole = false }, maxBlocks: this.init.maxHintBlocks })) {
          if (!this.keepHinted(1)) {
            // the node's held budget is used up: the hints give way to what the session must keep (its frontier)
            this.dropHinted()
            return
          }
          this.hintedHeld.push(cid)
        }
      } catch (err) {
        // hints only save bytes: a hinted DAG too large to walk is used as far as it was walked
        if ((err as Error).name !== LimitExceededError.name) {
          throw err
        }
        whole = false
      }
      if (whole && this.keepHinted(this.hintedHeld.length)) {
        // every block under the hints is held: a link into them needs no walk of its own
        await this.frontier.trustWhole(this.hintedHeld, options)
      }
    }
    await (this.init.walkBudget?.run(walk, options.signal) ?? walk())
    return this.hintedHeld
  }

  /** Forgets what the hint walk found and gives back what it took: a session without hints */
  private dropHinted (): void {
    this.hintedHeld = []
    this.init.heldBudget?.release(this.hintsKept)
    this.hintsKept = 0
  }

  /** Takes `count` from the node-wide held budget, if there is one; false when it does not fit */
  private keepHinted (count: number): boolean {
    if (this.init.heldBudget == null) {
      return true
    }
    if (!this.init.heldBudget.tryTake(count)) {
      return false
    }
    this.hintsKept += count
    return true
  }

  /** Most CIDs listed in one status */
  protected get maxCids (): number {
    return this.init.maxCidsPerMessage ?? DEFAULT_MAX_CIDS_PER_MESSAGE
  }
}

/** Errors made from the remote peer's error frames: they are not echoed back */
const remoteErrors = new WeakSet<Error>()

/** True for an error made by {@link remoteError} */
export function isRemoteError (err: Error): boolean {
  return remoteErrors.has(err)
}

/** The typed error for an error frame from the remote peer */
export function remoteError (code: string, message: string, cids: CID[]): Error {
  let err: Error
  switch (code) {
    case 'not-found':
      err = new BlocksNotAvailableError(`The remote peer does not hold every block: ${message}`, cids)
      break
    case 'refused':
      err = new SessionRefusedError(`The remote peer refused the session: ${message}`)
      break
    default:
      err = new RemoteError(`The remote peer ended the session (${code}): ${message}`, code)
  }
  remoteErrors.add(err)
  return err
}

/** How many CIDs the lists hold together */
function countOf (lists: ReadonlyArray<readonly CID[]>): number {
  let count = 0
  for (const list of lists) {
    count += list.length
  }
  return count
}
