import { isRemoteError, remoteError } from '../core/receiver.ts'
import { Wakeup } from '../core/signal.ts'
import { HashMismatchError, InvalidBlockError, LimitExceededError, ProtocolError, SessionClosedError, SessionRefusedError, SessionTimeoutError, UnknownCodecError, UnsupportedHashError, BlocksNotAvailableError } from '../errors.ts'
import type { FramedStream } from './framed-stream.ts'
import type { ErrorCode, Message } from '../core/messages.ts'
import type { ReceiverSession, ReceiverStep } from '../core/receiver.ts'
import type { SenderSession } from '../core/sender.ts'
import type { AbortOptions, Logger } from '@libp2p/interface'

export interface RunOptions extends AbortOptions {
  /** Messages to write before anything else (a request or greeting) */
  first?: Message[]
  /** Called for every message written */
  onSent?(message: Message): void
  /** Called for every message read, before it is handled */
  onReceived?(message: Message): void
  /** Called after a received message was handled by a receiver */
  onReceiverStep?(step: ReceiverStep): void
  /** Most CIDs named in an error frame; default 10,000 */
  maxCidsPerMessage?: number
  /** The session's own logger: rounds, pauses, the peer's errors and the end */
  log?: Logger
  /**
   * Called by a receiver that has said done, with a promise that settles once
   * the sender has closed its end (or a grace period has passed and the
   * stream was cut off): a node that stops waits for it, so its done frame
   * reaches the sender
   */
  onClosing?(closed: Promise<void>): void
}

/** How long a receiver that said done waits for the sender to close, before it resets the stream (ms) */
const DONE_GRACE_MS = 5000

/**
 * Runs a sender session over a framed stream: writes its messages while
 * feeding it what the receiver says, until the receiver is done. Both
 * directions run at once (full duplex).
 */
export async function runSender (framed: FramedStream, sender: SenderSession, options: RunOptions = {}): Promise<void> {
  framed.keepAliveWhile(() => sender.busy)
  await guard(framed, 'sender', options, async () => {
    const writing = (async () => {
      for (const message of options.first ?? []) {
        await write(framed, message, options)
      }
      for await (const message of sender.messages(options)) {
        await write(framed, message, options)
      }
      await framed.closeWrite(options)
    })()
    // a failure while writing (a store error, a limit, a reset) stops the reading side too
    const writeFailed = new AbortController()
    writing.catch(err => {
      writeFailed.abort(err)
      framed.interrupt(err)
    })
    const roomSignal = options.signal == null ? writeFailed.signal : AbortSignal.any([options.signal, writeFailed.signal])
    // a wait for room ends early when the receiver closes its end: a done may follow
    const untilEnded = async (wait: Promise<void>): Promise<void> => {
      await Promise.race([wait.catch(() => {}), framed.remoteEnded])
    }
    // a receiver that asks for more than the session takes waits: no frame
    // is decoded until the node's queue has room for the wants it may hold
    // (even while this side's writes wait for the peer to read: a receiver
    // reads while it writes, and the node evicts a stalled session that
    // holds too much)
    const beforeDecode = async (frameBytes: number): Promise<void> => {
      if (sender.takeRoomForWants(frameBytes)) {
        return
      }
      await untilEnded(sender.roomForWants(roomSignal, frameBytes))
    }
    // a large frame takes one of the node's few slots only once the
    // session's own queue takes wants: a session whose queue is full (its
    // writes wait for its peer) must not hold a slot while it waits
    const beforeSlot = async (): Promise<void> => {
      await untilEnded(sender.roomInQueue(roomSignal))
    }
    const messages = framed.messages({ ...options, beforeDecode, beforeSlot })

    try {
      // true when the session is done
      const handle = async (message: Message): Promise<boolean> => {
        options.onReceived?.(message)
        logReceived(options, message)
        if (message.type === 'error') {
          throw remoteError(message.code, message.message, message.cids)
        }
        await sender.receive(message, options)
        return sender.done
      }
      while (true) {
        // no variable of this loop holds a message while the next is awaited:
        // a decoded status may hold 10,000 CIDs, and the wait for room may be long
        let next: IteratorResult<Message> | undefined = await messages.next()
        if (next.done === true) {
          break
        }
        const done = await handle(next.value)
        next = undefined
        if (done) {
          break
        }
      }
    } catch (err) {
      writing.catch(() => {})
      throw err
    } finally {
      // a reader left suspended would keep its large-frame slot
      await messages.return(undefined)
    }

    if (!sender.done) {
      writing.catch(() => {})
      throw new SessionClosedError('The receiver closed the stream before it said it was done')
    }
    // the receiver holds everything: a write cut off now (it reset the stream) changes nothing
    await writing.catch(() => {})
  })
}

