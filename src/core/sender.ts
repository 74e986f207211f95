import * as raw from 'multiformats/codecs/raw'
import { DEFAULT_MAX_CIDS_PER_MESSAGE } from '../constants.ts'
import { LimitExceededError, ProtocolError } from '../errors.ts'
import { Yielder } from './budget.ts'
import { cidKey, cidOfKey } from './cid-key.ts'
import { LinkReader } from './links.ts'
import { DagMembership } from './membership.ts'
import { bloomItem } from './messages.ts'
import { Wakeup } from './signal.ts'
import { walkDag } from './walk.ts'
import type { BlockSource } from './blocks.ts'
import type { BloomFilter } from './bloom/bloom-filter.ts'
import type { Budget } from './budget.ts'
import type { Message, PullMessage } from './messages.ts'
import type { Shard } from './pool/shard.ts'
import type { CID } from 'multiformats/cid'

/** Node-wide budgets a sender charges (all optional: a session alone needs none) */
export interface SenderBudgets {
  /** Wants queued from status frames, node-wide */
  queuedWants?: Budget
  /** Bytes of blocks read ahead of the stream, node-wide */
  readAheadBytes?: Budget
  /** CIDs indexed to check wants, node-wide */
  indexedCids?: Budget
  /** Concurrent local walks that check wants, node-wide */
  localWalks?: Budget
  /** Bytes of Bloom filters held, node-wide */
  bloomBytes?: Budget
}

/** What a {@link SenderSession} sends, where it reads blocks from, and its limits */
export interface SenderSessionInit {
  /** Where the DAG's blocks are read from (reads pass `offline: true`) */
  blockstore: BlockSource
  /** The roots of the DAG, sent in the CAR header */
  roots: CID[]
  /**
   * When serving a pull: the client's request, whose wants (or, when it has
   * none, the roots) are sent first, skipping what its Bloom holds. It counts
   * as the first status read.
   */
  request?: PullMessage
  /**
   * A Bloom of blocks the receiver is believed to hold (for a push: the
   * blocks under the hints), used until the receiver's own first Bloom
   * arrives. A wrong belief costs straggler rounds, never a missing block.
   */
  bloom?: BloomFilter
  /** Reads the links of blocks, for the walk and to check that wants lie in the DAG; default a LinkReader with the built-in codecs */
  linkReader?: LinkReader
  /** Block reads kept in flight ahead of the stream */
  readAhead?: number
  /** Bytes of blocks read ahead of the stream, at most; default 4 MiB */
  maxReadAheadBytes?: number
  /** Blocks larger than this are not sent; the session fails instead */
  maxBlockSize?: number
  /**
   * Block bytes that may be sent before the receiver's status saying it
   * holds the roots (and what it holds under them): the cold call of a push.
   * The roots and wanted blocks are always sent. After that status there is
   * no limit. Default: no limit
   */
  coldCallBytes?: number
  /**
   * Send no block before the receiver's first status: a push resuming one
   * that broke off, whose server's first Bloom covers what already arrived
   */
  awaitFirstStatus?: boolean
  /** Most wants queued from status frames before the session stops reading; default DEFAULT_MAX_CIDS_PER_MESSAGE */
  maxQueuedWants?: number
  /** Most CIDs in one `missing` message; default DEFAULT_MAX_CIDS_PER_MESSAGE */
  maxCidsPerMessage?: number
  /** Most blocks one session may read to check wants; default no limit */
  maxCheckBlocks?: number
  /** Node-wide budgets the session charges; default none */
  budgets?: SenderBudgets
  /** Called when the session moves forward: a block goes out or new wants arrive */
  onProgress?(): void
}

