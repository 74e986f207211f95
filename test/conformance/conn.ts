/**
 * One CAR Mirror stream as the conformance kit sees it: frames written by
 * hand, frames read and checked against the rules every frame must follow
 * (minimal prefixes, canonical DAG-CBOR, known types, required keys, limits),
 * and a log of both directions for failure reports.
 */

import { Uint8ArrayList } from 'uint8arraylist'
import { ERROR_CODES, MAX_HASH_COUNT, MIN_BLOCK_BYTES, MIN_BLOOM_BYTES, MIN_LIST, REQUIRED, body, cidsOf, frame, parseBody, uintOf } from './wire.ts'
import type { Frame, WireBloom } from './wire.ts'
import type { Stream } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'

/** A broken rule, named by its id in docs/PROTOCOL.md */
export class Violation extends Error {
  readonly rule: string
  name = 'Violation'

  constructor (rule: string, message: string) {
    super(`${rule}: ${message}`)
    this.rule = rule
  }
}

/** Throws a Violation of `rule` unless `condition` holds */
export function check (condition: unknown, rule: string, message: string): asserts condition {
  if (condition === false || condition == null) {
    throw new Violation(rule, message)
  }
}

/** The end of the peer's side of the stream */
export interface End {
  kind: 'end'
  /** True when the stream was reset rather than closed */
  reset: boolean
}

export type Event = Frame | End

export type ControlFrame = Extract<Frame, { kind: 'control' }>
export type BlockFrame = Extract<Frame, { kind: 'block' }>

export interface ConnOptions {
  /** How long to wait for an expected frame, ms */
  timeout: number
  /** The role the peer plays in this session */
  peer: 'sender' | 'receiver'
  /** True when the peer opened the stream (client-role checks) */
  peerIsClient?: boolean
  /** Short names for CIDs in the log */
  name?(cid: CID): string
  /** Shared log lines (both directions) */
  log?: string[]
}

/** Messages each role may write (PROTOCOL.md §4, C-2) */
const WRITES = {
  sender: new Set(['header', 'idle', 'sync', 'missing', 'error', 'keepalive']),
  receiver: new Set(['status', 'done', 'error', 'keepalive'])
}

export class Conn {
  readonly stream: Stream
  readonly log: string[]
  readonly timeout: number
  /** Status-bearing messages the kit wrote (as receiver: its pull and statuses) */
  statusesWritten = 0
  /** Status-bearing messages the kit read (as sender: a pull and statuses) */
  statusesRead = 0
  keepalivesRead = 0
  syncsRead = 0
  /** The Bloom the kit last gave the peer (as receiver): undefined or null = none */
  bloom: WireBloom | null | undefined
  /** Answer each sync at once with a status carrying the kit's current Bloom (R-7) */
  answerSync = true
  /** Wait this long before answering a sync, checking that no block arrives meanwhile (S-10) */
  syncDelay = 0
  private readonly options: ConnOptions
  private readonly buffer = new Uint8ArrayList()
  private readonly events: Array<Event | Violation> = []
  private wake?: () => void
  private ended = false
  private broken = false

