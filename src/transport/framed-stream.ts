import { Uint8ArrayList } from 'uint8arraylist'
import { PACED_WINDOW_MIN, PACED_WINDOW_MS, PACED_WINDOW_PERIOD_MS } from '../constants.ts'
import { Yielder } from '../core/budget.ts'
import { decodeMessage, decodeMessageSteps, encodeMessage, maxFrameSize } from '../core/messages.ts'
import { Wakeup } from '../core/signal.ts'
import { SessionClosedError, SessionTimeoutError } from '../errors.ts'
import { FrameDecoder } from './frame-decoder.ts'
import type { Budget } from '../core/budget.ts'
import type { Message, MessageLimits } from '../core/messages.ts'
import type { AbortOptions, Logger, Stream } from '@libp2p/interface'

export interface MessagesOptions extends AbortOptions {
  /** Awaited with the size of each frame before it is decoded (after `beforeSlot` and the large-frame slot) */
  beforeDecode?(frameBytes: number): Promise<void>
  /** Awaited before a large frame waits for one of the node's large-frame slots: the reader is ready for it */
  beforeSlot?(): Promise<void>
}

export interface FramedStreamInit {
  limits?: MessageLimits
  /** Received-but-unread bytes above which the stream is paused; default the larger of 2 MiB and one frame of the largest size */
  highWaterMark?: number
  /**
   * Abort the stream after this long (ms) with no frame read or written,
   * unless the local side is busy (see `keepAliveWhile`); default: never
   */
  idleTimeout?: number
  /** Node-wide bytes of received frames not yet handled: every stream pauses while it is used up */
  bufferBudget?: Budget
  /**
   * Node-wide slots for large frames: one is held from the decoding of a
   * frame over 16 KiB until the reader asks for the next message (while it
   * takes in the message's CIDs)
   */
  largeFrames?: Budget
  /** Logs when reading pauses and resumes */
  log?: Logger
  /**
   * Caps the muxer's receive window from the start (see
   * `limitReceiveWindow`): for an inbound stream, before its first frame
   * says which way blocks will flow
   */
  receiveWindow?: number
}

/**
 * What a queued frame costs beyond its bytes: the list, views and buffer
 * that hold it (about 450 bytes in V8). Counted against the buffer budget
 * and the stream's high-water mark with its bytes, so that a peer sending
 * tiny frames (a one-byte body costs two bytes on the wire) cannot make
 * the node hold 200 times what the budget says
 */
const FRAME_OVERHEAD_BYTES = 512

/**
 * Most whole frames a stream holds split and queued; further ones wait in
 * the decoder as bytes, and reading pauses once those pass the high-water
 * mark
 */
const MAX_QUEUED_FRAMES = 256

const EMPTY = new Uint8Array(0)

/** What a frame waiting to be handled is counted as: its bytes and its overhead */
function queuedCost (frame: Uint8ArrayList): number {
  return frame.byteLength + FRAME_OVERHEAD_BYTES
}

/**
 * The parts of a yamux stream's flow control that the window methods use;
 * they check each is there, so streams of other muxers are left alone
 */
type YamuxWindow = Stream & { maxStreamWindowSize?: number, recvWindow?: number, epochStart?: number, sendWindowUpdate?(): void }

/** Block frames are batched until this many bytes are waiting */
const WRITE_BATCH = 64 * 1024

/** Read buffer a paused stream needs: yamux's largest window plus slack */
const MIN_READ_BUFFER = 32 * 1024 * 1024
/** Errors that end a stream and are already typed for callers (the idle timeout, a session that ended) */
const TYPED_FAILURES = new Set([SessionClosedError.name, SessionTimeoutError.name])

/** Frames above this size (a long list of CIDs) are decoded in slices that let other work in */
const LARGE_FRAME_BYTES = 16 * 1024

/** How often a write waiting for a stream to send its buffer checks it without an event (ms) */
const DRAIN_POLL_MS = 100

/** The unsigned LEB128 (varint) length prefix of a frame */
export function encodeLength (length: number): Uint8Array {
  const out: number[] = []
  let rest = length
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80)
    rest = Math.floor(rest / 128)
  }
  out.push(rest)
  return Uint8Array.from(out)
}

