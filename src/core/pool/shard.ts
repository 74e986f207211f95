/**
 * @packageDocumentation
 *
 * A shard of a CAR Pool pull: the buckets of the block space one provider is
 * asked to send. The block space is cut into `count` buckets by the first
 * four bytes of each block's multihash digest (big-endian, modulo `count`);
 * a shard is the set of buckets a provider owns. On the wire it is two keys
 * of `pull` and `status` (PROTOCOL.md §4.1, §4.4): `sn`, the bucket count,
 * and `sh`, a bitmask of `ceil(sn / 8)` bytes in which bucket `b` is bit
 * `b % 8` (least significant first) of byte `floor(b / 8)`.
 */

import * as raw from 'multiformats/codecs/raw'
import { ProtocolError } from '../../errors.ts'
import type { CID } from 'multiformats/cid'

/** Most buckets a shard may cut the block space into (its mask is then 128 bytes) */
export const MAX_SHARD_BUCKETS = 1024

/**
 * The bucket of a block: the first four bytes of its multihash digest, as a
 * big-endian number, modulo `buckets`
 *
 * @example
 *
 * ```ts
 * bucketOf(cid, 64) // 0..63
 * ```
 */
export function bucketOf (cid: CID, buckets: number): number {
  const digest = cid.multihash.digest
  let value = 0
  for (let i = 0; i < 4; i++) {
    value = value * 256 + (digest[i] ?? 0)
  }
  return value % buckets
}

/**
 * The buckets one provider sends, out of `count`
 *
 * @example
 *
 * ```ts
 * const shard = Shard.of(4, [0, 2]) // sn: 4, sh: 0x05
 * shard.sends(rawLeafCid) // true when the leaf's bucket is 0 or 2
 * ```
 */
export class Shard {
  /** How many buckets the block space is cut into (`sn`) */
  readonly count: number
  /** The owned buckets as a bitmask (`sh`) */
  readonly mask: Uint8Array

  private constructor (count: number, mask: Uint8Array) {
    this.count = count
    this.mask = mask
  }

  /**
   * A shard of `count` buckets owning `buckets`
   *
   * @throws {RangeError} for a count outside 1 to MAX_SHARD_BUCKETS or a bucket outside the count
   */
  static of (count: number, buckets: Iterable<number>): Shard {
    if (!Number.isInteger(count) || count < 1 || count > MAX_SHARD_BUCKETS) {
      throw new RangeError(`A shard has 1 to ${MAX_SHARD_BUCKETS} buckets, not ${count}`)
    }
    const mask = new Uint8Array(Math.ceil(count / 8))
    for (const bucket of buckets) {
      if (!Number.isInteger(bucket) || bucket < 0 || bucket >= count) {
        throw new RangeError(`Bucket ${bucket} is outside 0 to ${count - 1}`)
      }
      mask[bucket >> 3] |= 1 << (bucket & 7)
    }
    return new Shard(count, mask)
  }

  /**
   * The shard of the wire keys `sn` and `sh`
   *
   * @throws {ProtocolError} for a count outside 1 to MAX_SHARD_BUCKETS, a mask of the wrong length, or bits set past the count
   */
  static decode (count: number, mask: Uint8Array): Shard {
    if (!Number.isSafeInteger(count) || count < 1 || count > MAX_SHARD_BUCKETS) {
      throw new ProtocolError(`Field sn is ${count}: a shard has 1 to ${MAX_SHARD_BUCKETS} buckets`)
    }
    if (mask.byteLength !== Math.ceil(count / 8)) {
      throw new ProtocolError(`Field sh has ${mask.byteLength} bytes; ${count} buckets take ${Math.ceil(count / 8)}`)
    }
    const spare = count & 7
    if (spare !== 0 && (mask[mask.byteLength - 1] >> spare) !== 0) {
      throw new ProtocolError(`Field sh sets a bucket past the ${count} of sn`)
    }
    return new Shard(count, mask.slice())
  }

  /** True when the shard owns `bucket` */
  owns (bucket: number): boolean {
    return bucket >= 0 && bucket < this.count && (this.mask[bucket >> 3] & (1 << (bucket & 7))) !== 0
  }

  /**
   * A shard owning the buckets of both
   *
   * @throws {RangeError} when the two cut the block space into different counts
   */
  union (other: Shard): Shard {
    if (other.count !== this.count) {
      throw new RangeError(`Shards of ${this.count} and ${other.count} buckets cannot be joined`)
    }
    return new Shard(this.count, this.mask.map((byte, i) => byte | other.mask[i]))
  }

  /** The owned buckets, in order */
  buckets (): number[] {
    const owned: number[] = []
    for (let bucket = 0; bucket < this.count; bucket++) {
      if (this.owns(bucket)) {
        owned.push(bucket)
      }
    }
    return owned
  }

  /**
   * True when a sharded sender sends `cid` in its walk: every block that is
   * not a raw leaf (it may link on, and the receiver follows the DAG through
   * it), and the raw leaves of the owned buckets. Wants named by the
   * receiver are sent whatever their bucket.
   */
  sends (cid: CID): boolean {
    return cid.code !== raw.code || this.owns(bucketOf(cid, this.count))
  }
}
