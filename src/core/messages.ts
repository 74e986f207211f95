import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { DEFAULT_MAX_BLOCK_SIZE, DEFAULT_MAX_BLOOM_BYTES, DEFAULT_MAX_BLOOM_HASH_COUNT, DEFAULT_MAX_CIDS_PER_MESSAGE } from '../constants.ts'
import { LimitExceededError, ProtocolError } from '../errors.ts'
import { BloomFilter } from './bloom/bloom-filter.ts'
import { Yielder } from './budget.ts'
import { cidLength as cidLengthOf, decodeCid } from './cid-key.ts'
import { ITEMS_PER_STEP, controlValue, runSteps } from './control-values.ts'
import { Shard } from './pool/shard.ts'

/**
 * The client's first frame of a pull: the DAG's roots, the subgraph roots the
 * client misses (`wants`, never identity CIDs) and a Bloom filter of blocks it
 * holds (none: no `bb`/`bk` keys on the wire).
 */
export interface PullMessage {
  /** The message type (wire `t: "pull"`) */
  type: 'pull'
  /** The roots of the DAG to pull, at least one (wire `rs`) */
  roots: CID[]
  /** Subgraph roots the client misses, never identity CIDs (wire `sr`); empty means the roots */
  wants: CID[]
  /** A Bloom filter of blocks the client holds (wire `bb` and `bk`); absent: no Bloom */
  bloom?: BloomFilter
  /**
   * How many links below each want the sender walks (`dl` on the wire).
   * Absent: the whole subgraph. 0: the wants' own blocks only (a shallow
   * pull), the one value protocol 1.0 defines.
   */
  depthLimit?: 0
  /**
   * CAR Pool (revision 1.2): the buckets this sender sends (wire `sn` and
   * `sh`). Absent: every block. A sharded sender leaves out the raw leaves
   * of other buckets unless they are wants
   */
  shard?: Shard
}

/** The client's first frame of a push: the DAG's roots and hint CIDs the server may hold */
export interface PushMessage {
  /** The message type (wire `t: "push"`) */
  type: 'push'
  /** The roots of the DAG to push, at least one (wire `rs`) */
  roots: CID[]
  /** Roots of related DAGs the server may hold, such as a previous version; may be empty (wire `hs`) */
  hints: CID[]
}

/** The sender's first frame: a CARv1 header (at least one root), so the sender's block frames form a CARv1 stream */
export interface HeaderMessage {
  /** The message type; on the wire the CAR header has no `t` key, only `roots` and `version: 1` */
  type: 'header'
  /** The session's roots, in the order of the first frame's `rs` (wire `roots`) */
  roots: CID[]
}

/** One block, laid out as a CARv1 section (CID bytes then block bytes) */
export interface BlockMessage {
  /** The message type; on the wire a block frame has no `t` key: its body starts with the CID */
  type: 'block'
  /** The block's CID, written first in the frame body */
  cid: CID
  /** The block's data, the rest of the frame body; may be empty. Decoded: a view into the frame body */
  bytes: Uint8Array
}

/**
 * The receiver's graph status. `wants` must be sent now (with their subgraphs
 * less what the Bloom rules out).
 */
export interface StatusMessage {
  /** The message type (wire `t: "status"`) */
  type: 'status'
  /** Subgraph roots the receiver misses, never identity CIDs (wire `sr`); may be empty */
  wants: CID[]
  /**
   * The sender's Bloom from the next block on: `undefined` (no `bb` key on the
   * wire) leaves it unchanged, `null` (an empty `bb`) clears it, a filter
   * replaces it
   */
  bloom?: BloomFilter | null
  /**
   * Set on the first status a push server writes once it holds every root:
   * its Bloom (if any) then describes what it holds under them, and the
   * pushing client may send past its cold-call window
   */
  rootsHeld?: boolean
  /** CAR Pool (revision 1.2): the sender's shard from the next block on (wire `sn` and `sh`); absent leaves it unchanged */
  shard?: Shard
}

/** The sender has sent everything it was asked for, after reading `statuses` status frames */
export interface IdleMessage {
  /** The message type (wire `t: "idle"`) */
  type: 'idle'
  /** Status-bearing messages (a `pull` and every `status`) the sender has read (wire `n`) */
  statuses: number
}

/**
 * The sender has sent every interior block of the current pass and asks for
 * a Bloom of what the receiver holds before it sends the (large) raw leaves;
 * `statuses` counts the status frames it has read
 */
export interface SyncMessage {
  /** The message type (wire `t: "sync"`) */
  type: 'sync'
  /** Status-bearing messages (a `pull` and every `status`) the sender has read (wire `n`) */
  statuses: number
}

/** The receiver holds the whole DAG; the session is over. `duplicates` counts received blocks it already held */
export interface DoneMessage {
  /** The message type (wire `t: "done"`) */
  type: 'done'
  /** Blocks received in the session that the receiver already held; informational (wire `d`) */
  duplicates: number
}

/**
 * The sender does not hold these blocks, or they lie outside the session
 * roots' DAG: the receiver stops asking for them (wire `{ t: "missing", cs }`)
 */
export interface MissingMessage {
  /** The message type (wire `t: "missing"`) */
  type: 'missing'
  /** Blocks the sender does not hold, or wants outside the roots' DAG (wire `cs`) */
  cids: CID[]
}