/** What a sender has done so far */
export interface SenderCounters {
  /** Block frames sent */
  blocksSent: number
  /** Bytes of block data sent (CIDs and frame prefixes not counted) */
  blockBytesSent: number
  /** Passes over the DAG: the first, plus one for each status that asked for stragglers */
  passes: number
  /** Status frames read from the receiver */
  statusesReceived: number
  /** Idle frames sent: each acknowledges the statuses read so far */
  idles: number
  /** Blocks the receiver said (in its done frame) it already held */
  duplicatesReported: number
  /** Sync frames sent: times the sender waited for a Bloom before sending leaves */
  syncs: number
}

/** The fewest bytes a want takes in a status frame: tag 42, a byte string header, 0x00 and a 4-byte CID */
const MIN_WANT_BYTES = 8

/** Default bytes of blocks a session reads ahead of the stream */
const DEFAULT_MAX_READ_AHEAD_BYTES = 4 * 1024 * 1024

/**
 * The sending side of a CAR Mirror session, free of any transport. Feed it
 * the receiver's messages with `receive`; take the messages to send from
 * `messages()`: a CAR header, then blocks, with a `missing` frame for blocks
 * it cannot send and an `idle` frame each time it has sent all it was asked for.
 *
 * Every wanted CID in the roots' DAG is sent; below them, blocks in the
 * receiver's Bloom (and everything only reachable through them) are skipped,
 * as are blocks this session already sent. A newer Bloom from a status frame
 * applies from the next block on.
 *
 * @example
 *
 * ```ts
 * const sender = new SenderSession({ blockstore, roots: [root], bloom })
 * for await (const message of sender.messages()) {
 *   await write(message) // meanwhile: await sender.receive(messageFromReceiver)
 * }
 * ```
 */
export class SenderSession {
  /** The roots of the DAG, from `init`; the CAR header lists them */
  readonly roots: CID[]
  /** What the session has done so far, updated as it runs */
  readonly counters: SenderCounters = { blocksSent: 0, blockBytesSent: 0, passes: 0, statusesReceived: 0, idles: 0, duplicatesReported: 0, syncs: 0 }
  private readonly init: SenderSessionInit
  private bloom?: BloomFilter
  private readonly sent = new Set<string>()
  /** What is known to lie in the DAG under the roots */
  private readonly membership: DagMembership
  /** Queued wants as compact keys: a decoded CID object weighs ten times more */
  private queued: string[]
  private readonly queuedKeys = new Set<string>()
  private finished = false
  /** Set once the receiver said it holds the roots: the cold call is over */
  private rootsAcknowledged = false
  /** Status frames with a Bloom, a push's greeting left out: the receiver is finding blocks it holds */
  private bloomsReceived = 0
  private readonly wakeup = new Wakeup()
  /** Notified when the queue is taken: a reader waiting for room may go on */
  private readonly room = new Wakeup()
  private readonly yielder = new Yielder()
  private waitingForPeer = false
  private closed = false
  /** Set when a root is not in the local store: the receiver can never hold every root, so no `rh` will come */
  private rootMissing = false
  /** Room taken in the node's want queue for the next message */
  private reserved = 0
  /** Wants of the pass under way, still charged to the queued-wants budget */
  private inPass = 0
  /** Most wants the queue ever holds: what a receiver that names more has not waited for */
  private readonly queueCap: number
  /** The receiver asked for the wants' blocks only, nothing below them */
  private readonly shallow: boolean
  /** CAR Pool: the buckets whose raw leaves this sender sends (all when unset) */
  private shard?: Shard

  constructor (init: SenderSessionInit) {
    this.init = init
    this.roots = init.roots
    this.membership = new DagMembership({
      blockstore: init.blockstore,
      roots: init.roots,
      linkReader: init.linkReader,
      maxBlocks: init.maxCheckBlocks,
      indexBudget: init.budgets?.indexedCids,
      walkBudget: init.budgets?.localWalks,
      yielder: this.yielder
    })
    this.shallow = init.request?.depthLimit === 0
    this.shard = init.request?.shard
    this.setBloom(init.request?.bloom ?? init.bloom)
    const wants = init.request?.wants ?? []
    this.queued = []
    const first = wants.length > 0 ? wants : init.roots
    // the queue may hold the first wants (or every root), or a full queue, and one more list
    this.queueCap = Math.max(this.maxQueuedWants, first.length) + this.maxCids
    this.enqueueKeys(first.map(cidKey))
    this.counters.statusesReceived = init.request != null ? 1 : 0
  }

