import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { DEFAULT_MAX_BLOCK_SIZE, DEFAULT_MAX_BLOOM_BYTES, DEFAULT_MAX_BLOOM_HASH_COUNT, DEFAULT_MAX_CIDS_PER_MESSAGE } from '../constants.ts'
import { LimitExceededError, ProtocolError } from '../errors.ts'
import { BloomFilter } from './bloom/bloom-filter.ts'

/**
 * The client's first frame of a pull: the DAG's roots, the subgraph roots the
 * client misses (`wants`) and a Bloom filter of blocks it holds.
 */
export interface PullMessage {
  type: 'pull'
  roots: CID[]
  wants: CID[]
  bloom?: BloomFilter
}

/** The client's first frame of a push: the DAG's roots and hint CIDs the server may hold */
export interface PushMessage {
  type: 'push'
  roots: CID[]
  hints: CID[]
}

/** The sender's first frame: a CARv1 header, so the sender's block frames form a CARv1 stream */
export interface HeaderMessage {
  type: 'header'
  roots: CID[]
}

/** One block, laid out as a CARv1 section (CID bytes then block bytes) */
export interface BlockMessage {
  type: 'block'
  cid: CID
  bytes: Uint8Array
}

/**
 * The receiver's graph status. `wants` must be sent now (with their subgraphs
 * less what the Bloom rules out); a `bloom` replaces the one the sender uses.
 */
export interface StatusMessage {
  type: 'status'
  wants: CID[]
  bloom?: BloomFilter
  /**
   * Set on the first status a push server writes once it holds every root:
   * its Bloom (if any) then describes what it holds under them, and the
   * pushing client may send past its cold-call window
   */
  rootsHeld?: boolean
}

/** The sender has sent everything it was asked for, after reading `statuses` status frames */
export interface IdleMessage {
  type: 'idle'
  statuses: number
}

/**
 * The sender has sent every interior block of the current pass and asks for
 * a Bloom of what the receiver holds before it sends the (large) raw leaves;
 * `statuses` counts the status frames it has read
 */
export interface SyncMessage {
  type: 'sync'
  statuses: number
}

/** The receiver holds the whole DAG; the session is over. `duplicates` counts received blocks it already held */
export interface DoneMessage {
  type: 'done'
  duplicates: number
}

/** Codes carried by error frames */
export type ErrorCode = 'not-found' | 'refused' | 'limit' | 'protocol' | 'verification' | 'internal'

/** Either side ends the session with an error; `cids` names blocks it concerns */
export interface ErrorMessage {
  type: 'error'
  code: ErrorCode
  message: string
  cids: CID[]
}

export type Message = PullMessage | PushMessage | HeaderMessage | BlockMessage | StatusMessage | IdleMessage | SyncMessage | DoneMessage | ErrorMessage

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
 * number (see BloomFilter.forCapacity).
 *
 * @example
 *
 * ```ts
 * const bloom = bloomOf([...frontier.held()])
 * ```
 */
export function bloomOf (cids: CID[]): BloomFilter {
  const bloom = BloomFilter.forCapacity(cids.length)
  for (const cid of cids) {
    bloom.add(bloomItem(cid))
  }
  return bloom
}

const ERROR_CODES = new Set<string>(['not-found', 'refused', 'limit', 'protocol', 'verification', 'internal'])

/** The largest frame body (bytes) that messages within `limits` can need */
export function maxFrameSize (limits: MessageLimits = {}): number {
  const block = (limits.maxBlockSize ?? DEFAULT_MAX_BLOCK_SIZE) + 128
  const control = (limits.maxBloomBytes ?? DEFAULT_MAX_BLOOM_BYTES) + (limits.maxCidsPerMessage ?? DEFAULT_MAX_CIDS_PER_MESSAGE) * 2 * 80 + 1024
  return Math.max(block, control)
}

/**
 * Encodes a message as a frame body (without the length prefix), in parts
 * so that block bytes are not copied.
 *
 * @example
 *
 * ```ts
 * const [body] = encodeMessage({ type: 'idle', statuses: 1 }) // a2 61 6e 01 61 74 64 69 64 6c 65
 * ```
 */