/**
 * Runs a receiver session over a framed stream: hands it every message the
 * sender writes and writes its replies, until it holds the whole DAG and the
 * sender has closed its end. Reading never waits for a reply to be written
 * (full duplex): a sender whose writes wait for this side to read can
 * always go on. The replies waiting meanwhile stay few: the receiver names
 * wants only once the sender has read its last status, and sends a Bloom
 * only when what it holds has doubled.
 */
export async function runReceiver (framed: FramedStream, receiver: ReceiverSession, options: RunOptions = {}): Promise<void> {
  let receiving = false
  // status frames that named wants: the first round, then straggler rounds
  let rounds = 0
  framed.keepAliveWhile(() => receiving)
  await guard(framed, 'receiver', options, async () => {
    const outbox = new Outbox(framed, options)
    try {
      for (const message of options.first ?? []) {
        outbox.send(message)
      }

      const handle = async (message: Message): Promise<void> => {
        outbox.check()
        options.onReceived?.(message)
        logReceived(options, message)
        receiving = true
        let step
        try {
          step = await receiver.receive(message, options)
        } finally {
          receiving = false
        }
        options.onReceiverStep?.(step)
        for (const reply of step.replies) {
          rounds += logRound(options, reply, rounds)
          outbox.send(reply)
        }
      }

      if (!receiver.complete) {
        for await (const message of withUnprompted(framed.messages(options), receiver, outbox, options.signal)) {
          // undefined: a pool member's news, queued already (the pool may be complete)
          if (message != null) {
            await handle(message)
          }
          if (receiver.complete) {
            break
          }
        }
      }

      if (!receiver.complete) {
        throw new SessionClosedError(`The sender closed the stream with ${receiver.frontier.wantCount} subgraph(s) still missing`)
      }
      for (const done of receiver.doneOnce()) {
        outbox.send(done)
      }
      // done: what the sender still sends is dropped unread (so its writes
      // never wait for this side) until it closes its end, or is cut off after a grace
      framed.discardIncoming()
      await outbox.flushed()
    } catch (err) {
      outbox.stop()
      throw err
    }
    await framed.closeWrite(options)
    const closed = framed.remoteEnd(DONE_GRACE_MS).then(() => {
      framed.abort(new SessionClosedError('The session is over'))
    })
    options.onClosing?.(closed)
  })
}

/**
 * The sender's messages, and for a session that speaks unprompted (a CAR
 * Pool member) an `undefined` each time it had news, whose messages are
 * queued on `outbox` first
 */
async function * withUnprompted (messages: AsyncIterable<Message>, receiver: ReceiverSession, outbox: Outbox, signal?: AbortSignal): AsyncGenerator<Message | undefined, void, undefined> {
  if (!receiver.speaksUnprompted) {
    yield * messages
    return
  }
  const iterator = messages[Symbol.asyncIterator]()
  let next: Promise<IteratorResult<Message>> | undefined
  let news: Promise<false> | undefined
  try {
    while (true) {
      next ??= iterator.next()
      // one wait at a time: a Wakeup keeps only its latest waiter
      // (an abort rejects it, and the race with it)
      news ??= receiver.news.wait(signal).then(() => false as const)
      news.catch(() => {})
      const result = await Promise.race([next, news])
      if (result === false) {
        news = undefined
        for (const message of receiver.takeUnprompted()) {
          outbox.send(message)
        }
        yield undefined
        continue
      }
      next = undefined
      if (result.done === true) {
        return
      }
      yield result.value
    }
  } finally {
    // the stream's own iterator ends when the loop leaves it; a read still
    // pending may fail as the stream closes, which no one waits for
    next?.catch(() => {})
    iterator.return?.().catch(() => {})
  }
}

/** Logs what a peer says that changes the course of a session: its errors, its wants, its end */
function logReceived (options: RunOptions, message: Message): void {
  const log = options.log
  if (log == null) {
    return
  }
  switch (message.type) {
    case 'error':
      // a peer's complaint or refusal is its business: debug level, not error
      log('peer sent error/%s: %s', message.code, message.message)
      break
    case 'status':
      if (message.wants.length > 0) {
        log('peer asks for %d subgraph(s), the first %c', message.wants.length, message.wants[0])
      }
      break
    case 'missing':
      log('peer lacks %d block(s), the first %c', message.cids.length, message.cids[0])
      break
    case 'done':
      log('peer is done (%d duplicate block(s))', message.duplicates)
      break
    default:
      // blocks, idles and syncs: too many to log one by one
      break
  }
}

/** Logs a receiver's status that names wants (the first round, then straggler rounds): 1 if it was one */
function logRound (options: RunOptions, reply: Message, rounds: number): number {
  if (reply.type !== 'status' || reply.wants.length === 0) {
    return 0
  }
  options.log?.('round %d: asking for %d subgraph(s), the first %c', rounds + 1, reply.wants.length, reply.wants[0])
  return 1
}

