import { LengthPrefixedDecoder } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import { decodeMessage, encodeMessage, maxFrameSize } from '../core/messages.ts'
import { Wakeup } from '../core/signal.ts'
import { LimitExceededError, SessionClosedError } from '../errors.ts'
import type { Message, MessageLimits } from '../core/messages.ts'
import type { AbortOptions, Stream } from '@libp2p/interface'

export interface FramedStreamInit {
  limits?: MessageLimits
  /** Decoded-but-unread bytes above which the stream is paused; default 4 frames of the largest size or 8 MiB */
  highWaterMark?: number
}

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
  private readonly limits: MessageLimits
  private readonly decoder: LengthPrefixedDecoder
  private readonly frames: Uint8ArrayList[] = []
  private queuedBytes = 0
  private readonly highWaterMark: number
  private paused = false
  private ended = false
  private failure?: Error
  private readonly wakeup = new Wakeup()

  constructor (stream: Stream, init: FramedStreamInit = {}) {
    this.stream = stream
    this.limits = init.limits ?? {}
    const maxFrame = maxFrameSize(this.limits)
    this.highWaterMark = init.highWaterMark ?? Math.max(8 * 1024 * 1024, maxFrame)
    this.decoder = new LengthPrefixedDecoder({ maxDataLength: maxFrame, maxBufferSize: maxFrame + 16 })

    stream.addEventListener('message', (event) => {
      this.bytesRead += event.data.byteLength
      try {
        for (const frame of this.decoder.decode(event.data)) {
          this.frames.push(frame)
          this.queuedBytes += frame.byteLength
        }
      } catch (err) {
        this.fail(new LimitExceededError(`Bad frame from the remote peer: ${(err as Error).message}`))
        stream.abort(this.failure as Error)
        return
      }
      if (this.queuedBytes > this.highWaterMark && !this.paused) {
        this.paused = true
        stream.pause()
      }
      this.wakeup.notify()
    })
    stream.addEventListener('remoteCloseWrite', () => {
      this.ended = true
      this.wakeup.notify()
    })
    stream.addEventListener('close', (event) => {
      this.ended = true
      if (event.error != null) {
        this.fail(event.error)
      }
      this.wakeup.notify()
    })
  }

  /** The messages the remote peer sends, until it closes its end */
  async * messages (options: AbortOptions = {}): AsyncGenerator<Message, void, undefined> {
    while (true) {
      const frame = this.frames.shift()
      if (frame != null) {
        this.queuedBytes -= frame.byteLength
        if (this.paused && this.queuedBytes < this.highWaterMark / 2) {
          this.paused = false
          this.stream.resume()
        }
        yield decodeMessage(frame.subarray(), this.limits)
        continue
      }
      if (this.failure != null) {
        throw this.failure
      }
      if (this.ended) {
        return
      }
      await this.wakeup.wait(options.signal)
    }
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
    const frame = new Uint8ArrayList(encodeLength(length), ...parts)
    this.bytesWritten += frame.byteLength
    if (!this.stream.send(frame)) {
      await this.stream.onDrain(options)
    }
  }

  /** Closes the writable end once everything written has gone out */
  async closeWrite (options: AbortOptions = {}): Promise<void> {
    if (this.stream.writeStatus === 'writable') {
      await this.stream.close(options)
    }
  }

  /** Ends the stream at once with an error */
  abort (err: Error): void {
    this.fail(err)
    this.stream.abort(err)
  }

  private fail (err: Error): void {
    this.failure ??= err.name === 'StreamResetError' || err.name === 'StreamAbortedError'
      ? new SessionClosedError(`The stream was reset: ${err.message}`)
      : err
  }
}
