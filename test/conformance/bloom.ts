/**
 * The kit's Bloom filter, written from PROTOCOL.md §5 (B-1 to B-4) on the
 * native XXH3 of `@node-rs/xxhash`, so a peer is checked against the document
 * and not against src/core/bloom.
 */

import { xxh3 } from '@node-rs/xxhash'
import type { WireBloom } from './wire.ts'
import type { CID } from 'multiformats/cid'

export class KitBloom implements WireBloom {
  readonly bytes: Uint8Array
  readonly hashCount: number

  constructor (byteLength: number, hashCount: number, bytes?: Uint8Array) {
    this.bytes = bytes ?? new Uint8Array(byteLength)
    this.hashCount = hashCount
  }

  /** B-3: k indices by rejection sampling against the next power of two */
  indices (item: Uint8Array): number[] {
    const m = this.bytes.byteLength * 8
    if (m === 0) {
      return []
    }
    let p = 1n
    while (p < BigInt(m)) {
      p *= 2n
    }
    const out: number[] = []
    for (let seed = 0n; out.length < this.hashCount; seed++) {
      const v = xxh3.xxh64(item, seed) % p
      if (v < BigInt(m)) {
        out.push(Number(v))
      }
      // otherwise: discard the index and take the next seed
    }
    return out
  }

  add (item: Uint8Array): void {
    for (const i of this.indices(item)) {
      this.bytes[i >> 3] |= 1 << (i & 7)
    }
  }

  has (item: Uint8Array): boolean {
    return this.bytes.byteLength > 0 && this.indices(item).every(i => (this.bytes[i >> 3] & (1 << (i & 7))) !== 0)
  }

  /** B-1: a block's item is its multihash */
  holds (cid: CID): boolean {
    return this.has(cid.multihash.bytes)
  }
}

/**
 * A Bloom holding `cids`. The default 200 bytes is not a power of two, so
 * rejection sampling (B-3) is exercised; 5 hashes keep false positives rare.
 */
export function bloomOf (cids: CID[], byteLength: number = 200, hashCount: number = 5): KitBloom {
  const bloom = new KitBloom(byteLength, hashCount)
  for (const cid of cids) {
    bloom.add(cid.multihash.bytes)
  }
  return bloom
}
