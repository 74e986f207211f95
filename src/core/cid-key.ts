import { CID } from 'multiformats/cid'

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
  return CID.decode(bytes)
}