/**
 * CAR Mirror frames over a libp2p stream: each frame is a varint length
 * followed by a message body. Reading pauses the stream while too many
 * decoded frames wait to be consumed, so a fast sender cannot fill memory;
 * writing waits for the stream to drain.
 *
 * @example
 *
 * ```ts
 * const framed = new FramedStream(stream)
 * await framed.write({ type: 'idle', statuses: 0 })
 * for await (const message of framed.messages()) { ... }
 * ```
 */
export class FramedStream {
  readonly stream: Stream
  /** Bytes read from the stream, length prefixes included */
  bytesRead = 0
  /** Bytes written to the stream, length prefixes included */
  bytesWritten = 0
  /** Body size of the last frame `messages()` yielded */
  lastFrameSize = 0
  private readonly limits: MessageLimits
  private readonly decoder: FrameDecoder
  private readonly frames: Uint8ArrayList[] = []
  private queuedBytes = 0
  /** Bytes of the frame still arriving that are charged to the buffer budget */
  private partialCharged = 0
  private readonly highWaterMark: number
  /** Most bytes not split into frames yet before reading pauses (see roomToRead) */
  private readonly pendingLimit: number
  private paused = false
  /** Set inside the libp2p stream's `resume()`; a pause asked for then is made after it (see `pauseStream`) */
  private resuming = false
  private pauseAfterResume = false
  private ended = false
  private failure?: Error
  private interruption?: Error
  private readonly wakeup = new Wakeup()
  private outgoing = new Uint8ArrayList()
  private flushTimer?: ReturnType<typeof setTimeout>
  private readonly idleTimeout: number
  private idleTimer?: ReturnType<typeof setTimeout>
  private lastActivity = Date.now()
  private lastWrite = Date.now()
  private busy: () => boolean = () => false
  /** Set while a write waits for the peer to read: that is not local work */
  private draining = false
  private keepaliveTimer?: ReturnType<typeof setInterval>
  private readonly bufferBudget?: Budget
  private readonly largeFrames?: Budget
  private readonly log?: Logger
  private waitingForBudget = false
  private discarding = false
  private readonly yielder = new Yielder()
  /** What `openReceiveWindow` took from its budget, given back when the stream closes */
  private openedWindow?: { budget: Budget, bytes: number }
  /** The muxer's own largest receive window, kept by `limitReceiveWindow` */
  private fullReceiveWindow?: number
  /** See `paceReceiveWindow`: the window's ceiling then, and the bytes that arrived since the rate was last measured */
  private pacing?: { ceiling: number, window: number, since: number, bytes: number }
  private endedResolve?: () => void
  /** Resolves once the remote peer closed its end or the stream closed */
  readonly remoteEnded: Promise<void>

  constructor (stream: Stream, init: FramedStreamInit = {}) {
    this.stream = stream
    this.limits = init.limits ?? {}
    const maxFrame = maxFrameSize(this.limits)
    this.highWaterMark = init.highWaterMark ?? Math.max(2 * 1024 * 1024, maxFrame)
    // a partial frame never passes this: a stream paused for bytes not split yet can always go on
    this.pendingLimit = Math.max(this.highWaterMark, maxFrame)
    this.idleTimeout = init.idleTimeout ?? 0
    this.bufferBudget = init.bufferBudget
    this.largeFrames = init.largeFrames
    this.log = init.log
    this.remoteEnded = new Promise(resolve => { this.endedResolve = resolve })
    this.armIdleTimer()
    this.decoder = new FrameDecoder(maxFrame)
    if (init.receiveWindow != null) {
      this.limitReceiveWindow(init.receiveWindow)
    }
    // a paused yamux stream still takes in up to its window (which grows to
    // 16 MiB); libp2p resets a stream whose read buffer passes its limit
    // (4 MiB by default), so pausing must leave room for a whole window
    stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength ?? 0, MIN_READ_BUFFER)

