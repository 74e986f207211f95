/**
 * An in-memory duplex stream on the virtual clock: each direction delivers
 * bytes in order after a seeded delay, cut into seeded chunks that the
 * reader reassembles with the real FrameDecoder, and makes a writer wait
 * while `window` bytes are written but not yet read (backpressure).
 */

import { varint } from 'multiformats'
import { maxFrameSize } from '../../src/core/messages.ts'
import { FrameDecoder } from '../../src/transport/frame-decoder.ts'
import type { Scheduler } from './scheduler.ts'

export interface PipeOptions {
  /** Virtual time from a write to its delivery */
  latency: number
  /** Up to this much more, drawn per chunk (order is kept) */
  jitter: number
  /** Bytes written and not yet read before a writer waits */
  window: number
  /** Each frame goes out in 1 to `maxPieces` chunks, cut at random points */
  maxPieces: number
}

/** What a reset stream throws at both ends, like libp2p's StreamResetError */
export class StreamResetError extends Error {
  static name = 'StreamResetError'
  name = 'StreamResetError'
}

/** A length-prefixed frame: varint(length) then the body */
export function frame (body: Uint8Array): Uint8Array {
  const prefix = varint.encodingLength(body.byteLength)
  const out = new Uint8Array(prefix + body.byteLength)
  varint.encodeTo(body.byteLength, out, 0)
  out.set(body, prefix)
  return out
}

class Pipe {
  private readonly scheduler: Scheduler
  private readonly random: () => number
  private readonly options: PipeOptions
  private readonly decoder = new FrameDecoder(maxFrameSize())
  private readonly inbox: Uint8Array[] = []
  private inFlight = 0
  private lastDelivery = 0
  private closed = false
  private ended = false
  private failure?: Error
  private readerWake?: () => void
  private writerWakes: Array<() => void> = []
  private endWakes: Array<() => void> = []

  constructor (scheduler: Scheduler, random: () => number, options: PipeOptions) {
    this.scheduler = scheduler
    this.random = random
    this.options = options
  }

  get failed (): boolean {
    return this.failure != null
  }

  get writable (): boolean {
    return !this.closed && this.failure == null
  }

  async write (bytes: Uint8Array): Promise<void> {
    while (this.inFlight >= this.options.window && this.failure == null) {
      await new Promise<void>(resolve => { this.writerWakes.push(resolve) })
    }
    if (this.failure != null) {
      throw this.failure
    }
    if (this.closed) {
      throw new Error('write after close')
    }
    this.inFlight += bytes.byteLength
    const cuts = Array.from({ length: Math.floor(this.random() * this.options.maxPieces) }, () => Math.floor(this.random() * bytes.byteLength))
    cuts.sort((a, b) => a - b).push(bytes.byteLength)
    let offset = 0
    for (const cut of cuts) {
      const chunk = bytes.subarray(offset, cut)
      offset = cut
      if (chunk.byteLength > 0) {
        this.schedule(() => { this.deliver(chunk) })
      }
    }
  }

  /** Ends this direction once everything written is delivered */
  close (): void {
    if (!this.closed) {
      this.closed = true
      this.schedule(() => {
        this.ended = true
        this.wakeReader()
        this.wakeEnd()
      })
    }
  }

  fail (err: Error): void {
    this.failure ??= err
    this.wakeReader()
    this.wakeEnd()
    for (const wake of this.writerWakes.splice(0)) {
      wake()
    }
  }

  /** The next frame body, or undefined once the writer closed */
  async read (): Promise<Uint8Array | undefined> {
    while (true) {
      if (this.failure != null) {
        throw this.failure
      }
      const body = this.inbox.shift()
      if (body != null) {
        this.inFlight -= varint.encodingLength(body.byteLength) + body.byteLength
        for (const wake of this.writerWakes.splice(0)) {
          wake()
        }
        return body
      }
      if (this.ended) {
        return undefined
      }
      await new Promise<void>(resolve => { this.readerWake = resolve })
    }
  }

  private schedule (fire: () => void): void {
    const at = Math.max(this.lastDelivery, this.scheduler.now + this.options.latency + Math.floor(this.random() * (this.options.jitter + 1)))
    this.lastDelivery = at
    this.scheduler.at(at - this.scheduler.now, () => {
      if (this.failure == null) {
        fire()
      }
    })
  }

  private deliver (chunk: Uint8Array): void {
    try {
      for (const body of this.decoder.push(chunk)) {
        this.inbox.push(body.subarray())
      }
    } catch (err) {
      this.fail(err as Error)
    }
    this.wakeReader()
  }

  /** Resolves once the writer's close was delivered, or the pipe failed */
  async whenEnded (): Promise<void> {
    if (!this.ended && this.failure == null) {
      await new Promise<void>(resolve => { this.endWakes.push(resolve) })
    }
  }

  private wakeEnd (): void {
    for (const wake of this.endWakes.splice(0)) {
      wake()
    }
  }

  private wakeReader (): void {
    const wake = this.readerWake
    this.readerWake = undefined
    wake?.()
  }
}

/** One end of a duplex: writes go out on one pipe, reads come from the other */
export class End {
  private readonly out: Pipe
  private readonly in: Pipe

  constructor (out: Pipe, inbound: Pipe) {
    this.out = out
    this.in = inbound
  }

  get writable (): boolean {
    return this.out.writable
  }

  /** True once the stream was reset */
  get reset (): boolean {
    return this.out.failed && this.in.failed
  }

  async write (bytes: Uint8Array): Promise<void> {
    await this.out.write(bytes)
  }

  async read (): Promise<Uint8Array | undefined> {
    return this.in.read()
  }

  closeWrite (): void {
    this.out.close()
  }

  /** Resolves once the remote end closed its writable end (or the stream failed) */
  async remoteEnd (): Promise<void> {
    await this.in.whenEnded()
  }

  /** Stops local reading with `err` (the remote end is not told) */
  interrupt (err: Error): void {
    this.in.fail(err)
  }

  /** Resets both directions: both ends fail with a StreamResetError */
  abort (): void {
    const err = new StreamResetError('the stream was reset')
    this.out.fail(err)
    this.in.fail(err)
  }
}

/** A connected pair of ends; `ab` shapes what the first end writes, `ba` what the second writes */
export function duplex (scheduler: Scheduler, random: () => number, ab: PipeOptions, ba: PipeOptions): [End, End] {
  const toB = new Pipe(scheduler, random, ab)
  const toA = new Pipe(scheduler, random, ba)
  return [new End(toB, toA), new End(toA, toB)]
}
