/**
 * The conformance kit's own codec for /car-mirror/stream/1.0.0, written from
 * docs/PROTOCOL.md and independent of src/: it encodes the frames the kit
 * writes and parses (and checks) the frames a peer writes.
 */

import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { concat } from 'uint8arrays/concat'
import { equals } from 'uint8arrays/equals'

export const PROTOCOL = '/car-mirror/stream/1.0.0'

/** Minimums of PROTOCOL.md L-1 */
export const MiB = 1024 * 1024
export const MIN_BLOCK_BYTES = 2 * MiB
export const MIN_BLOOM_BYTES = MiB
export const MAX_HASH_COUNT = 64
export const MIN_LIST = 10_000
export const MIN_ROOTS = 1000

/** A Bloom as the wire carries it */
export interface WireBloom {
  bytes: Uint8Array
  hashCount: number
}

/** The minimal unsigned LEB128 encoding of `value` */
export function varint (value: number): Uint8Array {
  const out: number[] = []
  let rest = value
  while (rest >= 0x80) {
    out.push((rest % 128) | 0x80)
    rest = Math.floor(rest / 128)
  }
  out.push(rest)
  return Uint8Array.from(out)
}

/** `value` as LEB128 padded to `bytes` bytes: not minimal when `bytes` is more than needed */
export function paddedVarint (value: number, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes)
  let rest = value
  for (let i = 0; i < bytes; i++) {
    out[i] = (rest % 128) | (i < bytes - 1 ? 0x80 : 0)
    rest = Math.floor(rest / 128)
  }
  return out
}

/** A frame: minimal length prefix, then the body */
export function frame (body: Uint8Array): Uint8Array {
  return concat([varint(body.byteLength), body])
}

/** Canonical DAG-CBOR */
export function cbor (value: unknown): Uint8Array {
  return dagCbor.encode(value)
}

function bloomKeys (bloom: WireBloom | null | undefined): Record<string, unknown> {
  if (bloom === undefined) {
    return {}
  }
  if (bloom === null) {
    return { bb: new Uint8Array(0), bk: 0 }
  }
  return { bb: bloom.bytes, bk: bloom.hashCount }
}

/** Bodies of the messages of PROTOCOL.md §4, as the kit writes them */
export const body = {
  /** `bloom` undefined: no `bb`/`bk` keys; null: an empty `bb` with `bk: 0` */
  pull: (rs: CID[], sr: CID[] = [], bloom?: WireBloom | null): Uint8Array => cbor({ t: 'pull', rs, sr, ...bloomKeys(bloom) }),
  push: (rs: CID[], hs: CID[] = []): Uint8Array => cbor({ t: 'push', rs, hs }),
  header: (roots: CID[]): Uint8Array => cbor({ roots, version: 1 }),
  block: (cid: CID, bytes: Uint8Array): Uint8Array => concat([cid.bytes, bytes]),
  /** `bloom` undefined: unchanged (no keys); null: clear; else replace */
  status: (sr: CID[], bloom?: WireBloom | null, rh?: boolean): Uint8Array => cbor({ t: 'status', sr, ...bloomKeys(bloom), ...(rh === true ? { rh: true } : {}) }),
  idle: (n: number): Uint8Array => cbor({ t: 'idle', n }),
  sync: (n: number): Uint8Array => cbor({ t: 'sync', n }),
  missing: (cs: CID[]): Uint8Array => cbor({ t: 'missing', cs }),
  done: (d: number = 0): Uint8Array => cbor({ t: 'done', d }),
  error: (c: string, m: string, cs: CID[] = []): Uint8Array => cbor({ t: 'error', c, m, cs }),
  keepalive: (): Uint8Array => cbor({ t: 'keepalive' })
}

export const ERROR_CODES = ['not-found', 'refused', 'limit', 'protocol', 'verification', 'internal']

/** Required keys of each message type (PROTOCOL.md §4, C-6) */
export const REQUIRED: Record<string, string[]> = {
  pull: ['t', 'rs', 'sr'],
  push: ['t', 'rs', 'hs'],
  header: ['roots', 'version'],
  status: ['t', 'sr'],
  idle: ['t', 'n'],
  sync: ['t', 'n'],
  missing: ['t', 'cs'],
  done: ['t', 'd'],
  error: ['t', 'c', 'm', 'cs'],
  keepalive: ['t']
}