  /** True once the receiver said it is done */
  get done (): boolean {
    return this.finished
  }

  /** True while the session works locally (reads or walks its store) rather than waiting for the receiver */
  get busy (): boolean {
    return !this.waitingForPeer && !this.finished && !this.closed
  }

  /** True while as many wants are queued as the session takes: stop reading until they are taken */
  get wantsFull (): boolean {
    return this.queued.length >= this.maxQueuedWants || this.init.budgets?.queuedWants?.exhausted === true
  }

  /**
   * Waits until the session takes more wants: as many as a message of
   * `frameBytes` can name (the runner decodes nothing meanwhile)
   */
  async roomForWants (signal?: AbortSignal, frameBytes: number = Infinity): Promise<void> {
    while (!this.takeRoomForWants(frameBytes)) {
      if (this.queued.length < this.maxQueuedWants) {
        this.init.budgets?.queuedWants?.nextRelease(signal).then(() => { this.room.notify() }, () => {})
      }
      await this.room.wait(signal)
    }
  }

  /**
   * Waits until the session's own queue takes more wants (or the session
   * must read anyway: see takeRoomForWants); room in the node's queue is
   * taken later, by roomForWants
   */
  async roomInQueue (signal?: AbortSignal): Promise<void> {
    while (!this.closed && !this.finished && !this.mustRead && this.queued.length >= this.maxQueuedWants) {
      await this.room.wait(signal)
    }
  }

  /** True while the sender waits for its receiver's word in the middle of a pass: it must read it */
  private get mustRead (): boolean {
    return this.waitingForPeer && (this.inPass > 0 || this.queued.length > 0)
  }

  /**
   * Reserves room in the node's queue for the wants a message of
   * `frameBytes` can name, if there is some; true when the message may be
   * read now (roomForWants without waiting)
   */
  takeRoomForWants (frameBytes: number = Infinity): boolean {
    if (this.closed || this.finished) {
      return true
    }
    // a sender that waits for the receiver's word in the middle of a pass (a
    // sync's answer, the roots' acknowledgement, a cold call's first status)
    // must read it, or both would wait forever, even past the node's budget:
    // enqueueKeys caps what its receiver can queue meanwhile at one list
    // beyond the session's limit. Between passes it holds nothing of the
    // node's queue and waits for room like any other, while the sessions
    // that hold the room finish their passes or are evicted.
    if (this.mustRead) {
      return true
    }
    if (this.queued.length >= this.maxQueuedWants) {
      return false
    }
    const budget = this.init.budgets?.queuedWants
    if (budget == null || this.reserved > 0) {
      return true
    }
    const room = Math.max(1, Math.min(this.maxCids, budget.limit, Math.ceil(frameBytes / MIN_WANT_BYTES)))
    if (!budget.tryTake(room)) {
      return false
    }
    this.reserved = room
    return true
  }