  constructor (stream: Stream, options: ConnOptions) {
    this.stream = stream
    this.options = options
    this.timeout = options.timeout
    this.log = options.log ?? []
    stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength ?? 0, 64 * 1024 * 1024)
    stream.addEventListener('message', (event) => {
      if (this.broken) {
        return
      }
      this.buffer.append(event.data)
      this.split()
    })
    stream.addEventListener('remoteCloseWrite', () => { this.end(false) })
    stream.addEventListener('close', (event) => { this.end(event.error != null) })
  }

  name (cid: CID): string {
    return this.options.name?.(cid) ?? cid.toString()
  }

  // ---- reading -----------------------------------------------------------------

  private enqueue (event: Event | Violation): void {
    this.events.push(event)
    this.wake?.()
  }

  private end (reset: boolean): void {
    if (!this.ended) {
      this.ended = true
      this.enqueue({ kind: 'end', reset })
    }
  }

  /** Splits buffered bytes into frames, checking each length prefix (F-1, F-2) */
  private split (): void {
    while (this.buffer.byteLength > 0) {
      let length = 0
      let scale = 1
      let prefix = 0
      for (let i = 0; i < Math.min(this.buffer.byteLength, 9); i++) {
        const byte = this.buffer.get(i)
        length += (byte & 0x7f) * scale
        scale *= 128
        if ((byte & 0x80) === 0) {
          prefix = i + 1
          break
        }
      }
      if (prefix === 0) {
        if (this.buffer.byteLength >= 9) {
          this.broken = true
          this.enqueue(new Violation('F-2', 'the peer wrote a length prefix longer than 9 bytes'))
        }
        return
      }
      if (prefix > 1 && this.buffer.get(prefix - 1) === 0) {
        this.broken = true
        this.enqueue(new Violation('F-1', `the peer wrote a non-minimal length prefix (${prefix} bytes for ${length})`))
        return
      }
      if (this.buffer.byteLength < prefix + length) {
        return
      }
      const bytes = this.buffer.subarray(prefix, prefix + length)
      this.buffer.consume(prefix + length)
      this.enqueue(parseBody(bytes))
    }
  }

  /** The next event, or undefined after `ms` */
  async poll (ms: number): Promise<Event | undefined> {
    const deadline = Date.now() + ms
    while (this.events.length === 0) {
      const left = deadline - Date.now()
      if (left <= 0) {
        return undefined
      }
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, left)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.wake = undefined
    }
    const event = this.events.shift() as Event | Violation
    if (event instanceof Violation) {
      this.log.push(`< !! ${event.message}`)
      throw event
    }
    this.log.push(`< ${this.describe(event)}`)
    this.checkFrame(event)
    if (event.kind === 'control' && (event.type === 'status' || event.type === 'pull')) {
      this.statusesRead++
    }
    return event
  }

  /** The next event; fails (naming `rule`) when none comes in time */
  async next (expecting: string, rule: string = '-', ms: number = this.timeout): Promise<Event> {
    const event = await this.poll(ms)
    if (event == null) {
      this.log.push(`  (nothing for ${ms} ms)`)
      throw new Violation(rule, `no frame within ${ms} ms; expected ${expecting}`)
    }
    return event
  }

  /**
   * The next event that matters: keepalives are skipped (K-1) and syncs are
   * answered (R-7) when `answerSync` is set
   */
  async read (expecting: string, rule: string = '-', ms: number = this.timeout): Promise<Event> {
    while (true) {
      const event = await this.next(expecting, rule, ms)
      if (event.kind === 'control' && event.type === 'keepalive') {
        this.keepalivesRead++
        continue
      }
      if (event.kind === 'control' && event.type === 'sync' && this.answerSync) {
        await this.answerTheSync(event)
        continue
      }
      return event
    }
  }

  private async answerTheSync (sync: ControlFrame): Promise<void> {
    this.syncsRead++
    const n = uintOf(sync.map, 'n') ?? 0
    check(n <= this.statusesWritten, 'S-10', `sync claims ${n} status-bearing messages read; the kit wrote ${this.statusesWritten}`)
    if (this.syncDelay > 0) {
      const until = Date.now() + this.syncDelay
      for (let left = this.syncDelay; left > 0; left = until - Date.now()) {
        const event = await this.poll(left)
        if (event == null) {
          break
        }
        check(event.kind !== 'block', 'S-10', `block ${event.kind === 'block' ? this.name(event.cid) : ''} arrived after sync, before the status answering it`)
        if (event.kind === 'end' || (event.kind === 'control' && event.type === 'error')) {
          this.events.unshift(event)
          return
        }
      }
    }
    await this.status([], this.bloom ?? null)
  }

  /** Rules every frame from the peer must follow, whatever the transcript */
  private checkFrame (event: Event): void {
    if (event.kind === 'end') {
      return
    }
    check(event.kind !== 'invalid', 'F-3', `the peer wrote an invalid frame (${event.kind === 'invalid' ? event.reason : ''})`)
    if (event.kind === 'block') {
      check(event.bytes.byteLength <= MIN_BLOCK_BYTES, 'L-2', `block of ${event.bytes.byteLength} bytes is over 2 MiB`)
      check(this.options.peer === 'sender', 'C-2', 'a receiver wrote a block')
      return
    }
    check(event.canonical, 'C-1', `${event.type} is not canonical DAG-CBOR`)
    const required = REQUIRED[event.type]
    check(required != null, 'C-2', `unknown message type ${event.type}`)
    const allowed = WRITES[this.options.peer].has(event.type) ||
      (this.options.peerIsClient === true && event.type === (this.options.peer === 'sender' ? 'push' : 'pull'))
    check(allowed, 'C-2', `a ${this.options.peer} wrote ${event.type}`)
    for (const key of required) {
      check(key in event.map, 'C-6', `${event.type} lacks the required key ${key}`)
    }
    for (const key of ['rs', 'sr', 'hs', 'cs', 'roots']) {
      if (key in event.map) {
        const cids = cidsOf(event.map, key)
        check(cids != null, 'C-4', `${event.type}.${key} is not a list of CIDs`)
        check(cids.length <= MIN_LIST, 'L-2', `${event.type}.${key} lists ${cids.length} CIDs, over 10,000`)
      }
    }
    if (event.type === 'error') {
      check(ERROR_CODES.includes(event.map.c as string), 'E-1', `unknown error code ${String(event.map.c)}`)
    }
    if ('bb' in event.map) {
      const bb = event.map.bb
      check(bb instanceof Uint8Array, 'C-4', 'bb is not a byte string')
      if (bb.byteLength === 0) {
        check(event.map.bk === 0, 'B-5', `an empty bb comes with bk ${String(event.map.bk)}, not 0`)
      } else {
        const bk = uintOf(event.map, 'bk')
        check(bk != null && bk >= 1 && bk <= MAX_HASH_COUNT, 'B-5', `Bloom hash count ${String(event.map.bk)} is not 1 to 64`)
        check(bb.byteLength <= MIN_BLOOM_BYTES, 'B-7', `Bloom of ${bb.byteLength} bytes is over 1 MiB`)
      }
    } else {
      check(!('bk' in event.map), 'B-5', `${event.type} has bk without bb`)
    }
  }

  /** One line for the log */
  describe (event: Event): string {
    if (event.kind === 'end') {
      return event.reset ? 'end (reset)' : 'end (closed)'
    }
    if (event.kind === 'invalid') {
      return `invalid frame: ${event.reason}`
    }
    if (event.kind === 'block') {
      return `block ${this.name(event.cid)} (${event.bytes.byteLength} B)`
    }
    const fields = Object.entries(event.map).filter(([key]) => key !== 't').map(([key, value]) => {
      if (value instanceof Uint8Array) {
        return `${key}=${value.byteLength}B`
      }
      const cids = Array.isArray(value) ? cidsOf(event.map, key) : undefined
      if (cids != null) {
        return `${key}=[${cids.slice(0, 8).map(cid => this.name(cid)).join(' ')}${cids.length > 8 ? ` …${cids.length}` : ''}]`
      }
      return `${key}=${JSON.stringify(value)?.slice(0, 80)}`
    })
    return [event.type, ...fields].join(' ')
  }

  // ---- writing -----------------------------------------------------------------

  /** Writes bytes as they are; a stream the peer already reset is logged, not thrown */
  async raw (bytes: Uint8Array, label: string): Promise<void> {
    this.log.push(`> ${label}`)
    try {
      if (!this.stream.send(bytes)) {
        await this.stream.onDrain({ signal: AbortSignal.timeout(this.timeout * 4) })
      }
    } catch (err) {
      this.log.push(`  (write failed: ${(err as Error).message})`)
    }
  }

  /** Writes one frame around `bytes` */
  async send (bytes: Uint8Array, label: string): Promise<void> {
    await this.raw(frame(bytes), label)
  }

  private list (cids: CID[]): string {
    return `[${cids.slice(0, 8).map(cid => this.name(cid)).join(' ')}${cids.length > 8 ? ` …${cids.length}` : ''}]`
  }

  private bloomLabel (bloom: WireBloom | null | undefined): string {
    if (bloom === undefined) {
      return ''
    }
    return bloom === null ? ' bb=0B(clear)' : ` bb=${bloom.bytes.byteLength}B bk=${bloom.hashCount}`
  }

  async pull (rs: CID[], sr: CID[] = [], bloom?: WireBloom | null): Promise<void> {
    this.statusesWritten++
    this.bloom = bloom ?? null
    await this.send(body.pull(rs, sr, bloom), `pull rs=${this.list(rs)} sr=${this.list(sr)}${this.bloomLabel(bloom)}`)
  }

  async push (rs: CID[], hs: CID[] = []): Promise<void> {
    await this.send(body.push(rs, hs), `push rs=${this.list(rs)} hs=${this.list(hs)}`)
  }

  async header (roots: CID[]): Promise<void> {
    await this.send(body.header(roots), `header roots=${this.list(roots)}`)
  }

  async block (cid: CID, bytes: Uint8Array): Promise<void> {
    await this.send(body.block(cid, bytes), `block ${this.name(cid)} (${bytes.byteLength} B)`)
  }

  /** `bloom` undefined: unchanged; null: clear */
  async status (sr: CID[], bloom?: WireBloom | null, rh?: boolean): Promise<void> {
    this.statusesWritten++
    if (bloom !== undefined) {
      this.bloom = bloom
    }
    await this.send(body.status(sr, bloom, rh), `status sr=${this.list(sr)}${this.bloomLabel(bloom)}${rh === true ? ' rh=true' : ''}`)
  }

  /** `n` defaults to the statuses read so far */
  async idle (n: number = this.statusesRead): Promise<void> {
    await this.send(body.idle(n), `idle n=${n}`)
  }

  async sync (n: number = this.statusesRead): Promise<void> {
    await this.send(body.sync(n), `sync n=${n}`)
  }

  async missing (cs: CID[]): Promise<void> {
    await this.send(body.missing(cs), `missing cs=${this.list(cs)}`)
  }

  async done (d: number = 0): Promise<void> {
    await this.send(body.done(d), `done d=${d}`)
  }

  async error (c: string, m: string, cs: CID[] = []): Promise<void> {
    await this.send(body.error(c, m, cs), `error c=${c} m=${JSON.stringify(m)}`)
  }

  async keepalive (): Promise<void> {
    await this.send(body.keepalive(), 'keepalive')
  }

  /** Half-closes the kit's side */
  async closeWrite (): Promise<void> {
    this.log.push('> close')
    try {
      await this.stream.close({ signal: AbortSignal.timeout(this.timeout) })
    } catch {
      // the peer may have reset the stream
    }
  }

  /** Resets the stream (end of a transcript) */
  abort (): void {
    if (this.stream.status === 'open') {
      this.stream.abort(new Error('transcript over'))
    }
  }
}