/**
 * Either side is busy with a long local operation and is still there
 * (wire `{ t: "keepalive" }`); it resets the reader's idle timer but is not progress
 */
export interface KeepaliveMessage {
  /** The message type (wire `t: "keepalive"`) */
  type: 'keepalive'
}

/** Codes carried by error frames */
export type ErrorCode = 'not-found' | 'refused' | 'limit' | 'protocol' | 'verification' | 'internal'

/** Either side ends the session with an error; `cids` names blocks it concerns */
export interface ErrorMessage {
  /** The message type (wire `t: "error"`) */
  type: 'error'
  /** What went wrong (wire `c`) */
  code: ErrorCode
  /** A human-readable reason, cut to 1024 characters when decoded (wire `m`) */
  message: string
  /** CIDs the error concerns, for `not-found` the unavailable blocks; may be empty (wire `cs`) */
  cids: CID[]
}

/** Any frame body of a session, as `encodeMessage` writes and `decodeMessage` reads it: a control message or a block */
export type Message = PullMessage | PushMessage | HeaderMessage | BlockMessage | StatusMessage | IdleMessage | SyncMessage | DoneMessage | MissingMessage | KeepaliveMessage | ErrorMessage

/** Bounds on what a decoded message may hold */
export interface MessageLimits {
  /** Largest block (bytes); default DEFAULT_MAX_BLOCK_SIZE */
  maxBlockSize?: number
  /** Largest Bloom filter (bytes); default DEFAULT_MAX_BLOOM_BYTES */
  maxBloomBytes?: number
  /** Most Bloom hash functions; default DEFAULT_MAX_BLOOM_HASH_COUNT */
  maxBloomHashCount?: number
  /** Most CIDs in one list; default DEFAULT_MAX_CIDS_PER_MESSAGE */
  maxCidsPerMessage?: number
}

/**
 * The item that stands for a block in a streaming session's Bloom filter:
 * the bytes of its CID's multihash, so that a store keyed by multihash (as
 * Helia's is) can describe itself without knowing each block's codec.
 *
 * @example
 *
 * ```ts
 * bloom.add(bloomItem(cid))
 * ```
 */
export function bloomItem (cid: CID): Uint8Array {
  return cid.multihash.bytes
}

/**
 * A Bloom filter holding `cids`, sized the rs-car-mirror way for their
 * number (see BloomFilter.forCapacity), but never larger than `maxBytes`:
 * past that the false positive rate rises instead (PROTOCOL.md, limits).
 *
 * @example
 *
 * ```ts
 * const bloom = bloomOf([...frontier.held()], MAX_SENT_BLOOM_BYTES)
 * ```
 */
export function bloomOf (cids: CID[], maxBytes: number = Infinity): BloomFilter {
  const bloom = emptyBloomFor(cids.length, maxBytes)
  for (const cid of cids) {
    bloom.add(bloomItem(cid))
  }
  return bloom
}

/**
 * Builds the same Bloom filter as {@link bloomOf}, giving the event loop a
 * turn between slices: a receiver's Bloom may hold a hundred thousand CIDs
 * (tens of milliseconds of hashing).
 *
 * @example
 *
 * ```ts
 * const bloom = await bloomOfInSlices(held, MAX_SENT_BLOOM_BYTES, { signal })
 * ```
 */
export async function bloomOfInSlices (cids: readonly CID[], maxBytes: number = Infinity, options: { yielder?: Yielder, signal?: AbortSignal } = {}): Promise<BloomFilter> {
  return bloomOfListsInSlices([cids], maxBytes, options)
}

/**
 * Builds the same Bloom filter as {@link bloomOfInSlices} over the CIDs of
 * several lists together, without copying them into one.
 *
 * @example
 *
 * ```ts
 * const bloom = await bloomOfListsInSlices([walked, recorded], MAX_SENT_BLOOM_BYTES, { signal })
 * ```
 */
export async function bloomOfListsInSlices (lists: ReadonlyArray<readonly CID[]>, maxBytes: number = Infinity, options: { yielder?: Yielder, signal?: AbortSignal } = {}): Promise<BloomFilter> {
  let count = 0
  for (const list of lists) {
    count += list.length
  }
  const bloom = emptyBloomFor(count, maxBytes)
  const yielder = options.yielder ?? new Yielder()
  let added = 0
  for (const list of lists) {
    for (let i = 0; i < list.length; i++) {
      if ((++added & 0x3ff) === 0x3ff) {
        await yielder.maybeYield(options.signal)
      }
      bloom.add(bloomItem(list[i]))
    }
  }
  return bloom
}

/** An empty Bloom sized for `count` items, at most `maxBytes` long */
function emptyBloomFor (count: number, maxBytes: number): BloomFilter {
  const bloom = BloomFilter.forCapacity(count)
  if (bloom.bytes.byteLength <= maxBytes) {
    return bloom
  }
  const hashCount = Math.max(1, Math.round(maxBytes * 8 / count * Math.LN2))
  return new BloomFilter(new Uint8Array(maxBytes), hashCount)
}

const ERROR_CODES = new Set<string>(['not-found', 'refused', 'limit', 'protocol', 'verification', 'internal'])

/** Bytes one CID may take in a first message's lists, counted generously (a sha2-256 link takes 41) */
const BYTES_PER_LISTED_CID = 80

