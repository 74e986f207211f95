/**
 * @packageDocumentation
 *
 * A deterministic Bloom filter whose bytes are compatible with rs-car-mirror
 * (crate deterministic-bloom 0.1, `runtime_size::BloomFilter`).
 *
 * An item (for a CID: its binary form, `cid.bytes`) sets k bits. The bits
 * come from `XXH3_64(item, seed)` for seeds 0, 1, 2, …: with m bits and p the
 * next power of two ≥ m, `v = hash mod p` is an index if `v < m` (rejection
 * sampling), until k indices are found (duplicates allowed). Bit i lives in
 * byte `i >> 3` under mask `1 << (i & 7)`.
 *
 * Hashing runs in a small WebAssembly kernel (see `xxh3.ts`), one call per
 * item and operation.
 */

import { BLOOM_INDEX_BATCH, xxh3Kernel } from './xxh3.ts'

/**
 * The largest filter accepted: 512 MiB, so that bit indices fit in 32 bits.
 *
 * @example
 * ```ts
 * if (received.byteLength > MAX_BLOOM_BYTES) throw new Error('Bloom too large')
 * ```
 */
export const MAX_BLOOM_BYTES = 2 ** 29

/**
 * The largest hash count accepted (the wire type of rs-car-mirror's `bk` is u32).
 * Protocol code should enforce a much smaller limit: the cost of `add` and
 * `has` grows linearly with the hash count.
 *
 * @example
 * ```ts
 * new BloomFilter(bytes, MAX_HASH_COUNT + 1) // throws InvalidBloomError
 * ```
 */
export const MAX_HASH_COUNT = 0xFFFF_FFFF

/**
 * Thrown for invalid Bloom filter bytes, hash counts or sizing parameters.
 *
 * @example
 * ```ts
 * try {
 *   new BloomFilter(bytes, -1)
 * } catch (err) {
 *   if (err instanceof InvalidBloomError) { ... }
 * }
 * ```
 */
export class InvalidBloomError extends Error {
  static name = 'InvalidBloomError'
  /** Always `'InvalidBloomError'`, also on the class: compare `err.name` with `InvalidBloomError.name` */
  name = 'InvalidBloomError'
}

/**
 * Size and hash count of a Bloom filter.
 *
 * @example
 * ```ts
 * const { byteLength, hashCount }: BloomSize = BloomFilter.optimalSize(1000, 1e-4)
 * ```
 */
export interface BloomSize {
  /** Filter size in bytes (the bit count is eight times this). */
  byteLength: number
  /** Number of bits set per item (k). */
  hashCount: number
}

/**
 * Options for {@link BloomFilter.optimalSize}.
 *
 * @example
 * ```ts
 * const options: OptimalSizeOptions = { powerOfTwo: true }
 * ```
 */
export interface OptimalSizeOptions {
  /**
   * Round the byte length up to a power of two, as rs-car-mirror does
   * (no rejection sampling needed then). Default `false`.
   */
  powerOfTwo?: boolean
}

/**
 * Anything with a binary form, such as a multiformats `CID`.
 *
 * @example
 * ```ts
 * const item: HasBytes = CID.parse('bafkqaaa')
 * ```
 */
export interface HasBytes {
  /** The binary form (of a CID: its bytes) */
  readonly bytes: Uint8Array
}

/** Bits set in each byte value. */
const POPCOUNT = Uint8Array.from({ length: 256 }, (_, byte) => {
  let bits = 0
  for (let value = byte; value !== 0; value >>= 1) {
    bits += value & 1
  }
  return bits
})

/** How many indices `has()` computes first; most absent items are rejected by then. */
const FIRST_PROBE_COUNT = 2

function nextPowerOfTwo (value: number): number {
  let power = 1
  while (power < value) {
    power *= 2
  }
  return power
}

/**
 * The false positive rate rs-car-mirror aims for with `n` items:
 * `min(0.001, 0.1 / n)`, one order of magnitude below 1/n.
 *
 * @example
 * ```ts
 * defaultFalsePositiveRate(100_000) // 1e-6
 * ```
 */
export function defaultFalsePositiveRate (itemCount: number): number {
  return Math.min(0.001, 0.1 / itemCount)
}

/**
 * A Bloom filter over byte strings, byte-compatible with rs-car-mirror.
 *
 * Degenerate filters contain nothing: with no bytes or a hash count of 0,
 * `has()` is always false and `add()` only counts. (rs-car-mirror maps empty
 * Bloom bytes on the wire to "no filter" before use; the crate itself would
 * report every item present for k = 0, which would make a sender skip
 * everything.)
 *
 * @example
 * ```ts
 * const filter = BloomFilter.forCapacity(cids.length)
 * for (const cid of cids) filter.addCid(cid)
 * send({ bk: filter.hashCount, bb: filter.bytes })
 *
 * // on the other side
 * const received = new BloomFilter(message.bb, message.bk)
 * received.hasCid(cid) // true for every inserted CID, rarely for others
 * ```
 */
