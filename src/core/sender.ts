import * as raw from 'multiformats/codecs/raw'
import { DEFAULT_MAX_QUEUED_WANTS } from '../constants.ts'
import { BlocksNotAvailableError, LimitExceededError, ProtocolError } from '../errors.ts'
import { bloomItem } from './messages.ts'
import { Wakeup } from './signal.ts'
import { walkDag } from './walk.ts'
import type { BlockSource } from './blocks.ts'
import type { BloomFilter } from './bloom/bloom-filter.ts'
import type { LinkReader } from './links.ts'
import type { Message, PullMessage } from './messages.ts'
import type { CID } from 'multiformats/cid'

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
  linkReader?: LinkReader
  /** Block reads kept in flight ahead of the stream */
  readAhead?: number
  /** Blocks larger than this are not sent; the session fails instead */
  maxBlockSize?: number
  /**
   * Block bytes that may be sent before the receiver's status saying it
   * holds the roots (and what it holds under them): the cold call of a push.
   * After that status there is no limit. Default: no limit
   */
  coldCallBytes?: number
  /** Most wants queued from status frames; default DEFAULT_MAX_QUEUED_WANTS */
  maxQueuedWants?: number
}

/** What a sender has done so far */
export interface SenderCounters {
  blocksSent: number
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

/** Most missing CIDs named in one error frame */
const MAX_REPORTED_MISSING = 256

/**
 * The sending side of a CAR Mirror session, free of any transport. Feed it
 * the receiver's messages with `receive`; take the messages to send from
 * `messages()`: a CAR header, then blocks, with an `idle` frame each time it
 * has sent all it was asked for.
 *
 * Every wanted CID is sent; below them, blocks in the receiver's Bloom (and
 * everything only reachable through them) are skipped, as are blocks this
 * session already sent. A newer Bloom from a status frame applies from the
 * next block on.
 *
 * @example
 *
 * ```ts
 * const sender = new SenderSession({ blockstore, roots: [root], bloom })
 * for await (const message of sender.messages()) {
 *   await write(message) // meanwhile: sender.receive(messageFromReceiver)
 * }
 * ```
 */
export class SenderSession {
  readonly roots: CID[]
  readonly counters: SenderCounters = { blocksSent: 0, blockBytesSent: 0, passes: 0, statusesReceived: 0, idles: 0, duplicatesReported: 0, syncs: 0 }
  private readonly init: SenderSessionInit
  private bloom?: BloomFilter
  private readonly sent = new Set<string>()
  /** CIDs known to be in the DAG under the roots: the roots and every link read */
  private readonly known = new Set<string>()
  private knownComplete = false
  private queued: CID[]
  private finished = false
  /** Set once the receiver said it holds the roots: the cold call is over */
  private rootsAcknowledged = false
  /** Status frames with a Bloom: the receiver is finding blocks it holds */
  private bloomsReceived = 0
  private readonly wakeup = new Wakeup()

  constructor (init: SenderSessionInit) {
    this.init = init
    this.roots = init.roots
    this.bloom = init.request?.bloom ?? init.bloom
    const wants = init.request?.wants ?? []
    this.queued = wants.length > 0 ? [...wants] : [...init.roots]
    this.counters.statusesReceived = init.request != null ? 1 : 0
    for (const root of init.roots) {
      this.known.add(root.toString())
    }
  }

  /** True once the receiver said it is done */
  get done (): boolean {
    return this.finished
  }

  /**
   * Takes a message from the receiver: a status (new wants, maybe a newer
   * Bloom) or done. An error message throws the matching error.
   */
  receive (message: Message): void {
    switch (message.type) {
      case 'status':
        this.counters.statusesReceived++
        if (message.bloom != null) {
          this.bloom = message.bloom
        }
        if (message.rootsHeld === true) {
          this.rootsAcknowledged = true
        }
        if (message.bloom != null) {
          this.bloomsReceived++
        }
        if (this.queued.length + message.wants.length > (this.init.maxQueuedWants ?? DEFAULT_MAX_QUEUED_WANTS)) {
          throw new LimitExceededError(`The receiver asked for more than ${this.init.maxQueuedWants ?? DEFAULT_MAX_QUEUED_WANTS} blocks at once`)
        }
        this.queued.push(...message.wants)
        break
      case 'done':
        this.finished = true
        this.counters.duplicatesReported = message.duplicates
        break
      default:
        throw new ProtocolError(`A sender does not expect a ${message.type} message`)
    }
    this.wakeup.notify()
  }

  /**
   * The messages to send, in order, until the receiver is done. Ends without
   * an error when the receiver sends done.
   *
   * @throws {BlocksNotAvailableError} after sending what it can, when blocks are missing locally
   */
  async * messages (options: { signal?: AbortSignal } = {}): AsyncGenerator<Message, void, undefined> {
    yield { type: 'header', roots: this.roots }

    // the status count the last idle frame acknowledged: a status that
    // arrives while idle (a Bloom update) is acknowledged by another idle,
    // so the receiver knows nothing is in flight
    let acknowledged = -1
    while (!this.finished) {
      if (this.queued.length === 0) {
        if (acknowledged !== this.counters.statusesReceived) {
          acknowledged = this.counters.statusesReceived
          this.counters.idles++
          yield { type: 'idle', statuses: acknowledged }
        }
        await this.wakeup.wait(options.signal)
        continue
      }

      const missing: CID[] = []
      const wants = await this.inDag(this.queued, missing, options.signal)
      this.queued = []
      this.counters.passes++
      yield * this.pass(wants, missing, options.signal)

      if (missing.length > 0 && !this.finished) {
        const named = missing.slice(0, MAX_REPORTED_MISSING)
        yield { type: 'error', code: 'not-found', message: `The sender does not hold ${missing.length} block(s), including ${named[0]}`, cids: named }
        throw new BlocksNotAvailableError(`Missing ${missing.length} block(s) locally, including ${named[0]}`, named)
      }
    }
  }