export function encodeMessage (message: Message): Uint8Array[] {
  switch (message.type) {
    case 'block':
      return [message.cid.bytes, message.bytes]
    case 'header':
      return [dagCbor.encode({ roots: message.roots, version: 1 })]
    case 'pull':
      return [dagCbor.encode({ t: 'pull', rs: message.roots, sr: message.wants, ...bloomFields(message.bloom) })]
    case 'push':
      return [dagCbor.encode({ t: 'push', rs: message.roots, hs: message.hints })]
    case 'status':
      return [dagCbor.encode({ t: 'status', sr: message.wants, ...bloomFields(message.bloom), ...(message.rootsHeld === true ? { rh: true } : {}) })]
    case 'idle':
      return [dagCbor.encode({ t: 'idle', n: message.statuses })]
    case 'sync':
      return [dagCbor.encode({ t: 'sync', n: message.statuses })]
    case 'done':
      return [dagCbor.encode({ t: 'done', d: message.duplicates })]
    case 'error':
      return [dagCbor.encode({ t: 'error', c: message.code, m: message.message, cs: message.cids })]
    default:
      throw new ProtocolError(`Cannot encode a message of type ${(message as { type: string }).type}`)
  }
}

function bloomFields (bloom?: BloomFilter): { bk: number, bb: Uint8Array } {
  return bloom == null || bloom.bytes.byteLength === 0
    ? { bk: 0, bb: new Uint8Array(0) }
    : { bk: bloom.hashCount, bb: bloom.bytes }
}

/**
 * Decodes a frame body. A body starting with a CID (byte 0x01, or 0x12 for a
 * CIDv0) is a block; one starting with a CBOR map (0xa0 to 0xbb) is a control
 * message.
 *
 * @throws {ProtocolError} for anything malformed
 * @throws {LimitExceededError} for blocks, Bloom filters or lists over the limits
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
  let bytes: Uint8Array
  try {
    [cid, bytes] = CID.decodeFirst(body)
  } catch (err) {
    throw new ProtocolError(`Block frame has no valid CID: ${(err as Error).message}`)
  }
  wellFormed(cid, 'A block frame')
  const maxBlockSize = limits.maxBlockSize ?? DEFAULT_MAX_BLOCK_SIZE
  if (bytes.byteLength > maxBlockSize) {
    throw new LimitExceededError(`Block ${cid} has ${bytes.byteLength} bytes, more than the limit of ${maxBlockSize}`)
  }
  return { type: 'block', cid, bytes }
}

function decodeControl (body: Uint8Array, limits: MessageLimits): Message {
  let value: unknown
  try {
    value = dagCbor.decode(body)
  } catch (err) {
    throw new ProtocolError(`Control frame is not DAG-CBOR: ${(err as Error).message}`)
  }
  if (value == null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ProtocolError('Control frame is not a map')
  }
  const map = value as Record<string, unknown>

  if (!('t' in map) && 'version' in map) {
    if (map.version !== 1) {
      throw new ProtocolError(`CAR header version ${String(map.version)} is not 1`)
    }
    return { type: 'header', roots: cidList(map, 'roots', limits) }
  }

  switch (map.t) {
    case 'pull':
      return { type: 'pull', roots: cidList(map, 'rs', limits), wants: cidList(map, 'sr', limits), bloom: bloomFrom(map, limits) }
    case 'push':
      return { type: 'push', roots: cidList(map, 'rs', limits), hints: cidList(map, 'hs', limits) }
    case 'status': {
      if (map.rh != null && typeof map.rh !== 'boolean') {
        throw new ProtocolError('Field rh is not a boolean')
      }
      return { type: 'status', wants: cidList(map, 'sr', limits), bloom: bloomFrom(map, limits), rootsHeld: map.rh === true }
    }
    case 'idle':
      return { type: 'idle', statuses: uint(map, 'n') }
    case 'sync':
      return { type: 'sync', statuses: uint(map, 'n') }
    case 'done':
      return { type: 'done', duplicates: uint(map, 'd') }
    case 'error': {
      const code = map.c
      if (typeof code !== 'string' || !ERROR_CODES.has(code)) {
        throw new ProtocolError(`Error frame has unknown code ${String(code)}`)
      }
      return { type: 'error', code: code as ErrorCode, message: typeof map.m === 'string' ? map.m.slice(0, 1024) : '', cids: cidList(map, 'cs', limits) }
    }
    default:
      throw new ProtocolError(`Unknown control message type ${String(map.t)}`)
  }
}

function cidList (map: Record<string, unknown>, key: string, limits: MessageLimits): CID[] {
  const list = map[key] ?? []
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
  const value = map[key]
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ProtocolError(`Field ${key} is not an unsigned integer`)
  }
  return value
}

function bloomFrom (map: Record<string, unknown>, limits: MessageLimits): BloomFilter | undefined {
  const bytes = map.bb ?? new Uint8Array(0)
  if (!(bytes instanceof Uint8Array)) {
    throw new ProtocolError('Field bb is not a byte string')
  }
  if (bytes.byteLength === 0) {
    return undefined
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