/** A frame the peer wrote, parsed */
export type Frame =
  | { kind: 'block', cid: CID, bytes: Uint8Array, body: Uint8Array }
  | { kind: 'control', type: string, map: Record<string, unknown>, body: Uint8Array, canonical: boolean }
  | { kind: 'invalid', reason: string, body: Uint8Array }

/** Parses a frame body the way PROTOCOL.md §3 and §4 describe; never throws */
export function parseBody (bytes: Uint8Array): Frame {
  const first = bytes[0]
  if (first === 0x01 || first === 0x12) {
    try {
      const [cid, rest] = CID.decodeFirst(bytes)
      return { kind: 'block', cid, bytes: rest, body: bytes }
    } catch (err) {
      return { kind: 'invalid', reason: `block frame without a valid CID: ${(err as Error).message}`, body: bytes }
    }
  }
  if (first == null || first < 0xa0 || first > 0xbb) {
    return { kind: 'invalid', reason: first == null ? 'empty body' : `first byte 0x${first.toString(16)}`, body: bytes }
  }
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    return { kind: 'invalid', reason: `not DAG-CBOR: ${(err as Error).message}`, body: bytes }
  }
  if (value == null || typeof value !== 'object' || Array.isArray(value)) {
    return { kind: 'invalid', reason: 'not a map', body: bytes }
  }
  const map = value as Record<string, unknown>
  let type = '?'
  if (typeof map.t === 'string') {
    type = map.t
  } else if ('version' in map && !('t' in map)) {
    type = 'header'
  }
  return { kind: 'control', type, map, body: bytes, canonical: equals(cbor(map), bytes) }
}

/** The CIDs of a list field, or undefined when it is not a list of CIDs */
export function cidsOf (map: Record<string, unknown>, key: string): CID[] | undefined {
  const list = map[key]
  if (!Array.isArray(list)) {
    return undefined
  }
  const cids = list.map(item => CID.asCID(item))
  return cids.every(cid => cid != null) ? cids as CID[] : undefined
}

/** An unsigned integer field, or undefined */
export function uintOf (map: Record<string, unknown>, key: string): number | undefined {
  const value = map[key]
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined
}

/** True for a CID whose multihash is the identity function */
export function isIdentity (cid: CID): boolean {
  return cid.multihash.code === 0x00
}

/** CBOR written item by item, for frames that break the encoding rules on purpose */
export const raw = {
  /** An item head: major type and argument, minimal unless `bytes` (1, 2, 4 or 8 argument bytes) is given */
  head (major: number, value: number, bytes?: 1 | 2 | 4 | 8): Uint8Array {
    const size = bytes ?? [0, 1, 2, 4, 8][[24, 0x100, 0x10000, 0x100000000].filter(limit => value >= limit).length]
    if (size === 0) {
      return Uint8Array.of((major << 5) | value)
    }
    const out = new Uint8Array(1 + size)
    out[0] = (major << 5) | ({ 1: 24, 2: 25, 4: 26, 8: 27 } as Record<number, number>)[size]
    let rest = BigInt(value)
    for (let i = size; i >= 1; i--) {
      out[i] = Number(rest & 0xffn)
      rest >>= 8n
    }
    return out
  },
  uint: (value: number, bytes?: 1 | 2 | 4 | 8): Uint8Array => raw.head(0, value, bytes),
  bytes: (value: Uint8Array): Uint8Array => concat([raw.head(2, value.byteLength), value]),
  text: (value: string): Uint8Array => {
    const bytes = new TextEncoder().encode(value)
    return concat([raw.head(3, bytes.byteLength), bytes])
  },
  array: (items: Uint8Array[]): Uint8Array => concat([raw.head(4, items.length), ...items]),
  /** Entries written in the order given (canonical or not) */
  map: (entries: Array<[string, Uint8Array]>): Uint8Array => concat([raw.head(5, entries.length), ...entries.flatMap(([key, value]) => [raw.text(key), value])]),
  /** A tag-42 link */
  link: (cid: CID): Uint8Array => concat([Uint8Array.of(0xd8, 0x2a), raw.bytes(concat([Uint8Array.of(0), cid.bytes]))]),
  links: (cids: CID[]): Uint8Array => raw.array(cids.map(cid => raw.link(cid)))
}