export class BloomFilter {
  /** The filter bits, shared (not copied) with the caller: ready to send as-is. */
  readonly bytes: Uint8Array
  /** Bits set per item (k). */
  readonly hashCount: number
  /** Filter size in bits (m = 8 × byte length). */
  readonly bitCount: number

  /** m - 1: the largest index. */
  readonly #maxIndex: number
  /** p - 1 with p the next power of two ≥ m: indices are hashes mod p. */
  readonly #mask: number
  #count = 0

  /**
   * Wraps existing filter bytes (for example received off the wire). The
   * bytes are not copied: `add()` changes them.
   *
   * @param bytes - the filter bits, at most {@link MAX_BLOOM_BYTES}
   * @param hashCount - bits per item (k), an integer from 0 to {@link MAX_HASH_COUNT}
   * @throws {InvalidBloomError} on other values
   *
   * @example
   * ```ts
   * const filter = new BloomFilter(Uint8Array.from([0xab, 0x5d]), 12)
   * filter.has(Uint8Array.from([1, 2, 3])) // true
   * ```
   */
  constructor (bytes: Uint8Array, hashCount: number) {
    if (!(bytes instanceof Uint8Array)) {
      throw new InvalidBloomError('Bloom filter bytes must be a Uint8Array')
    }
    if (bytes.byteLength > MAX_BLOOM_BYTES) {
      throw new InvalidBloomError(`Bloom filter of ${bytes.byteLength} bytes exceeds the maximum of ${MAX_BLOOM_BYTES}`)
    }
    if (typeof hashCount !== 'number' || !Number.isInteger(hashCount) || hashCount < 0 || hashCount > MAX_HASH_COUNT) {
      throw new InvalidBloomError(`Bloom filter hash count must be an integer from 0 to ${MAX_HASH_COUNT}, got ${String(hashCount)}`)
    }
    this.bytes = bytes
    this.hashCount = hashCount
    this.bitCount = bytes.byteLength * 8
    this.#maxIndex = this.bitCount - 1
    this.#mask = nextPowerOfTwo(this.bitCount) - 1
  }

  /**
   * Byte length and hash count for `itemCount` items at false positive rate
   * `falsePositiveRate`, computed as deterministic-bloom does:
   * `byteLength = ceil(n·ln(fpr) / -(ln 2)² / 8)` (optionally rounded up to
   * a power of two) and `hashCount = max(1, ceil(byteLength·8 / n · ln 2))`.
   * An item count of 0 is treated as 1.
   *
   * @example
   * ```ts
   * BloomFilter.optimalSize(1000, 1e-4) // { byteLength: 2397, hashCount: 14 }
   * BloomFilter.optimalSize(1000, 1e-4, { powerOfTwo: true }) // { byteLength: 4096, hashCount: 23 }
   * ```
   */
  static optimalSize (itemCount: number, falsePositiveRate: number, options: OptimalSizeOptions = {}): BloomSize {
    if (typeof itemCount !== 'number' || !Number.isSafeInteger(itemCount) || itemCount < 0) {
      throw new InvalidBloomError(`Bloom item count must be a non-negative integer, got ${String(itemCount)}`)
    }
    if (typeof falsePositiveRate !== 'number' || !(falsePositiveRate > 0 && falsePositiveRate < 1)) {
      throw new InvalidBloomError(`Bloom false positive rate must be between 0 and 1 (exclusive), got ${String(falsePositiveRate)}`)
    }
    const items = Math.max(1, itemCount)
    const bits = items * Math.log(falsePositiveRate) / -(Math.LN2 * Math.LN2)
    let byteLength = Math.ceil(bits / 8)
    if (options.powerOfTwo === true) {
      byteLength = nextPowerOfTwo(byteLength)
    }
    const hashCount = Math.max(1, Math.ceil((byteLength * 8 / items) * Math.LN2))
    return { byteLength, hashCount }
  }

  /**
   * An empty filter sized the way rs-car-mirror sizes its filters:
   * power-of-two byte length, false positive rate
   * {@link defaultFalsePositiveRate} unless given.
   *
   * @param itemCount - how many items will be added (0 gives a 2-byte filter)
   * @param falsePositiveRate - target rate, default `min(0.001, 0.1 / itemCount)`
   * @throws {InvalidBloomError} if the filter would exceed {@link MAX_BLOOM_BYTES}
   *
   * @example
   * ```ts
   * const filter = BloomFilter.forCapacity(100_000)
   * filter.bytes.byteLength // 524288
   * filter.hashCount // 30
   * ```
   */
  static forCapacity (itemCount: number, falsePositiveRate: number = defaultFalsePositiveRate(itemCount)): BloomFilter {
    const { byteLength, hashCount } = BloomFilter.optimalSize(itemCount, falsePositiveRate, { powerOfTwo: true })
    if (byteLength > MAX_BLOOM_BYTES) {
      throw new InvalidBloomError(`A Bloom filter for ${itemCount} items at rate ${falsePositiveRate} needs ${byteLength} bytes, more than ${MAX_BLOOM_BYTES}`)
    }
    return new BloomFilter(new Uint8Array(byteLength), hashCount)
  }