  /**
   * Takes a message from the receiver: a status (new wants, maybe a newer
   * Bloom) or done. Returns how many new wants it queued.
   *
   * @throws {ProtocolError} for a message a sender does not expect, or an identity CID as a want
   * @throws {LimitExceededError} when a Bloom goes over the node's Bloom budget
   */
  async receive (message: Message, options: { signal?: AbortSignal } = {}): Promise<number> {
    let added = 0
    switch (message.type) {
      case 'status': {
        // the wants are read first (a long list in slices), then the whole
        // status takes effect at once: an idle never acknowledges a status
        // whose wants are not queued yet, and one status is one pass
        const keys = await this.wantKeys(message.wants, options.signal)
        this.counters.statusesReceived++
        if (message.bloom !== undefined) {
          this.setBloom(message.bloom ?? undefined)
          // a push's greeting is its first Bloom, as a pull's request is: only
          // a later one shows blocks the receiver found as the pass went on
          if (message.bloom != null && this.counters.statusesReceived > 1) {
            this.bloomsReceived++
          }
        }
        if (message.rootsHeld === true) {
          this.rootsAcknowledged = true
        }
        if (message.shard != null) {
          this.shard = message.shard
        }
        // the room reserved for this message is given back before its wants
        // are charged, so the node's count never holds them twice
        const reserved = this.reserved
        this.releaseReservation()
        // a status read without room because its receiver had closed its end
        // (a done may follow) queues no wants that do not fit in the node's
        // queue: the receiver can send nothing more, so the session ends at
        // its done or, without one, at the end of the stream
        const budget = this.init.budgets?.queuedWants
        added = budget == null || reserved > 0 || this.mustRead || budget.fits(keys.length) ? this.enqueueKeys(keys) : 0
        if (added > 0) {
          // it has work now (waitForPeer says so again if it still waits)
          this.waitingForPeer = false
          this.init.onProgress?.()
        }
        break
      }
      case 'done':
        this.finished = true
        this.counters.duplicatesReported = message.duplicates
        break
      default:
        throw new ProtocolError(`A sender does not expect a ${message.type} message`)
    }
    this.wakeup.notify()
    return added
  }

  /** Gives back what the session holds of the node-wide budgets; call once when the session ends */
  close (): void {
    if (this.closed) {
      return
    }
    this.closed = true
    this.releaseReservation()
    this.endPass()
    this.setBloom(undefined)
    this.init.budgets?.queuedWants?.release(this.queued.length)
    this.queued = []
    this.queuedKeys.clear()
    this.membership.release()
    this.wakeup.notify()
    this.room.notify()
  }

  /**
   * The messages to send, in order, until the receiver is done. Blocks it
   * does not hold, or that lie outside the roots' DAG, are named in
   * `missing` frames; the receiver decides how the session ends.
   */
  async * messages (options: { signal?: AbortSignal } = {}): AsyncGenerator<Message, void, undefined> {
    yield { type: 'header', roots: this.roots }

    // the status count the last idle frame acknowledged: a status that
    // arrives while idle (a Bloom update) is acknowledged by another idle,
    // so the receiver knows nothing is in flight
    let acknowledged = -1
    while (!this.finished && !this.closed) {
      if (this.queued.length === 0) {
        if (acknowledged !== this.counters.statusesReceived) {
          acknowledged = this.counters.statusesReceived
          this.counters.idles++
          yield { type: 'idle', statuses: acknowledged }
        }
        await this.waitForPeer(options.signal)
        continue
      }

      // take the queue before checking it: statuses that arrive meanwhile start a new queue
      // its CIDs stay charged to the node's queued-wants budget until the pass ends
      const batch = this.queued.map(cidOfKey)
      this.queued = []
      this.queuedKeys.clear()
      this.inPass = batch.length
      this.room.notify()
      const { inside, outside } = await this.membership.split(batch, options)
      this.counters.passes++
      const missing = [...outside]
      yield * this.pass(inside, missing, options.signal)
      this.endPass()

      if (missing.length > 0 && !this.finished) {
        const unique = [...new Map(missing.map(cid => [cidKey(cid), cid])).values()]
        for (let i = 0; i < unique.length; i += this.maxCids) {
          yield { type: 'missing', cids: unique.slice(i, i + this.maxCids) }
        }
      }
    }
  }

  private get maxCids (): number {
    return this.init.maxCidsPerMessage ?? DEFAULT_MAX_CIDS_PER_MESSAGE
  }

  private get maxQueuedWants (): number {
    return this.init.maxQueuedWants ?? this.maxCids
  }