    stream.addEventListener('message', (event) => {
      this.bytesRead += event.data.byteLength
      this.pace(event.data.byteLength)
      if (this.interruption != null || this.discarding) {
        // a bad frame was seen: nothing after it is read
        return
      }
      if (!this.takeFrames(event.data)) {
        return
      }
      if (this.queuedBytes > this.highWaterMark) {
        this.pauseReading('%d bytes wait to be handled', this.queuedBytes)
      } else if (this.decoder.pendingBytes > this.pendingLimit) {
        this.pauseReading('%d frames and %d bytes wait to be handled', this.frames.length, this.decoder.pendingBytes)
      }
      this.waitForBudget()
      this.wakeup.notify()
    })
    stream.addEventListener('remoteCloseWrite', () => {
      this.ended = true
      this.endedResolve?.()
      this.wakeup.notify()
    })
    stream.addEventListener('close', (event) => {
      clearTimeout(this.idleTimer)
      this.releaseOpenedWindow()
      this.stopKeepAlive()
      this.ended = true
      this.endedResolve?.()
      if (event.error != null) {
        // a reset, an abort or the connection's own error (the network went
        // away) reaches callers as a SessionClosedError; errors this side
        // aborted the stream with stay as they are
        const err = event.error
        this.fail(TYPED_FAILURES.has(err.name) || this.failure != null
          ? err
          : new SessionClosedError(`The stream ${err.name === 'StreamResetError' ? 'was reset' : 'closed'}: ${err.message}`, { cause: err }))
        this.releaseFrames()
      }
      this.wakeup.notify()
    })
  }

  /**
   * Writes a keepalive frame while `busy()` says the local side works on its
   * own (walks its store) and nothing else was written for a quarter of the
   * idle timeout, so the remote peer does not time the session out; the
   * local idle timer does not fire while busy either
   */
  keepAliveWhile (busy: () => boolean): void {
    this.stopKeepAlive()
    this.busy = busy
    if (this.idleTimeout <= 0 || this.stream.status !== 'open') {
      return
    }
    const every = Math.max(1, Math.floor(this.idleTimeout / 4))
    this.keepaliveTimer = setInterval(() => {
      if (this.working() && Date.now() - this.lastWrite >= every && this.stream.writeStatus === 'writable' && this.outgoing.byteLength === 0) {
        this.write({ type: 'keepalive' }).catch(() => {})
      }
    }, every)
  }

  /** Stops writing keepalive frames: the session is over */
  stopKeepAlive (): void {
    this.busy = () => false
    clearInterval(this.keepaliveTimer)
    this.keepaliveTimer = undefined
  }

  /**
   * The messages the remote peer sends, until it closes its end; keepalive
   * frames are left out. `beforeDecode` is awaited with each frame's size
   * before it is decoded (a sender reserves room for the wants it may hold).
   */
  async * messages (options: MessagesOptions = {}): AsyncGenerator<Message, void, undefined> {
    // a large frame is decoded and handled holding one of the node's few
    // large-frame slots, from before it is decoded until the reader asks for
    // the next message: the node holds few decoded lists of 10,000 CIDs
    // however many peers send them
    let slot = false
    const releaseSlot = (): void => {
      if (slot) {
        slot = false
        this.largeFrames?.release(1)
      }
    }
    try {
      while (true) {
        if (this.frames.length < MAX_QUEUED_FRAMES / 2 && this.decoder.pendingBytes > 0 && this.interruption == null && !this.discarding) {
          // frames left in the decoder while the queue was full
          this.takeFrames(EMPTY)
        }
        if (this.frames.length > 0) {
          const size = this.frames[0].byteLength
          // the slot first, then room for what the frame may hold: sessions
          // waiting for the slot hold no room others could use meanwhile
          if (size > LARGE_FRAME_BYTES && this.largeFrames != null) {
            await options.beforeSlot?.()
            await this.largeFrames.acquire(1, options.signal)
            slot = true
          }
          await options.beforeDecode?.(size)
        }
        const frame = this.frames.shift()
        if (frame != null) {
          this.queuedBytes -= queuedCost(frame)
          this.bufferBudget?.release(queuedCost(frame))
          if (this.roomToRead() && !this.waitingForBudget) {
            this.resumeWhenRoom()
          }
          // decoding a large control frame takes milliseconds: in slices, between other work
          let message: Message | undefined = frame.byteLength > LARGE_FRAME_BYTES
            ? await this.decodeInSlices(frame.subarray(), options.signal)
            : decodeMessage(frame.subarray(), this.limits)
          this.lastFrameSize = frame.byteLength
          if (message.type !== 'keepalive') {
            yield message
          }
          // a suspended generator keeps what its variables hold: a status of
          // 10,000 decoded CIDs must not live on while the next frame waits
          message = undefined
          releaseSlot()
          continue
        }
        releaseSlot()
        const failure = this.failure ?? this.interruption
        if (failure != null) {
          throw failure
        }
        if (this.ended) {
          return
        }
        await this.wakeup.wait(options.signal)
      }
    } finally {
      releaseSlot()
    }
  }

  /** Frames split and waiting to be handled (at most 256; more wait as bytes) */
  get queuedFrames (): number {
    return this.frames.length
  }

  /** Writes one message, waiting while the stream's write buffer is full */
  async write (message: Message, options: AbortOptions = {}): Promise<void> {
    if (this.failure != null) {
      throw this.failure
    }
    const parts = encodeMessage(message)
    let length = 0
    for (const part of parts) {
      length += part.byteLength
    }
    const prefix = encodeLength(length)
    this.outgoing.append(prefix, ...parts)
    this.bytesWritten += prefix.byteLength + length
    this.lastActivity = Date.now()
    this.lastWrite = this.lastActivity
    // small block frames are sent together (fewer muxer and encryption
    // frames); control frames and full batches go out at once
    if (message.type !== 'block' || this.outgoing.byteLength >= WRITE_BATCH) {
      await this.flush(options)
    } else {
      this.flushTimer ??= setTimeout(() => {
        this.flushTimer = undefined
        this.flush().catch(err => { this.interrupt(err) })
      }, 0)
    }
  }

  /** Sends what `write` has batched, waiting while the stream's write buffer is full */
  async flush (options: AbortOptions = {}): Promise<void> {
    clearTimeout(this.flushTimer)
    this.flushTimer = undefined
    if (this.outgoing.byteLength === 0) {
      return
    }
    const batch = this.outgoing
    this.outgoing = new Uint8ArrayList()
    this.checkWritable()
    if (!this.stream.send(batch)) {
      this.draining = true
      try {
        await this.drained(options)
      } finally {
        this.draining = false
      }
      this.lastActivity = Date.now()
    }
  }

  /** Decodes a large frame a slice at a time (see Yielder) */
  private async decodeInSlices (body: Uint8Array, signal?: AbortSignal): Promise<Message> {
    const steps = decodeMessageSteps(body, this.limits)
    let step = steps.next()
    while (step.done !== true) {
      await this.yielder.maybeYield(signal)
      step = steps.next()
    }
    return step.value
  }

  /** True while the stream holds more unsent bytes than a batch: its peer is not reading */
  get backedUp (): boolean {
    return this.stream.writeBufferLength > WRITE_BATCH
  }

  /** Throws a typed error when the stream can no longer be written (closed or reset under a waiting write) */
  private checkWritable (): void {
    if (this.stream.writeStatus !== 'writable') {
      throw this.failure ?? new SessionClosedError(`The stream is ${this.stream.status}: nothing more can be written`)
    }
  }

  /**
   * Waits until the stream holds at most one batch of unsent bytes. Neither
   * `send()` returning false nor `onDrain()` can be trusted for that: the
   * muxer wakes every stream when the connection drains, also one whose
   * peer has shut its window, and libp2p's `onDrain()` resolves at once
   * after the stream's first drain. Waiting on them let a peer that stops
   * reading make the stream buffer block after block.
   */
  private async drained (options: AbortOptions): Promise<void> {
    const stream = this.stream
    while (stream.writeBufferLength > WRITE_BATCH && stream.status === 'open') {
      options.signal?.throwIfAborted()
      // the stream sends what its window allows in a microtask queued before this resumes
      await untilEvent(stream, ['drain', 'idle', 'close'], DRAIN_POLL_MS, options.signal)
    }
  }

  /**
   * Makes `messages()` throw `err` at once, without closing the stream, so
   * a failure on the writing side can stop the reading side and still send
   * an error frame.
   */
  interrupt (err: Error): void {
    this.interruption ??= err
    this.wakeup.notify()
  }

  /** Closes the writable end once everything written has gone out */
  async closeWrite (options: AbortOptions = {}): Promise<void> {
    if (this.stream.writeStatus === 'writable') {
      await this.flush(options)
      await this.stream.close(options)
    }
  }

  /**
   * Resolves when the remote peer has closed its end, or after `ms`: used
   * after an error frame, so a reset does not overtake it
   */
  async remoteEnd (ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([this.remoteEnded, new Promise(resolve => { timer = setTimeout(resolve, ms) })])
    clearTimeout(timer)
  }

  /** Ends the stream at once with an error */
  abort (err: Error): void {
    clearTimeout(this.idleTimer)
    clearTimeout(this.flushTimer)
    this.stopKeepAlive()
    this.releaseFrames()
    this.releaseOpenedWindow()
    this.fail(err)
    this.stream.abort(err)
  }

  private armIdleTimer (delay: number = this.idleTimeout): void {
    if (this.idleTimeout <= 0) {
      return
    }
    this.idleTimer = setTimeout(() => {
      if (this.working()) {
        this.lastActivity = Date.now()
      }
      const idle = Date.now() - this.lastActivity
      if (idle < this.idleTimeout) {
        this.armIdleTimer(this.idleTimeout - idle)
        return
      }
      this.abort(new SessionTimeoutError(`No frame read or written for ${idle} ms`))
    }, delay)
  }

  /** True while the local side works on its own, not waiting for the peer to read or write */
  private working (): boolean {
    return !this.draining && this.busy()
  }

  /**
   * Pauses the stream while the node-wide buffer budget is used up, and
   * resumes it once other streams have handled enough of their frames
   */
  private waitForBudget (): void {
    const budget = this.bufferBudget
    if (budget == null || this.waitingForBudget || budget.used <= budget.limit) {
      return
    }
    this.waitingForBudget = true
    this.pauseReading('the node-wide buffer budget is used up (%d of %d bytes)', budget.used, budget.limit)
    // one paused stream resumes per turn, each while there is room: a resumed stream hands over what it buffered at once
    budget.whenAvailableInTurn().then(() => {
      this.waitingForBudget = false
      if (this.roomToRead() && !this.ended) {
        this.resumeReading()
      }
    }, () => {})
  }

  /**
   * Reads on, unless the node's budget is used up: then the stream waits its
   * turn like the others instead of taking in what its muxer holds
   */
  private resumeWhenRoom (): void {
    this.waitForBudget()
    if (!this.waitingForBudget) {
      this.resumeReading()
    }
  }

  /**
   * True when the frames waiting are few enough to read on: the split ones
   * under half the high-water mark, and the bytes not split yet (whole
   * frames, then at most one partial frame) at most `pendingLimit`, which a
   * partial frame never passes: a stream paused for them reads on once they
   * are down to that and takes in at most a window more before it pauses again
   */
  private roomToRead (): boolean {
    return this.queuedBytes < this.highWaterMark / 2 && this.decoder.pendingBytes <= this.pendingLimit
  }

  /** Stops taking in the peer's bytes (if reading is not paused already), saying why */
  private pauseReading (why: string, ...args: number[]): void {
    if (this.paused) {
      return
    }
    this.paused = true
    this.pauseStream()
    this.log?.(`reading paused: ${why}`, ...args)
  }

  /**
   * Pauses the libp2p stream, or, inside its `resume()`, once that returns:
   * `resume()` hands over what was buffered (our message handler may pause
   * then) and only afterwards tells the muxer to send window updates again,
   * which would leave a stream paused whose peer may send without limit
   * until libp2p resets it for its read buffer
   */
  private pauseStream (): void {
    if (this.resuming) {
      this.pauseAfterResume = true
      return
    }
    if (this.readOpen()) {
      this.stream.pause()
    }
  }

  /**
   * False once the peer has closed its end (or the stream closed): nothing
   * more can arrive, so there is no reading to pause or resume (libp2p
   * throws if asked to)
   */
  private readOpen (): boolean {
    return this.stream.readStatus !== 'closing' && this.stream.readStatus !== 'closed'
  }

  private resumeReading (): void {
    if (!this.paused) {
      return
    }
    this.paused = false
    this.log?.('reading resumed')
    this.resuming = true
    try {
      if (this.readOpen()) {
        this.stream.resume()
      }
    } finally {
      this.resuming = false
    }
    if (this.pauseAfterResume) {
      this.pauseAfterResume = false
      this.pauseStream()
    }
  }

  /**
   * Caps how many bytes the peer may send ahead on this stream (yamux's
   * receive window, which grows to 16 MiB on a fast link): for a direction
   * that carries control frames only, so a stream this node stops reading
   * holds at most about `bytes` more. Streams of other muxers are left as they are.
   */
  limitReceiveWindow (bytes: number): void {
    const yamux = this.stream as YamuxWindow
    if (typeof yamux.maxStreamWindowSize === 'number') {
      this.fullReceiveWindow ??= yamux.maxStreamWindowSize
      yamux.maxStreamWindowSize = Math.min(yamux.maxStreamWindowSize, bytes)
    }
    if (typeof yamux.recvWindow === 'number') {
      yamux.recvWindow = Math.min(yamux.recvWindow, bytes)
    }
  }

  /**
   * Opens the receive window to `bytes` at once, within the muxer's largest
   * window, taking what it adds to yamux's window from `budget` until the
   * stream closes: yamux starts every stream at 256 KiB and widens it only
   * as data arrives, so a transfer of a little more than that waited a round
   * trip for room. For a stream that brings this node blocks (a pull it
   * makes, a push it accepted). Returns false, and leaves the window as it
   * is, when the budget has no room (or is 0), the window is that wide
   * already, or the stream's muxer is not yamux.
   */
  openReceiveWindow (bytes: number, budget: Budget): boolean {
    const yamux = this.stream as YamuxWindow
    if (typeof yamux.recvWindow !== 'number' || typeof yamux.maxStreamWindowSize !== 'number' || typeof yamux.sendWindowUpdate !== 'function') {
      return false
    }
    const target = Math.min(bytes, yamux.maxStreamWindowSize)
    const added = target - yamux.recvWindow
    if (added <= 0 || this.openedWindow != null || budget.limit <= 0 || !budget.tryTake(added)) {
      return false
    }
    this.openedWindow = { budget, bytes: added }
    yamux.recvWindow = target
    if (typeof yamux.epochStart === 'number') {
      // yamux doubles a window whose last update was less than four round
      // trips ago (as on a new stream): this update opens it to `target` only
      yamux.epochStart = 0
    }
    // a paused stream sends the update once it resumes
    yamux.sendWindowUpdate()
    return true
  }

  /**
   * From now on keeps the receive window near what arrives in
   * PACED_WINDOW_MS at the rate bytes arrive at (at least PACED_WINDOW_MIN,
   * at most the window's ceiling now): for a stream that brings blocks.
   * yamux lets a window grow to 16 MiB, which on a slow link is many
   * seconds of bytes on their way, and every other stream of the connection
   * (libp2p's pings among them) waits behind them: a pull of 100 MiB at 50
   * Mbit/s lost its connection to the connection monitor after 15 s. The
   * window grows only as yamux grows it (never past what yamux would
   * grant), and shrinks by at most half a measurement, so a paused reader or
   * a short gap costs little. Streams of other muxers are left as they are.
   */
  paceReceiveWindow (): void {
    const yamux = this.stream as YamuxWindow
    if (typeof yamux.maxStreamWindowSize !== 'number' || typeof yamux.recvWindow !== 'number') {
      return
    }
    const window = Math.min(yamux.maxStreamWindowSize, Math.max(yamux.recvWindow, PACED_WINDOW_MIN))
    this.pacing = { ceiling: yamux.maxStreamWindowSize, window, since: -1, bytes: 0 }
    // no wider than it is until a rate says so: yamux doubles a window
    // updated within four round trips, which on a short round trip granted
    // 8 MiB in the first quarter second
    yamux.maxStreamWindowSize = window
  }

  /** Counts `bytes` that arrived towards a paced window's rate, and sets the window once a period has passed */
  private pace (bytes: number): void {
    const pacing = this.pacing
    if (pacing == null) {
      return
    }
    const now = Date.now()
    if (pacing.since < 0) {
      // the clock starts with the first bytes: the round trip before them carried none
      pacing.since = now
      return
    }
    pacing.bytes += bytes
    const elapsed = now - pacing.since
    if (elapsed < PACED_WINDOW_PERIOD_MS) {
      return
    }
    const window = Math.round(Math.min(pacing.ceiling, Math.max(PACED_WINDOW_MIN, pacing.window / 2, pacing.bytes / elapsed * PACED_WINDOW_MS)))
    pacing.window = window
    pacing.since = now
    pacing.bytes = 0
    const yamux = this.stream as YamuxWindow
    yamux.maxStreamWindowSize = window
    if ((yamux.recvWindow ?? 0) > window) {
      // what was granted stays granted: yamux grants no more until less than this is outstanding
      yamux.recvWindow = window
    }
  }

  /** Gives back what `openReceiveWindow` took */
  private releaseOpenedWindow (): void {
    if (this.openedWindow != null) {
      this.openedWindow.budget.release(this.openedWindow.bytes)
      this.openedWindow = undefined
    }
  }

  /**
   * Lets the receive window grow as far as the muxer allows again, after
   * `limitReceiveWindow`: for a stream found to carry blocks this way (a push
   * being received)
   */
  restoreReceiveWindow (): void {
    const yamux = this.stream as YamuxWindow
    if (this.fullReceiveWindow != null && typeof yamux.maxStreamWindowSize === 'number') {
      yamux.maxStreamWindowSize = this.fullReceiveWindow
    }
  }

  /**
   * Reads and drops whatever the remote peer still sends (a receiver that
   * said done), so a sender blocked on a full stream can finish and close
   */
  discardIncoming (): void {
    this.discarding = true
    this.releaseFrames()
    // what arrives now is dropped as it comes: an open window holds nothing
    this.releaseOpenedWindow()
    this.resumeReading()
  }

  /**
   * Splits what arrived into frames and queues them, at most
   * MAX_QUEUED_FRAMES at a time: the rest stays in the decoder as bytes (a
   * peer's tiny frames would cost hundreds of bytes each once split) until
   * `messages()` has taken frames from the queue. Returns false when the
   * bytes broke the framing: reading stops and the session is interrupted.
   */
  private takeFrames (chunk: Uint8Array | Uint8ArrayList): boolean {
    try {
      for (const frame of this.decoder.push(chunk)) {
        // only whole frames count as activity: a peer trickling bytes is idle
        this.lastActivity = Date.now()
        this.frames.push(compact(frame))
        this.queuedBytes += queuedCost(frame)
        this.bufferBudget?.force(queuedCost(frame))
        if (this.frames.length >= MAX_QUEUED_FRAMES) {
          break
        }
      }
    } catch (err) {
      // stop reading, and let the session answer with an error frame
      this.pauseStream()
      this.interrupt(err as Error)
      return false
    }
    this.chargePartialFrame()
    return true
  }

  /**
   * Keeps the part of a frame still arriving charged to the buffer budget,
   * so a stream stops reading once the node's budget is used up, not only
   * after a whole frame (up to 1 MiB for each stream) has arrived
   */
  private chargePartialFrame (): void {
    const pending = this.decoder.pendingBytes
    if (pending > this.partialCharged) {
      this.bufferBudget?.force(pending - this.partialCharged)
    } else if (pending < this.partialCharged) {
      this.bufferBudget?.release(this.partialCharged - pending)
    }
    this.partialCharged = pending
  }

  /** Gives the buffer budget back for frames that will never be read: call when the session is over */
  releaseFrames (): void {
    if (this.queuedBytes > 0) {
      this.bufferBudget?.release(this.queuedBytes)
    }
    if (this.partialCharged > 0) {
      this.bufferBudget?.release(this.partialCharged)
      this.partialCharged = 0
    }
    this.frames.length = 0
    this.queuedBytes = 0
  }

  private fail (err: Error): void {
    this.failure ??= err
  }
}