  /**
   * How many times `add()` was called on this instance (items already set in
   * wrapped bytes are not counted).
   *
   * @example
   * ```ts
   * filter.add(item)
   * filter.count // 1
   * ```
   */
  get count (): number {
    return this.#count
  }

  /**
   * Number of bits set (popcount of the bytes).
   *
   * @example
   * ```ts
   * filter.setBitCount / filter.bitCount // fill ratio
   * ```
   */
  get setBitCount (): number {
    const bytes = this.bytes
    let bits = 0
    for (let i = 0; i < bytes.length; i++) {
      bits += POPCOUNT[bytes[i]]
    }
    return bits
  }

  /**
   * The false positive rate implied by the current fill: `(setBits / m)^k`
   * (0 for a degenerate filter, which contains nothing).
   *
   * @example
   * ```ts
   * if (filter.estimatedFalsePositiveRate > 0.01) rebuildLarger()
   * ```
   */
  get estimatedFalsePositiveRate (): number {
    if (this.bitCount === 0 || this.hashCount === 0) {
      return 0
    }
    return (this.setBitCount / this.bitCount) ** this.hashCount
  }

  /**
   * Adds `item` (sets its k bits).
   *
   * @example
   * ```ts
   * filter.add(cid.bytes)
   * ```
   */
  add (item: Uint8Array): void {
    this.#count++
    const hashCount = this.hashCount
    if (this.bitCount === 0 || hashCount === 0) {
      return
    }
    const kernel = xxh3Kernel
    const indices = kernel.indices
    const bytes = this.bytes
    kernel.loadItem(item)
    let seed = 0
    for (let remaining = hashCount; remaining > 0;) {
      const batch = remaining < BLOOM_INDEX_BATCH ? remaining : BLOOM_INDEX_BATCH
      seed = kernel.fillBloomIndices(seed, batch, this.#maxIndex, this.#mask)
      for (let i = 0; i < batch; i++) {
        const index = indices[i]
        bytes[index >>> 3] |= 1 << (index & 7)
      }
      remaining -= batch
    }
  }

  /**
   * Whether `item` may have been added: always true for added items, true
   * for others with about the filter's false positive rate. Always false
   * for a degenerate filter (no bytes or k = 0).
   *
   * @example
   * ```ts
   * if (!filter.has(cid.bytes)) send(block)
   * ```
   */
  has (item: Uint8Array): boolean {
    const hashCount = this.hashCount
    if (this.bitCount === 0 || hashCount === 0) {
      return false
    }
    const kernel = xxh3Kernel
    const indices = kernel.indices
    const bytes = this.bytes
    kernel.loadItem(item)
    let seed = 0
    // a few indices first, then growing batches: absent items usually fail early
    let batch = FIRST_PROBE_COUNT
    for (let remaining = hashCount; remaining > 0;) {
      if (batch > remaining) {
        batch = remaining
      }
      seed = kernel.fillBloomIndices(seed, batch, this.#maxIndex, this.#mask)
      for (let i = 0; i < batch; i++) {
        const index = indices[i]
        if ((bytes[index >>> 3] & (1 << (index & 7))) === 0) {
          return false
        }
      }
      remaining -= batch
      batch = Math.min(batch * 2, BLOOM_INDEX_BATCH)
    }
    return true
  }

  /**
   * Adds a CID (or anything with `.bytes`) by its binary form, as
   * rs-car-mirror does.
   *
   * @example
   * ```ts
   * filter.addCid(CID.parse('bafkqaaa'))
   * ```
   */
  addCid (cid: HasBytes): void {
    this.add(cid.bytes)
  }

  /**
   * Whether a CID (or anything with `.bytes`) may have been added.
   *
   * @example
   * ```ts
   * filter.hasCid(CID.parse('bafkqaaa'))
   * ```
   */
  hasCid (cid: HasBytes): boolean {
    return this.has(cid.bytes)
  }

  /**
   * The k bit indices of `item` in this filter, in order (duplicates
   * included). Empty for a degenerate filter.
   *
   * @example
   * ```ts
   * new BloomFilter(new Uint8Array(2), 12).indicesOf(Uint8Array.from([1, 2, 3]))
   * // [11, 5, 1, 10, 14, 8, 7, 3, 12, 5, 12, 0]
   * ```
   */
  indicesOf (item: Uint8Array): number[] {
    const result: number[] = []
    if (this.bitCount === 0) {
      return result
    }
    const kernel = xxh3Kernel
    kernel.loadItem(item)
    let seed = 0
    for (let remaining = this.hashCount; remaining > 0;) {
      const batch = Math.min(remaining, BLOOM_INDEX_BATCH)
      seed = kernel.fillBloomIndices(seed, batch, this.#maxIndex, this.#mask)
      result.push(...kernel.indices.subarray(0, batch))
      remaining -= batch
    }
    return result
  }
}