  /**
   * The wants that are in the DAG under the session's roots; the others go
   * to `missing`, so a receiver cannot read blocks outside what it was
   * allowed to pull. Unknown wants trigger one walk of the DAG's interior
   * blocks (raw leaves are not read) to learn every CID in it.
   */
  private async inDag (wants: CID[], missing: CID[], signal?: AbortSignal): Promise<CID[]> {
    const unknown = new Set(wants.map(cid => cid.toString()).filter(key => !this.known.has(key)))
    if (!this.knownComplete && unknown.size > 0) {
      const walk = walkDag(this.init.blockstore, this.roots, {
        skip: cid => cid.code === raw.code,
        onMissing: () => {},
        onLinks: this.learnLinks,
        linkReader: this.init.linkReader,
        readAhead: this.init.readAhead,
        offline: true,
        signal
      })
      this.knownComplete = true
      for await (const block of walk) {
        for (const link of block.links) {
          unknown.delete(link.toString())
        }
        if (unknown.size === 0) {
          this.knownComplete = false
          break
        }
      }
    }
    for (const key of [...unknown]) {
      if (this.known.has(key)) {
        unknown.delete(key)
      }
    }
    missing.push(...wants.filter(cid => unknown.has(cid.toString())))
    return wants.filter(cid => !unknown.has(cid.toString()))
  }

  private readonly learnLinks = (_: CID, links: CID[]): void => {
    for (const link of links) {
      this.known.add(link.toString())
    }
  }

  private async * pass (wants: CID[], missing: CID[], signal?: AbortSignal): AsyncGenerator<Message, void, undefined> {
    const mustSend = new Set(wants.map(cid => cid.toString()))
    const skip = (cid: CID): boolean => {
      if (this.finished) {
        return true
      }
      const key = cid.toString()
      return !mustSend.has(key) && (this.sent.has(key) || this.bloom?.has(bloomItem(cid)) === true)
    }
    // raw leaves wait until every interior block of the pass is out: interior
    // blocks are small and show the receiver which subgraphs it holds
    const leaves = new Map<string, CID>()
    const skipOrDefer = (cid: CID): boolean => {
      if (skip(cid)) {
        return true
      }
      const key = cid.toString()
      if (cid.code === raw.code && !mustSend.has(key)) {
        leaves.set(key, cid)
        return true
      }
      return false
    }

    yield * this.send(wants, skipOrDefer, mustSend, missing, signal)
    if (leaves.size === 0 || this.finished) {
      return
    }
    // a push first waits for the receiver to say what it holds under the roots
    while (!this.rootsAcknowledged && (this.init.coldCallBytes ?? Infinity) !== Infinity && !this.finished) {
      await this.wakeup.wait(signal)
    }
    if (this.bloomsReceived > 0 && !this.finished) {
      // the receiver has been finding blocks it holds: ask for its whole Bloom before the leaves go out
      const seen = this.counters.statusesReceived
      this.counters.syncs++
      yield { type: 'sync', statuses: seen }
      while (this.counters.statusesReceived === seen && !this.finished) {
        await this.wakeup.wait(signal)
      }
    }
    yield * this.send([...leaves.values()], skip, mustSend, missing, signal)
  }

  private async * send (roots: CID[], skip: (cid: CID) => boolean, mustSend: Set<string>, missing: CID[], signal?: AbortSignal): AsyncGenerator<Message, void, undefined> {
    const maxBlockSize = this.init.maxBlockSize ?? Infinity
    const coldCallBytes = this.init.coldCallBytes ?? Infinity
    for await (const block of walkDag(this.init.blockstore, roots, {
      skip,
      onMissing: cid => { missing.push(cid) },
      onLinks: this.learnLinks,
      linkReader: this.init.linkReader,
      readAhead: this.init.readAhead,
      offline: true,
      signal
    })) {
      if (!this.rootsAcknowledged && this.counters.blockBytesSent >= coldCallBytes) {
        while (!this.rootsAcknowledged && !this.finished) {
          await this.wakeup.wait(signal)
        }
        // the block in hand was chosen before the receiver's Bloom came in
        if (skip(block.cid)) {
          continue
        }
      }
      if (this.finished) {
        return
      }
      if (block.bytes.byteLength > maxBlockSize) {
        throw new LimitExceededError(`Block ${block.cid} has ${block.bytes.byteLength} bytes, more than the limit of ${maxBlockSize}`)
      }
      const key = block.cid.toString()
      mustSend.delete(key)
      this.sent.add(key)
      this.counters.blocksSent++
      this.counters.blockBytesSent += block.bytes.byteLength
      yield { type: 'block', cid: block.cid, bytes: block.bytes }
    }
  }
}
