import { Uint8ArrayList } from 'uint8arraylist'
import { LimitExceededError, ProtocolError } from '../errors.ts'

/** A varint length prefix longer than this cannot describe a frame we accept */
const MAX_LENGTH_BYTES = 9

/**
 * Splits a byte stream into frames: an unsigned LEB128 length in its
 * shortest form, then that many bytes. Feed it chunks as they arrive; it
 * yields every complete frame, empty ones included (the message decoder
 * rejects those), and never buffers more than one frame plus the chunk it is
 * given.
 *
 * @example
 *
 * ```ts
 * const decoder = new FrameDecoder(maxFrameSize())
 * for (const frame of decoder.push(chunk)) { handle(frame.subarray()) }
 * ```
 */
export class FrameDecoder {
  private readonly maxLength: number
  private readonly buffer = new Uint8ArrayList()
  /** Length of the frame being read, once its prefix is complete */
  private length?: number

  constructor (maxLength: number) {
    this.maxLength = maxLength
  }

  /** Bytes received that do not make a whole frame yet (a length prefix, part of a body) */
  get pendingBytes (): number {
    return this.buffer.byteLength
  }

  /**
   * @throws {ProtocolError} for a length prefix longer than 9 bytes or not minimal (ending in a 0x00 byte after others)
   * @throws {LimitExceededError} for a frame longer than the limit
   */
  * push (chunk: Uint8Array | Uint8ArrayList): Generator<Uint8ArrayList, void, undefined> {
    this.buffer.append(chunk)
    while (true) {
      if (this.length == null) {
        const prefix = this.readLength()
        if (prefix == null) {
          return
        }
        this.buffer.consume(prefix.bytes)
        this.length = prefix.length
      }
      if (this.buffer.byteLength < this.length) {
        return
      }
      const frame = this.buffer.sublist(0, this.length)
      this.buffer.consume(this.length)
      this.length = undefined
      yield frame
    }
  }

  private readLength (): { length: number, bytes: number } | undefined {
    let length = 0
    let scale = 1
    for (let i = 0; i < Math.min(this.buffer.byteLength, MAX_LENGTH_BYTES); i++) {
      const byte = this.buffer.get(i)
      length += (byte & 0x7f) * scale
      if (length > this.maxLength) {
        throw new LimitExceededError(`A frame of at least ${length} bytes is over the limit of ${this.maxLength}`)
      }
      if ((byte & 0x80) === 0) {
        if (i > 0 && byte === 0) {
          // a padded varint (such as 80 00 for 0): one length, two encodings
          throw new ProtocolError('A frame length prefix is not a minimal varint')
        }
        return { length, bytes: i + 1 }
      }
      scale *= 128
    }
    if (this.buffer.byteLength >= MAX_LENGTH_BYTES) {
      throw new ProtocolError(`A frame length prefix is longer than ${MAX_LENGTH_BYTES} bytes`)
    }
    return undefined
  }
}