/** The longest text or byte string an unknown key may hold */
const MAX_UNKNOWN_VALUE_BYTES = 256

/**
 * Maps and lists nested deeper than this are a protocol error: no control
 * message nests more than two (the map, a CID list)
 */
const MAX_NESTING = 8

const utf8 = new TextEncoder()

/** The CBOR tag of an IPLD link */
const CID_TAG = 42

/**
 * The largest frame body (bytes) that messages within `limits` can need:
 * the larger of a block frame and a control frame holding a full Bloom and
 * two full CID lists.
 *
 * @example
 *
 * ```ts
 * const decoder = new FrameDecoder(maxFrameSize(limits))
 * ```
 */
export function maxFrameSize (limits: MessageLimits = {}): number {
  const block = (limits.maxBlockSize ?? DEFAULT_MAX_BLOCK_SIZE) + 128
  return Math.max(block, maxFirstFrameSize(limits))
}

/**
 * The most bytes the first message of a session (a `pull` or `push`) may
 * take apart from its Bloom's bits: two full CID lists at 80 bytes per CID,
 * plus 1024 bytes for everything else. With the default 10,000 CIDs per list
 * that is 1,601,024 bytes.
 *
 * @example
 *
 * ```ts
 * maxFirstMessageOverhead({ maxCidsPerMessage: 100 }) // 17024
 * ```
 */
export function maxFirstMessageOverhead (limits: MessageLimits = {}): number {
  return (limits.maxCidsPerMessage ?? DEFAULT_MAX_CIDS_PER_MESSAGE) * 2 * BYTES_PER_LISTED_CID + 1024
}

/**
 * The largest body the first frame of a session (a `pull` or `push`) may
 * have: `maxBloomBytes + maxFirstMessageOverhead(limits)`, i.e.
 * `maxBloomBytes + maxCidsPerMessage × 160 + 1024` (2,649,600 bytes with a
 * 1 MiB Bloom and 10,000 CIDs per list). A server reads the first frame with
 * this limit, then checks the decoded message with `checkFirstMessageSize`,
 * so that the part of the frame that is not Bloom bits stays small whatever
 * the Bloom limit is.
 *
 * @example
 *
 * ```ts
 * const decoder = new FrameDecoder(maxFirstFrameSize(limits))
 * ```
 */
export function maxFirstFrameSize (limits: MessageLimits = {}): number {
  return (limits.maxBloomBytes ?? DEFAULT_MAX_BLOOM_BYTES) + maxFirstMessageOverhead(limits)
}

/**
 * Checks the size of a session's first frame apart from its Bloom: a body of
 * `bodyLength` bytes that decoded to `message` may hold at most
 * `maxFirstMessageOverhead(limits)` bytes besides the Bloom's bits.
 *
 * @throws {LimitExceededError} when the rest of the frame is larger
 *
 * @example
 *
 * ```ts
 * const message = decodeMessage(body, limits)
 * checkFirstMessageSize(body.byteLength, message, limits)
 * ```
 */
export function checkFirstMessageSize (bodyLength: number, message: Message, limits: MessageLimits = {}): void {
  const bloom = (message.type === 'pull' || message.type === 'status') ? message.bloom?.bytes.byteLength ?? 0 : 0
  const max = maxFirstMessageOverhead(limits)
  if (bodyLength - bloom > max) {
    throw new LimitExceededError(`The first ${message.type} frame has ${bodyLength - bloom} bytes besides its Bloom, more than the limit of ${max}`)
  }
}

/**
 * The most CBOR items (each map, array, tag, string, number or simple value
 * counts as one) a control frame may hold: `4 × maxCidsPerMessage + 64`,
 * enough for two full CID lists (a link is two items: its tag and its
 * bytes). A frame with more is rejected before it is decoded.
 *
 * @example
 *
 * ```ts
 * maxControlItems({ maxCidsPerMessage: 10 }) // 104
 * ```
 */
export function maxControlItems (limits: MessageLimits = {}): number {
  return 4 * (limits.maxCidsPerMessage ?? DEFAULT_MAX_CIDS_PER_MESSAGE) + 64
}

/**
 * Encodes a message as a frame body (without the length prefix), in parts
 * so that block bytes are not copied. Control messages come out as canonical
 * DAG-CBOR, the only form `decodeMessage` accepts; a `status` without a
 * Bloom change and a `pull` without a Bloom have no `bb`/`bk` keys.
 *
 * @example
 *
 * ```ts
 * const [body] = encodeMessage({ type: 'idle', statuses: 1 }) // a2 61 6e 01 61 74 64 69 64 6c 65
 * encodeMessage({ type: 'keepalive' }) // [a1 61 74 69 6b 65 65 70 61 6c 69 76 65]
 * ```
 */
