import { CID } from 'multiformats/cid'
import { ProtocolError } from '../errors.ts'

/** The decoder pauses (yields) after this many items, so a caller can give the event loop a turn */
export const ITEMS_PER_STEP = 1024

const CID_TAG = 42
const text = new TextDecoder()

/**
 * Decodes the value of a control frame that ControlScanner has accepted
 * (canonical DAG-CBOR: definite lengths, text map keys in order, tag 42
 * only, on CID bytes) into what `@ipld/dag-cbor` would give: plain objects,
 * arrays, strings, byte arrays (copies), numbers (BigInt past 2^53),
 * booleans, null and CIDs (copies: a CID never keeps the frame alive).
 * It is a generator that pauses every ITEMS_PER_STEP items: a status of
 * 10,000 CIDs takes tens of milliseconds to decode, which a caller can
 * spread over several turns of the event loop.
 *
 * @example
 *
 * ```ts
 * const steps = controlValue(frame)
 * let step = steps.next()
 * while (step.done !== true) {
 *   await yielder.maybeYield()
 *   step = steps.next()
 * }
 * const map = step.value
 * ```
 */
export function * controlValue (body: Uint8Array): Generator<void, unknown, undefined> {
  return yield * new ValueReader(body).item()
}

/** Runs `steps` to its end without pausing */
export function runSteps<T> (steps: Generator<void, T, undefined>): T {
  let step = steps.next()
  while (step.done !== true) {
    step = steps.next()
  }
  return step.value
}

class ValueReader {
  private readonly body: Uint8Array
  private readonly view: DataView
  private pos = 0
  private count = 0

  constructor (body: Uint8Array) {
    this.body = body
    this.view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  }

  * item (): Generator<void, unknown, undefined> {
    if (++this.count % ITEMS_PER_STEP === 0) {
      yield
    }
    const initial = this.body[this.pos++]
    const major = initial >>> 5
    if (major === 7) {
      return this.simple(initial)
    }
    const argument = this.argument(initial)
    switch (major) {
      case 0:
        return argument
      case 1:
        return typeof argument === 'bigint' ? -1n - argument : -1 - argument
      case 2:
        return this.bytes(Number(argument)).slice()
      case 3:
        return text.decode(this.bytes(Number(argument)))
      case 4:
        return yield * this.list(Number(argument))
      case 5:
        return yield * this.map(Number(argument))
      default:
        // major 6: the scanner lets only tag 42 on a byte string through
        if (argument !== CID_TAG) {
          throw new ProtocolError(`Control frame holds CBOR tag ${argument}`)
        }
        return this.link()
    }
  }

  private * list (length: number): Generator<void, unknown[], undefined> {
    const list = new Array<unknown>(length)
    for (let i = 0; i < length; i++) {
      // lists of links (wants, roots) are read without a nested generator each
      if (this.body[this.pos] === 0xd8 && this.body[this.pos + 1] === CID_TAG) {
        if (++this.count % ITEMS_PER_STEP === 0) {
          yield
        }
        this.pos += 2
        list[i] = this.link()
      } else {
        list[i] = yield * this.item()
      }
    }
    return list
  }

  private * map (entries: number): Generator<void, Record<string, unknown>, undefined> {
    const map: Record<string, unknown> = {}
    for (let i = 0; i < entries; i++) {
      const key = yield * this.item()
      const value = yield * this.item()
      // an own property even for a key such as __proto__
      Object.defineProperty(map, String(key), { value, enumerable: true, writable: true, configurable: true })
    }
    return map
  }

  /** The CID in the byte string after a tag 42 (its first byte is the 0x00 multibase prefix) */
  private link (): CID {
    const initial = this.body[this.pos++]
    const bytes = this.bytes(Number(this.argument(initial)))
    try {
      return CID.decode(bytes.slice(1))
    } catch (err) {
      throw new ProtocolError(`Control frame holds a link that is not a CID: ${(err as Error).message}`)
    }
  }

  private bytes (length: number): Uint8Array {
    const bytes = this.body.subarray(this.pos, this.pos + length)
    this.pos += length
    return bytes
  }

  private argument (initial: number): number | bigint {
    const info = initial & 0x1f
    if (info < 24) {
      return info
    }
    const pos = this.pos
    switch (info) {
      case 24:
        this.pos += 1
        return this.body[pos]
      case 25:
        this.pos += 2
        return this.view.getUint16(pos)
      case 26:
        this.pos += 4
        return this.view.getUint32(pos)
      default: {
        this.pos += 8
        const value = this.view.getBigUint64(pos)
        return value > BigInt(Number.MAX_SAFE_INTEGER) ? value : Number(value)
      }
    }
  }

  /** false, true, null or a 64-bit float (the scanner allows nothing else); DAG-CBOR has no NaN or infinities */
  private simple (initial: number): unknown {
    switch (initial) {
      case 0xf4:
        return false
      case 0xf5:
        return true
      case 0xf6:
        return null
      default: {
        const value = this.view.getFloat64(this.pos)
        this.pos += 8
        if (!Number.isFinite(value)) {
          throw new ProtocolError('Control frame is not DAG-CBOR: it holds a NaN or an infinity')
        }
        return value
      }
    }
  }
}
