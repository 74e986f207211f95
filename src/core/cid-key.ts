import { CID } from 'multiformats/cid'
import { Digest } from 'multiformats/hashes/digest'

/**
 * A compact Map and Set key for a CID: its bytes as a one-byte string.
 * Unlike `cid.toString()` it builds no base32 text and leaves no string
 * cache on the CID, so a set of a million keys stays small (about a third
 * of the memory).
 *
 * @example
 *
 * ```ts
 * const seen = new Set<string>()
 * seen.add(cidKey(cid))
 * cidOfKey(cidKey(cid)).equals(cid) // true
 * ```
 */
export function cidKey (cid: CID): string {
  return String.fromCharCode.apply(null, cid.bytes as unknown as number[])
}

/** The CID a `cidKey` was made from (a copy: it holds no block's bytes) */
export function cidOfKey (key: string): CID {
  const bytes = new Uint8Array(key.length)
  for (let i = 0; i < key.length; i++) {
    bytes[i] = key.charCodeAt(i)
  }
  return decodeCid(bytes)
}

const DAG_PB_CODE = 0x70
const SHA2_256_CODE = 0x12
const SHA2_256_SIZE = 32

/**
 * `CID.decode`, with the common shapes (CIDv0, and CIDv1 of sha2-256 with a
 * one-byte codec) built straight from their bytes, without varint decoding.
 * The CID is a view into `bytes`.
 *
 * @throws {Error} when `bytes` are not exactly one CID
 *
 * @example
 *
 * ```ts
 * decodeCid(cid.bytes).equals(cid) // true
 * ```
 */
export function decodeCid (bytes: Uint8Array): CID {
  if (bytes.length === 34 && bytes[0] === SHA2_256_CODE && bytes[1] === SHA2_256_SIZE) {
    return new CID(0, DAG_PB_CODE, new Digest(SHA2_256_CODE, SHA2_256_SIZE, bytes.subarray(2), bytes), bytes)
  }
  if (bytes.length === COMMON_V1_LENGTH && startsCommonV1(bytes)) {
    const multihash = bytes.subarray(2)
    return new CID(1, bytes[1], new Digest(SHA2_256_CODE, SHA2_256_SIZE, multihash.subarray(2), multihash), bytes)
  }
  return CID.decode(bytes)
}

/**
 * How many bytes the CID at the start of `bytes` takes (`CID.inspectBytes`),
 * read without varint decoding for a CIDv1 of sha2-256 with a one-byte codec
 *
 * @example
 *
 * ```ts
 * cidLength(concat([cid.bytes, blockBytes])) // cid.bytes.length
 * ```
 */
export function cidLength (bytes: Uint8Array): number {
  return startsCommonV1(bytes) ? COMMON_V1_LENGTH : CID.inspectBytes(bytes).size
}

/** The length of a CIDv1 of sha2-256 with a one-byte codec */
const COMMON_V1_LENGTH = 36

/** True when `bytes` start like a CIDv1 of sha2-256 with a one-byte codec */
function startsCommonV1 (bytes: Uint8Array): boolean {
  return bytes[0] === 1 && bytes[1] < 0x80 && bytes[2] === SHA2_256_CODE && bytes[3] === SHA2_256_SIZE
}