export function encodeMessage (message: Message): Uint8Array[] {
  switch (message.type) {
    case 'block':
      return [message.cid.bytes, message.bytes]
    case 'header':
      return [dagCbor.encode({ roots: message.roots, version: 1 })]
    case 'pull':
      return [dagCbor.encode({ t: 'pull', rs: message.roots, sr: message.wants, ...pullBloomFields(message.bloom), ...(message.depthLimit === 0 ? { dl: 0 } : {}), ...shardFields(message.shard) })]
    case 'push':
      return [dagCbor.encode({ t: 'push', rs: message.roots, hs: message.hints })]
    case 'status':
      return [dagCbor.encode({ t: 'status', sr: message.wants, ...statusBloomFields(message.bloom), ...(message.rootsHeld === true ? { rh: true } : {}), ...shardFields(message.shard) })]
    case 'idle':
      return [dagCbor.encode({ t: 'idle', n: message.statuses })]
    case 'sync':
      return [dagCbor.encode({ t: 'sync', n: message.statuses })]
    case 'done':
      return [dagCbor.encode({ t: 'done', d: message.duplicates })]
    case 'missing':
      return [dagCbor.encode({ t: 'missing', cs: message.cids })]
    case 'keepalive':
      return [dagCbor.encode({ t: 'keepalive' })]
    case 'error':
      return [dagCbor.encode({ t: 'error', c: message.code, m: message.message, cs: message.cids })]
    default:
      return unreachable(message)
  }
}

function unreachable (message: never): never {
  throw new ProtocolError(`Cannot encode a message of type ${(message as { type: string }).type}`)
}

type BloomFields = Record<never, never> | { bk: number, bb: Uint8Array }

/** A pull's Bloom: none (or an empty filter) writes no keys */
/** The wire keys of a shard: none without one */
function shardFields (shard?: Shard): { sn?: number, sh?: Uint8Array } {
  return shard == null ? {} : { sn: shard.count, sh: shard.mask }
}

function pullBloomFields (bloom?: BloomFilter): BloomFields {
  return bloom == null || bloom.bytes.byteLength === 0 ? {} : { bk: bloom.hashCount, bb: bloom.bytes }
}

/** A status's Bloom: unchanged writes no keys, cleared (or an empty filter) writes an empty `bb` and `bk: 0` */
function statusBloomFields (bloom?: BloomFilter | null): BloomFields {
  if (bloom === undefined) {
    return {}
  }
  return bloom == null || bloom.bytes.byteLength === 0
    ? { bk: 0, bb: new Uint8Array(0) }
    : { bk: bloom.hashCount, bb: bloom.bytes }
}

/**
 * Decodes a frame body. A body starting with a CID (byte 0x01, or 0x12 for a
 * CIDv0) is a block; one starting with a CBOR map (0xa0 to 0xbb) is a control
 * message, which must be canonical DAG-CBOR: it is scanned (at most
 * `maxControlItems(limits)` items, no indefinite lengths, minimal integers
 * and lengths, sorted keys without duplicates, only tag 42, only 64-bit
 * floats, no `undefined`) before it is decoded. Keys a message does not
 * define are ignored when they hold a scalar (null, boolean, number, or text
 * or bytes of at most 256 bytes).
 *
 * A block's CID is copied out of `body`; its bytes are a view into it.
 *
 * @throws {ProtocolError} for anything malformed
 * @throws {LimitExceededError} for blocks, Bloom filters, lists or item counts over the limits
 *
 * @example
 *
 * ```ts
 * const message = decodeMessage(Uint8Array.of(0xa1, 0x61, 0x74, 0x69, ...new TextEncoder().encode('keepalive')))
 * // { type: 'keepalive' }
 * ```
 */
export function decodeMessage (body: Uint8Array, limits: MessageLimits = {}): Message {
  const first = body[0]
  if (first === 0x01 || first === 0x12) {
    return decodeBlock(body, limits)
  }
  if (first >= 0xa0 && first <= 0xbb) {
    return decodeControl(body, limits)
  }
  throw new ProtocolError(first == null ? 'Empty frame' : `Frame starts with byte 0x${first.toString(16)}, neither a CID nor a map`)
}

function decodeBlock (body: Uint8Array, limits: MessageLimits): BlockMessage {
  let cid: CID
  let cidLength: number
  try {
    // the CID's length from its varints, then the CID from a copy of its
    // bytes: whoever keeps the CID (a frontier, a sent set) must not keep
    // the frame alive, and one CID is built per block, not two
    cidLength = cidLengthOf(body)
    if (cidLength > body.byteLength) {
      throw new RangeError(`the CID needs ${cidLength} bytes, the frame has ${body.byteLength}`)
    }
    checkCidEncoding(body, 0, cidLength, 'A block frame')
    cid = decodeCid(body.slice(0, cidLength))
  } catch (err) {
    if (err instanceof ProtocolError) {
      throw err
    }
    throw new ProtocolError(`Block frame has no valid CID: ${(err as Error).message}`)
  }
  const bytes = body.subarray(cidLength)
  wellFormed(cid, 'A block frame')
  const maxBlockSize = limits.maxBlockSize ?? DEFAULT_MAX_BLOCK_SIZE
  if (bytes.byteLength > maxBlockSize) {
    throw new LimitExceededError(`Block ${cid} has ${bytes.byteLength} bytes, more than the limit of ${maxBlockSize}`)
  }
  return { type: 'block', cid, bytes }
}

/**
 * `decodeMessage` in steps: a generator that pauses every ITEMS_PER_STEP
 * CBOR items of a control frame, so a caller can decode a status of 10,000
 * CIDs (tens of milliseconds) over several turns of the event loop. It
 * returns the message, or throws what `decodeMessage` would.
 *
 * @example
 *
 * ```ts
 * const steps = decodeMessageSteps(frame)
 * let step = steps.next()
 * while (step.done !== true) {
 *   await yielder.maybeYield()
 *   step = steps.next()
 * }
 * const message = step.value
 * ```
 */