/** Writes a receiver's replies in order, in a task of its own, so its reading never waits for them */
class Outbox {
  private readonly framed: FramedStream
  private readonly options: RunOptions
  private readonly queue: Message[] = []
  private readonly wakeup = new Wakeup()
  private readonly stopped = new AbortController()
  private failure?: Error
  private readonly writing: Promise<void>

  constructor (framed: FramedStream, options: RunOptions) {
    this.framed = framed
    this.options = options
    this.writing = this.run()
    this.writing.catch(() => {})
  }

  /** Queues a message to write after those queued before it */
  send (message: Message): void {
    this.check()
    this.queue.push(message)
    this.wakeup.notify()
  }

  /** @throws {Error} the error a write failed with, if one did */
  check (): void {
    if (this.failure != null) {
      throw this.failure
    }
  }

  /** Resolves once every queued message is written; rejects if a write failed */
  async flushed (): Promise<void> {
    this.stopped.abort()
    await this.writing
    this.check()
  }

  /** Stops writing (the session failed) */
  stop (): void {
    this.stopped.abort()
    this.queue.length = 0
  }

  private async run (): Promise<void> {
    const signal = this.options.signal == null ? this.stopped.signal : AbortSignal.any([this.options.signal, this.stopped.signal])
    try {
      while (true) {
        const message = this.queue.shift()
        if (message != null) {
          await write(this.framed, message, this.options)
          continue
        }
        if (this.stopped.signal.aborted) {
          return
        }
        this.options.signal?.throwIfAborted()
        await this.wakeup.wait(signal).catch(() => {})
      }
    } catch (err) {
      this.failure = err as Error
      // a write that failed (a reset, a limit) stops the reading side too
      this.framed.interrupt(err as Error)
      throw err
    }
  }
}

async function write (framed: FramedStream, message: Message, options: RunOptions): Promise<void> {
  await framed.write(message, options)
  options.onSent?.(message)
}

/** On failure: tell the remote peer why, then reset the stream */
async function guard (framed: FramedStream, role: Role, options: RunOptions, run: () => Promise<void>): Promise<void> {
  try {
    await run()
  } catch (err) {
    await failSession(framed, err as Error, errorCode(err as Error, role), options.maxCidsPerMessage)
    throw err
  } finally {
    framed.stopKeepAlive()
  }
}

/** Which side of the session failed: a sender's own blocks that cannot be decoded are its own fault */
export type Role = 'sender' | 'receiver'

/** How long a failing side waits for the peer to close after its error frame, before it resets the stream (ms) */
const ERROR_GRACE_MS = 250

/**
 * Ends a session that failed locally: writes an error frame with `code`
 * (by default the one matching the error; none when the peer caused the failure by an error frame, a
 * reset or silence, or the sender already wrote one), closes the writable
 * end, gives the peer a moment to read it, then resets the stream. A
 * stream whose peer has stopped reading is reset without an error frame.
 */
export async function failSession (framed: FramedStream, error: Error, code: ErrorCode | undefined = errorCode(error, 'receiver'), maxCids = 10_000): Promise<void> {
  // a peer that does not read what was sent before would not read the error
  // either: its stream is reset at once, dropping what it holds
  if (code != null && framed.stream.writeStatus === 'writable' && !framed.backedUp) {
    try {
      const cids = error instanceof BlocksNotAvailableError ? error.cids.slice(0, maxCids) : []
      await framed.write({ type: 'error', code, message: error.message.slice(0, 512), cids }, { signal: AbortSignal.timeout(1000) })
      await framed.closeWrite({ signal: AbortSignal.timeout(1000) })
      await framed.remoteEnd(ERROR_GRACE_MS)
    } catch {
      // the stream is going away anyway: the local error is what matters
    }
  }
  framed.abort(error)
}

/** The error code to send for a local failure; undefined for failures the remote peer reported or caused by closing */
function errorCode (err: Error, role: Role): ErrorCode | undefined {
  if (isRemoteError(err)) {
    return undefined
  }
  switch (err.name) {
    case UnknownCodecError.name:
    case InvalidBlockError.name:
      // a sender that cannot read its own blocks is at fault itself
      return role === 'sender' ? 'internal' : 'verification'
    case HashMismatchError.name:
    case UnsupportedHashError.name:
      return 'verification'
    case LimitExceededError.name:
      return 'limit'
    case ProtocolError.name:
      return 'protocol'
    case BlocksNotAvailableError.name:
      return 'not-found'
    case SessionRefusedError.name:
    case SessionClosedError.name:
    case SessionTimeoutError.name:
    case 'RemoteError':
    case 'AbortError':
      return undefined
    default:
      return 'internal'
  }
}