  /**
   * The keys of a status's wants not queued yet, each once, in slices
   *
   * @throws {ProtocolError} for an identity CID
   */
  private async wantKeys (wants: CID[], signal?: AbortSignal): Promise<string[]> {
    const keys = new Set<string>()
    for (let i = 0; i < wants.length; i++) {
      if (i % 1024 === 1023) {
        await this.yielder.maybeYield(signal)
      }
      const want = wants[i]
      if (LinkReader.inlineBytes(want) != null) {
        throw new ProtocolError(`Want ${want} is an identity CID: its data is in the CID`)
      }
      const key = cidKey(want)
      if (!this.queuedKeys.has(key)) {
        keys.add(key)
      }
    }
    return [...keys]
  }

  /**
   * Queues the keys not queued yet; returns how many
   *
   * @throws {LimitExceededError} when the queue would pass its cap
   */
  private enqueueKeys (keys: string[]): number {
    let added = 0
    try {
      for (const key of keys) {
        if (this.queuedKeys.has(key)) {
          continue
        }
        if (this.queued.length >= this.queueCap) {
          // an honest receiver names wants only once the sender is idle, one list at a time
          throw new LimitExceededError(`The receiver asked for more than ${this.queueCap} blocks the sender has not taken yet`)
        }
        this.queuedKeys.add(key)
        this.queued.push(key)
        added++
      }
    } finally {
      // what was queued is charged, even when the cap stopped the list part way
      // (close() gives back the whole queue)
      this.init.budgets?.queuedWants?.force(added)
    }
    return added
  }

  /** Gives back the budget the wants of the pass that ended held */
  private endPass (): void {
    this.init.budgets?.queuedWants?.release(this.inPass)
    this.inPass = 0
  }

  private releaseReservation (): void {
    if (this.reserved > 0) {
      this.init.budgets?.queuedWants?.release(this.reserved)
      this.reserved = 0
    }
  }

  /** Replaces the Bloom in use, keeping the node-wide Bloom budget exact */
  private setBloom (bloom: BloomFilter | undefined): void {
    const budget = this.init.budgets?.bloomBytes
    if (this.bloom != null) {
      budget?.release(this.bloom.bytes.byteLength)
      this.bloom = undefined
    }
    if (bloom != null) {
      budget?.charge(bloom.bytes.byteLength)
      this.bloom = bloom
    }
  }

  private async waitForPeer (signal?: AbortSignal): Promise<void> {
    this.waitingForPeer = true
    this.room.notify()
    try {
      await this.wakeup.wait(signal)
    } finally {
      this.waitingForPeer = false
    }
  }

  private async * pass (wants: CID[], missing: CID[], signal?: AbortSignal): AsyncGenerator<Message, void, undefined> {
    const mustSend = new Set(wants.map(cid => cidKey(cid)))
    const skip = (cid: CID, depth?: number, key: string = cidKey(cid)): boolean => {
      if (this.finished || this.closed) {
        return true
      }
      if (this.shard?.sends(cid) === false) {
        // a sharded pull (CAR Pool) leaves out the raw leaves of other
        // buckets, wants included: a status that moved buckets elsewhere withdrew them (S-15)
        return true
      }
      // a shallow pull (`dl: 0`) asked for the wants' own blocks only
      return !mustSend.has(key) && (this.shallow || this.sent.has(key) || this.bloom?.has(bloomItem(cid)) === true)
    }
    // raw leaves wait until every interior block of the pass is out: interior
    // blocks are small and show the receiver which subgraphs it holds
    const leaves = new Map<string, CID>()
    const skipOrDefer = (cid: CID, depth: number, key: string): boolean => {
      if (skip(cid, depth, key)) {
        return true
      }
      if (cid.code === raw.code && !mustSend.has(key)) {
        leaves.set(key, cid)
        return true
      }
      return false
    }

    yield * this.send(wants, skipOrDefer, skip, mustSend, missing, signal)
    if (leaves.size === 0 || this.finished) {
      return
    }
    // a push without a cold call (no hints) first waits for the receiver to
    // say what it holds under the roots; with one, the leaves go out within
    // it at once (the hints held back what the receiver likely holds) and
    // admit() holds the rest until then
    while (!this.rootsAcknowledged && !this.rootMissing && this.init.coldCallBytes === 0 && !this.finished) {
      await this.waitForPeer(signal)
    }
    if (this.bloomsReceived > 0 && !this.finished) {
      // the receiver has been finding blocks it holds: ask for its whole Bloom before the leaves go out
      const seen = this.counters.statusesReceived
      this.counters.syncs++
      yield { type: 'sync', statuses: seen }
      while (this.counters.statusesReceived === seen && !this.finished) {
        await this.waitForPeer(signal)
      }
    }
    yield * this.send([...leaves.values()], skip, skip, mustSend, missing, signal)
  }

