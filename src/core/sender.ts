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
   * Block bytes that may be sent before the first status arrives: the cold
   * call of a push. Once the receiver's first status (and its Bloom) is in,
   * there is no limit. Default: no limit
   */
  coldCallBytes?: number
}

/** What a sender has done so far */
export interface SenderCounters {
  blocksSent: number
  blockBytesSent: number
  /** Passes over the DAG: the first, plus one for each status that asked for stragglers */
  passes: number
  /** Status frames read from the receiver */
  statusesReceived: number
  /** Idle frames sent: times the sender had to wait for the receiver */
  idles: number
  /** Blocks the receiver said (in its done frame) it already held */
  duplicatesReported: number
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
  readonly counters: SenderCounters = { blocksSent: 0, blockBytesSent: 0, passes: 0, statusesReceived: 0, idles: 0, duplicatesReported: 0 }
  private readonly init: SenderSessionInit
  private bloom?: BloomFilter
  private readonly sent = new Set<string>()
  private queued: CID[]
  private finished = false
  private readonly wakeup = new Wakeup()

  constructor (init: SenderSessionInit) {
    this.init = init
    this.roots = init.roots
    this.bloom = init.request?.bloom ?? init.bloom
    const wants = init.request?.wants ?? []
    this.queued = wants.length > 0 ? [...wants] : [...init.roots]
    this.counters.statusesReceived = init.request != null ? 1 : 0
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

    while (!this.finished) {
      if (this.queued.length === 0) {
        this.counters.idles++
        yield { type: 'idle', statuses: this.counters.statusesReceived }
        while (this.queued.length === 0 && !this.finished) {
          await this.wakeup.wait(options.signal)
        }
        continue
      }

      const wants = this.queued
      this.queued = []
      this.counters.passes++
      const missing: CID[] = []
      yield * this.pass(wants, missing, options.signal)

      if (missing.length > 0 && !this.finished) {
        const named = missing.slice(0, MAX_REPORTED_MISSING)
        yield { type: 'error', code: 'not-found', message: `The sender does not hold ${missing.length} block(s), including ${named[0]}`, cids: named }
        throw new BlocksNotAvailableError(`Missing ${missing.length} block(s) locally, including ${named[0]}`, named)
      }
    }
  }

  private async * pass (wants: CID[], missing: CID[], signal?: AbortSignal): AsyncGenerator<Message, void, undefined> {
    const mustSend = new Set(wants.map(cid => cid.toString()))
    const maxBlockSize = this.init.maxBlockSize ?? Infinity
    const coldCallBytes = this.init.coldCallBytes ?? Infinity
    const skip = (cid: CID): boolean => {
      if (this.finished) {
        return true
      }
      const key = cid.toString()
      if (mustSend.has(key)) {
        return false
      }
      return this.sent.has(key) || this.bloom?.has(bloomItem(cid)) === true
    }

    for await (const block of walkDag(this.init.blockstore, wants, {
      skip,
      onMissing: cid => { missing.push(cid) },
      linkReader: this.init.linkReader,
      readAhead: this.init.readAhead,
      offline: true,
      signal
    })) {
      while (this.counters.statusesReceived === 0 && this.counters.blockBytesSent >= coldCallBytes && !this.finished) {
        await this.wakeup.wait(signal)
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