export function * decodeMessageSteps (body: Uint8Array, limits: MessageLimits = {}): Generator<void, Message, undefined> {
  const first = body[0]
  if (first >= 0xa0 && first <= 0xbb) {
    return yield * controlSteps(body, limits)
  }
  return decodeMessage(body, limits)
}

function decodeControl (body: Uint8Array, limits: MessageLimits): Message {
  return runSteps(controlSteps(body, limits))
}

function * controlSteps (body: Uint8Array, limits: MessageLimits): Generator<void, Message, undefined> {
  yield * new ControlScanner(body, maxControlItems(limits)).scan()
  // the scanner has checked that this is canonical DAG-CBOR a control message may hold
  const value = yield * controlValue(body)
  if (value == null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array || CID.asCID(value) != null) {
    throw new ProtocolError('Control frame is not a map')
  }
  const map = value as Record<string, unknown>
  const spec = controlSpec(map)
  checkUnknownKeys(map, spec.keys)
  return spec.decode(map, limits)
}

/** The CAR header (a map with `version` and no `t`) or the message its `t` names */
function controlSpec (map: Record<string, unknown>): ControlSpec {
  if (!Object.hasOwn(map, 't') && Object.hasOwn(map, 'version')) {
    return CAR_HEADER
  }
  const type = field(map, 't')
  if (typeof type !== 'string' || !Object.hasOwn(CONTROL, type)) {
    throw new ProtocolError(`Unknown control message type ${describe(type)}`)
  }
  return CONTROL[type]
}

/** How to read one kind of control message: the keys it defines (any other must hold a scalar), and its fields */
interface ControlSpec {
  keys: ReadonlySet<string>
  decode(map: Record<string, unknown>, limits: MessageLimits): Message
}

/** The sender's CARv1 header: `version` 1 and at least one root */
const CAR_HEADER: ControlSpec = {
  keys: new Set(['roots', 'version']),
  decode: (map, limits) => {
    if (field(map, 'version') !== 1) {
      throw new ProtocolError(`CAR header version ${describe(field(map, 'version'))} is not 1`)
    }
    const roots = cidList(map, 'roots', limits)
    if (roots.length === 0) {
      throw new ProtocolError('CAR header lists no roots')
    }
    return { type: 'header', roots }
  }
}

/** Control messages by their `t` */
const CONTROL: Record<string, ControlSpec> = {
  pull: {
    keys: new Set(['t', 'rs', 'sr', 'bb', 'bk', 'dl', 'sn', 'sh']),
    decode: (map, limits) => ({ type: 'pull', roots: cidList(map, 'rs', limits), wants: wantList(map, 'sr', limits), ...optionalBloom(bloomFrom(map, limits) ?? undefined), ...depthLimit(map), ...shardFrom(map) })
  },
  push: {
    keys: new Set(['t', 'rs', 'hs']),
    decode: (map, limits) => ({ type: 'push', roots: cidList(map, 'rs', limits), hints: cidList(map, 'hs', limits) })
  },
  status: {
    keys: new Set(['t', 'sr', 'bb', 'bk', 'rh', 'sn', 'sh']),
    decode: (map, limits) => {
      const rh = field(map, 'rh')
      if (rh !== undefined && typeof rh !== 'boolean') {
        throw new ProtocolError('Field rh is not a boolean')
      }
      return { type: 'status', wants: wantList(map, 'sr', limits), ...optionalBloom(bloomFrom(map, limits)), rootsHeld: rh === true, ...shardFrom(map) }
    }
  },
  idle: {
    keys: new Set(['t', 'n']),
    decode: (map) => ({ type: 'idle', statuses: uint(map, 'n') })
  },
  sync: {
    keys: new Set(['t', 'n']),
    decode: (map) => ({ type: 'sync', statuses: uint(map, 'n') })
  },
  done: {
    keys: new Set(['t', 'd']),
    decode: (map) => ({ type: 'done', duplicates: uint(map, 'd') })
  },
  missing: {
    keys: new Set(['t', 'cs']),
    decode: (map, limits) => ({ type: 'missing', cids: cidList(map, 'cs', limits) })
  },
  keepalive: {
    keys: new Set(['t']),
    decode: () => ({ type: 'keepalive' })
  },
  error: {
    keys: new Set(['t', 'c', 'm', 'cs']),
    decode: (map, limits) => {
      const code = field(map, 'c')
      if (typeof code !== 'string' || !ERROR_CODES.has(code)) {
        throw new ProtocolError(`Error frame has unknown code ${describe(code)}`)
      }
      const text = field(map, 'm') ?? ''
      if (typeof text !== 'string') {
        throw new ProtocolError('Field m is not text')
      }
      return { type: 'error', code: code as ErrorCode, message: text.slice(0, 1024), cids: cidList(map, 'cs', limits) }
    }
  }
}

/** `{ bloom }` when a Bloom is given (a filter, or null to clear), else nothing, so decoded messages carry no `bloom: undefined` key */
function optionalBloom<B extends BloomFilter | null> (bloom: B | undefined): { bloom?: B } {
  return bloom === undefined ? {} : { bloom }
}