  /**
   * Whether a block that was read may go out now: a push's cold call waits
   * for the receiver's word before it sends more than its window (the roots
   * and wanted blocks always go), and a block the receiver turned out to hold
   * meanwhile is dropped with everything below it
   */
  private async admit (cid: CID, size: number, mustSend: Set<string>, skip: (cid: CID) => boolean, signal?: AbortSignal): Promise<boolean> {
    while (this.init.awaitFirstStatus === true && this.counters.statusesReceived === 0 && !this.finished) {
      await this.waitForPeer(signal)
    }
    if (mustSend.has(cidKey(cid)) && this.shard?.sends(cid) !== false) {
      return !this.finished
    }
    const window = this.init.coldCallBytes ?? Infinity
    if (this.rootMissing && !this.rootsAcknowledged && window !== Infinity) {
      // the receiver can never hold every root: it asks for what it wants from the roots it got
      return false
    }
    let waited = false
    while (!this.rootsAcknowledged && !this.rootMissing && this.counters.blockBytesSent + size > window && !this.finished) {
      waited = true
      await this.waitForPeer(signal)
    }
    if (!waited && this.init.awaitFirstStatus !== true && this.shard == null) {
      // nothing changed since the walk asked skip() just before reading it
      // (a pool's status may narrow the shard while a block is read ahead)
      return true
    }
    return !skip(cid)
  }

  private async * send (roots: CID[], walkSkip: (cid: CID, depth: number, key: string) => boolean, skip: (cid: CID) => boolean, mustSend: Set<string>, missing: CID[], signal?: AbortSignal): AsyncGenerator<Message, void, undefined> {
    const maxBlockSize = this.init.maxBlockSize ?? Infinity
    for await (const block of walkDag(this.init.blockstore, roots, {
      skip: walkSkip,
      admit: async (cid, _, size) => this.admit(cid, size, mustSend, skip, signal),
      onMissing: cid => {
        missing.push(cid)
        this.rootMissing ||= this.roots.some(root => root.equals(cid))
      },
      onLinks: async (cid, links) => { await this.membership.learn(cid, links, signal) },
      linkReader: this.init.linkReader,
      readAhead: this.init.readAhead,
      maxReadAheadBytes: this.init.maxReadAheadBytes ?? DEFAULT_MAX_READ_AHEAD_BYTES,
      readAheadBudget: this.init.budgets?.readAheadBytes,
      indexBudget: this.init.budgets?.indexedCids,
      yielder: this.yielder,
      offline: true,
      signal
    })) {
      if (this.finished || this.closed) {
        return
      }
      if (block.bytes.byteLength > maxBlockSize) {
        throw new LimitExceededError(`Block ${block.cid} has ${block.bytes.byteLength} bytes, more than the limit of ${maxBlockSize}`)
      }
      const key = cidKey(block.cid)
      mustSend.delete(key)
      this.sent.add(key)
      this.counters.blocksSent++
      this.counters.blockBytesSent += block.bytes.byteLength
      this.init.onProgress?.()
      yield { type: 'block', cid: block.cid, bytes: block.bytes }
    }
  }
}