/**
 * A frame whose bytes are small views into larger buffers (the muxer's and
 * the decryption's chunks) would keep those whole buffers alive while it
 * waits; such a frame is copied, so what it holds is what the buffer budget
 * counts. A frame that fills most of its buffers is kept as it is.
 *
 * @example
 *
 * ```ts
 * const frame = new Uint8ArrayList(new Uint8Array(65536).subarray(0, 40))
 * compact(frame).get(0) // the same bytes, now in a buffer of 40 bytes
 * ```
 */
export function compact (frame: Uint8ArrayList): Uint8ArrayList {
  let held = 0
  for (const chunk of frame) {
    held += chunk.buffer.byteLength
  }
  if (held <= 2 * frame.byteLength + 4096) {
    return frame
  }
  // a buffer of its own (Uint8ArrayList.slice may take one from Node's shared pool)
  const copy = new Uint8Array(frame.byteLength)
  let offset = 0
  for (const chunk of frame) {
    copy.set(chunk, offset)
    offset += chunk.byteLength
  }
  return new Uint8ArrayList(copy)
}

/**
 * Resolves at the first of `events` on `target`, after `ms`, or when
 * `signal` aborts, whichever comes first; it never rejects.
 *
 * @example
 *
 * ```ts
 * await untilEvent(stream, ['close'], 1000, signal)
 * ```
 */
export async function untilEvent (target: EventTarget, events: string[], ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) {
    return
  }
  await new Promise<void>(resolve => {
    const done = (): void => {
      clearTimeout(timer)
      for (const event of events) {
        target.removeEventListener(event, done)
      }
      signal?.removeEventListener('abort', done)
      resolve()
    }
    for (const event of events) {
      target.addEventListener(event, done)
    }
    signal?.addEventListener('abort', done)
    const timer = setTimeout(done, ms)
  })
}