/** The map's own value under `key`, never an inherited one */
function field (map: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(map, key) ? map[key] : undefined
}

/** A short printable form of a decoded value for error messages */
function describe (value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.slice(0, 40))
    case 'number':
    case 'bigint':
    case 'boolean':
      return String(value)
    default:
      return value === null ? 'null' : typeof value
  }
}

/** Keys a message does not define are ignored only if they hold a scalar */
function checkUnknownKeys (map: Record<string, unknown>, known: ReadonlySet<string>): void {
  for (const key of Object.keys(map)) {
    if (known.has(key)) {
      continue
    }
    if (!isScalar(map[key])) {
      throw new ProtocolError(`Unknown key ${describe(key)} holds something other than a scalar`)
    }
  }
}

function isScalar (value: unknown): boolean {
  switch (typeof value) {
    case 'boolean':
    case 'number':
    case 'bigint':
      return true
    case 'string':
      // UTF-8 takes at least one byte per UTF-16 code unit, so only short strings need measuring
      return value.length <= MAX_UNKNOWN_VALUE_BYTES && utf8.encode(value).byteLength <= MAX_UNKNOWN_VALUE_BYTES
    case 'object':
      return value === null || (value instanceof Uint8Array && value.byteLength <= MAX_UNKNOWN_VALUE_BYTES)
    default:
      return false
  }
}

function cidList (map: Record<string, unknown>, key: string, limits: MessageLimits): CID[] {
  const list = field(map, key)
  if (list === undefined) {
    return []
  }
  if (!Array.isArray(list)) {
    throw new ProtocolError(`Field ${key} is not a list`)
  }
  const max = limits.maxCidsPerMessage ?? DEFAULT_MAX_CIDS_PER_MESSAGE
  if (list.length > max) {
    throw new LimitExceededError(`Field ${key} lists ${list.length} CIDs, more than the limit of ${max}`)
  }
  return list.map(item => {
    const cid = CID.asCID(item)
    if (cid == null) {
      throw new ProtocolError(`Field ${key} holds something that is not a CID`)
    }
    return wellFormed(cid, `Field ${key}`)
  })
}

/** A list of wants: never an identity CID (its block is in the CID, so there is nothing to send) */
function wantList (map: Record<string, unknown>, key: string, limits: MessageLimits): CID[] {
  const wants = cidList(map, key, limits)
  for (const cid of wants) {
    if (cid.multihash.code === 0x00) {
      throw new ProtocolError(`Field ${key} wants an identity CID`)
    }
  }
  return wants
}

/**
 * multiformats builds a CIDv0 from any bytes that start with a zero version;
 * a real one is dag-pb with a 32-byte sha2-256 digest
 */
function wellFormed (cid: CID, where: string): CID {
  if (cid.version === 0 && (cid.code !== 0x70 || cid.multihash.code !== 0x12 || cid.multihash.size !== 32)) {
    throw new ProtocolError(`${where} holds a malformed CIDv0`)
  }
  return cid
}

function uint (map: Record<string, unknown>, key: string): number {
  const value = field(map, key)
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ProtocolError(`Field ${key} is not an unsigned integer`)
  }
  return value
}

/** A pull's `dl`: absent (the whole subgraph) or 0 (the wants only); any other depth is not defined by protocol 1.0 */
function depthLimit (map: Record<string, unknown>): { depthLimit?: 0 } {
  if (field(map, 'dl') === undefined) {
    return {}
  }
  const depth = uint(map, 'dl')
  if (depth !== 0) {
    throw new ProtocolError(`Field dl is ${depth}: only 0 (the wants only) is defined`)
  }
  return { depthLimit: 0 }
}

/** A pull's or status's shard: `sn` and `sh` come together or not at all */
function shardFrom (map: Record<string, unknown>): { shard?: Shard } {
  const count = field(map, 'sn')
  const mask = field(map, 'sh')
  if (count === undefined && mask === undefined) {
    return {}
  }
  if (count === undefined || mask === undefined) {
    throw new ProtocolError('Fields sn and sh come together')
  }
  if (!(mask instanceof Uint8Array)) {
    throw new ProtocolError('Field sh is not a byte string')
  }
  return { shard: Shard.decode(uint(map, 'sn'), mask) }
}

/**
 * The Bloom of a pull or status: `undefined` without a `bb` key, `null` for
 * an empty `bb` (a clear), else a filter
 */
function bloomFrom (map: Record<string, unknown>, limits: MessageLimits): BloomFilter | null | undefined {
  const bytes = field(map, 'bb')
  if (bytes === undefined) {
    if (field(map, 'bk') !== undefined) {
      throw new ProtocolError('Field bk without a bb')
    }
    return undefined
  }
  if (!(bytes instanceof Uint8Array)) {
    throw new ProtocolError('Field bb is not a byte string')
  }
  if (bytes.byteLength === 0) {
    // writers put bk: 0, readers accept any count
    if (field(map, 'bk') !== undefined) {
      uint(map, 'bk')
    }
    return null
  }
  const hashCount = uint(map, 'bk')
  const maxBytes = limits.maxBloomBytes ?? DEFAULT_MAX_BLOOM_BYTES
  const maxHashCount = limits.maxBloomHashCount ?? DEFAULT_MAX_BLOOM_HASH_COUNT
  if (bytes.byteLength > maxBytes) {
    throw new LimitExceededError(`Bloom filter has ${bytes.byteLength} bytes, more than the limit of ${maxBytes}`)
  }
  if (hashCount < 1 || hashCount > maxHashCount) {
    throw new LimitExceededError(`Bloom filter hash count ${hashCount} is outside 1 to ${maxHashCount}`)
  }
  return new BloomFilter(bytes, hashCount)
}

/**
 * Checks that `bytes[start..end)` is a CID whose varints are minimal: a CIDv0
 * (`12 20` and a 32-byte digest) or a CIDv1 of four minimal varints (version,
 * codec, hash function, digest length) and exactly that many digest bytes.
 * multiformats accepts padded varints, which would give one CID two encodings.
 */
function checkCidEncoding (bytes: Uint8Array, start: number, end: number, where: string): void {
  if (bytes[start] === 0x12) {
    if (end - start !== 34 || bytes[start + 1] !== 0x20) {
      throw new ProtocolError(`${where} holds a malformed CIDv0`)
    }
    return
  }
  let pos = start
  let digestLength = 0
  for (let varint = 0; varint < 4; varint++) {
    let value = 0
    let scale = 1
    for (let length = 1; ; length++) {
      if (pos >= end || length > 9) {
        throw new ProtocolError(`${where} holds a truncated CID`)
      }
      const byte = bytes[pos++]
      value += (byte & 0x7f) * scale
      scale *= 128
      if ((byte & 0x80) === 0) {
        if (length > 1 && byte === 0) {
          throw new ProtocolError(`${where} holds a CID with a padded varint`)
        }
        break
      }
    }
    digestLength = value
  }
  if (end - pos !== digestLength) {
    throw new ProtocolError(`${where} holds a CID whose digest is not ${digestLength} bytes`)
  }
}

/**
 * Walks the CBOR item headers of a control frame without building anything,
 * in time linear in the number of items (string contents are skipped):
 * rejects more than `maxItems` items (LimitExceededError) and anything that
 * is not canonical DAG-CBOR or cannot be a control message (ProtocolError):
 * indefinite lengths, integers or lengths not in their shortest form,
 * non-text or unsorted or repeated map keys, tags other than 42 (whose
 * content must be a CID byte string), `undefined` and simple values other
 * than false, true and null, floats that are not 64-bit, nesting deeper than
 * MAX_NESTING, lengths past the end of the frame and bytes after the map.
 */
class ControlScanner {
  private readonly body: Uint8Array
  private readonly maxItems: number
  private pos = 0
  private items = 0
  /** Items announced by the headers read so far but not read yet */
  private announced = 1
  /** The next item is the content of a tag 42 */
  private linkNext = false
  /** Open containers, level 0 holding the single top-level item: items left (two per map entry) */
  private readonly remaining: number[] = [1]
  private readonly isMap: boolean[] = [false]
  /** Where the last key of each open map is, to check the order of the next */
  private readonly keyStart: number[] = [0]
  private readonly keyLength: number[] = [-1]
  private depth = 0

  constructor (body: Uint8Array, maxItems: number) {
    this.body = body
    this.maxItems = maxItems
  }

  /** Scans the frame, pausing every ITEMS_PER_STEP items */
  * scan (): Generator<void, void, undefined> {
    while (true) {
      if (this.items % ITEMS_PER_STEP === ITEMS_PER_STEP - 1) {
        yield
      }
      while (this.remaining[this.depth] === 0) {
        if (this.depth === 0) {
          if (this.pos !== this.body.byteLength) {
            throw new ProtocolError(`Control frame has ${this.body.byteLength - this.pos} bytes after its map`)
          }
          return
        }
        this.depth--
      }
      this.item()
    }
  }

  /** Reads one item header (and skips a string's contents) */
  private item (): void {
    const { body, depth } = this
    const isKey = this.isMap[depth] && this.remaining[depth] % 2 === 0
    this.remaining[depth]--
    this.announced--
    if (++this.items > this.maxItems) {
      throw new LimitExceededError(`Control frame holds more than ${this.maxItems} CBOR items`)
    }
    if (this.pos >= body.byteLength) {
      throw new ProtocolError('Control frame ends inside its map')
    }
    const initial = body[this.pos++]
    const major = initial >>> 5
    if (isKey && major !== 3) {
      throw new ProtocolError('Control frame has a map key that is not text')
    }
    if (this.linkNext && major !== 2) {
      throw new ProtocolError('Control frame has a tag-42 link that does not hold bytes')
    }
    if (major === 7) {
      this.simple(initial)
      return
    }
    const value = this.argument(initial)
    if (major === 2 || major === 3) {
      this.string(value, isKey)
    } else if (major === 4 || major === 5) {
      this.container(major === 5 ? value * 2 : value, major === 5)
    } else if (major === 6) {
      if (value !== CID_TAG) {
        throw new ProtocolError(`Control frame holds CBOR tag ${value}; only tag 42 (a link) is allowed`)
      }
      // the tagged item fills the tag's place in its container
      this.remaining[depth]++
      this.announced++
      this.linkNext = true
    }
    // majors 0 and 1 (integers) need nothing more
  }

  /** false, true, null and 64-bit floats; nothing else of major type 7 */
  private simple (initial: number): void {
    const info = initial & 0x1f
    if (info === 20 || info === 21 || info === 22) {
      return
    }
    if (info === 27) {
      if (this.body.byteLength - this.pos < 8) {
        throw new ProtocolError('Control frame ends inside a float')
      }
      this.pos += 8
      return
    }
    if (info === 23) {
      throw new ProtocolError('Control frame holds undefined')
    }
    if (info === 25 || info === 26) {
      throw new ProtocolError('Control frame holds a float that is not 64-bit')
    }
    throw new ProtocolError(`Control frame holds CBOR simple value 0x${initial.toString(16)}`)
  }

  /** The integer, length or tag number of a header, which must be in its shortest form */
  private argument (initial: number): number {
    const info = initial & 0x1f
    if (info < 24) {
      return info
    }
    if (info > 27) {
      throw new ProtocolError(info === 31 ? 'Control frame holds an indefinite-length item' : `Control frame holds a reserved CBOR header byte 0x${initial.toString(16)}`)
    }
    const { body, pos } = this
    const size = 1 << (info - 24)
    if (body.byteLength - pos < size) {
      throw new ProtocolError('Control frame ends inside an item header')
    }
    this.pos += size
    let value: number
    let smallest: number
    if (size === 1) {
      value = body[pos]
      smallest = 24
    } else if (size === 2) {
      value = body[pos] * 0x100 + body[pos + 1]
      smallest = 0x100
    } else if (size === 4) {
      value = readUint32(body, pos)
      smallest = 0x1_0000
    } else {
      // past 2^53 this is approximate, which only matters for comparisons with the frame length
      value = readUint32(body, pos) * 0x1_0000_0000 + readUint32(body, pos + 4)
      smallest = 0x1_0000_0000
    }
    if (value < smallest) {
      throw new ProtocolError('Control frame holds an integer or length not in its shortest form')
    }
    return value
  }

  private string (length: number, isKey: boolean): void {
    const { body, pos } = this
    if (length > body.byteLength - pos) {
      throw new ProtocolError('Control frame ends inside a string')
    }
    if (isKey) {
      checkKeyOrder(body, this.keyStart[this.depth], this.keyLength[this.depth], pos, length)
      this.keyStart[this.depth] = pos
      this.keyLength[this.depth] = length
    }
    if (this.linkNext) {
      if (length === 0 || body[pos] !== 0x00) {
        throw new ProtocolError('Control frame has a tag-42 link that does not start with a zero byte')
      }
      checkCidEncoding(body, pos + 1, pos + length, 'A link')
      if (this.inWantList() && isIdentityCid(body, pos + 1)) {
        // refused before the frame is decoded: a status of 10,000 such wants costs no CID objects
        throw new ProtocolError('A want is an identity CID: its data is in the CID')
      }
      this.linkNext = false
    }
    this.pos += length
  }

  /** True inside the list of the top-level `sr` key (the wants of a pull or status) */
  private inWantList (): boolean {
    const start = this.keyStart[1]
    return this.depth === 2 && !this.isMap[2] && this.keyLength[1] === 2 && this.body[start] === 0x73 && this.body[start + 1] === 0x72
  }

  /** A list or map of `count` items (two per map entry) */
  private container (count: number, isMap: boolean): void {
    // every item takes at least one byte
    if (count > this.body.byteLength - this.pos) {
      throw new ProtocolError(`Control frame announces ${count} items but has only ${this.body.byteLength - this.pos} bytes left`)
    }
    this.announced += count
    if (this.items + this.announced > this.maxItems) {
      throw new LimitExceededError(`Control frame holds more than ${this.maxItems} CBOR items`)
    }
    if (count === 0) {
      return
    }
    if (this.depth === MAX_NESTING) {
      throw new ProtocolError(`Control frame nests more than ${MAX_NESTING} deep`)
    }
    this.depth++
    this.remaining[this.depth] = count
    this.isMap[this.depth] = isMap
    this.keyStart[this.depth] = 0
    this.keyLength[this.depth] = -1
  }
}

/** True when the CID at `pos` (already checked well-formed) is a CIDv1 with the identity multihash */
function isIdentityCid (bytes: Uint8Array, pos: number): boolean {
  if (bytes[pos] !== 0x01) {
    // a CIDv0 is a sha2-256 multihash
    return false
  }
  // skip the codec varint; the multihash code follows
  let i = pos + 1
  while ((bytes[i] & 0x80) !== 0) {
    i++
  }
  return bytes[i + 1] === 0x00
}

function readUint32 (bytes: Uint8Array, pos: number): number {
  return bytes[pos] * 0x100_0000 + ((bytes[pos + 1] << 16) | (bytes[pos + 2] << 8) | bytes[pos + 3])
}

/** DAG-CBOR map keys are sorted by length, then bytewise, and never repeat */
function checkKeyOrder (body: Uint8Array, previousStart: number, previousLength: number, start: number, length: number): void {
  if (previousLength < 0 || length > previousLength) {
    return
  }
  if (length === previousLength) {
    for (let i = 0; i < length; i++) {
      const a = body[previousStart + i]
      const b = body[start + i]
      if (a !== b) {
        if (a < b) {
          return
        }
        throw new ProtocolError('Control frame map keys are not in canonical order')
      }
    }
    throw new ProtocolError('Control frame repeats a map key')
  }
  throw new ProtocolError('Control frame map keys are not in canonical order')
}
