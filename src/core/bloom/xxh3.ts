/**
 * @packageDocumentation
 *
 * XXH3-64 with a 64-bit seed (the hash of xxHash 0.8, as used by the Rust
 * crate `xxhash-rust` in `deterministic-bloom`), in two forms:
 *
 * 1. {@link xxh3Reference}: a portable BigInt implementation for every input
 * length, written from the public algorithm description in `xxhash.h`.
 *
 * 2. A small WebAssembly kernel that hashes inputs of 0..240 bytes and
 * computes whole runs of Bloom filter indices in one call. It is compiled
 * synchronously at import (about 1.5 KB, well below the 4 KB limit Chromium
 * puts on synchronous compilation on the main thread). If WebAssembly is
 * missing or fails, everything falls back to the reference implementation.
 *
 * The kernel lives in three files:
 *
 * - `xxh3-kernel.wat`, next to this file: its source, in the WebAssembly
 * text format, with comments that follow the algorithm step by step;
 * - `xxh3-kernel-bytes.ts`: the assembled binary as base64, generated from
 * the WAT by `npm run build:wasm` (`scripts/build-wasm.ts`, using wabt) and
 * never edited by hand; `test/core/bloom/xxh3-kernel.node.ts` fails when it
 * is out of date;
 * - this module: the loader ({@link Xxh3Kernel}), which instantiates the
 * bytes, writes the default secret into the kernel's memory, checks the
 * kernel against the reference, and drives it. The memory layout constants
 * below must match the WAT.
 *
 * Everything here is synchronous and works in Node.js, browsers and workers.
 */

import { XXH3_KERNEL_WASM } from './xxh3-kernel-bytes.ts'

export { XXH3_KERNEL_WASM }

// ---------------------------------------------------------------------------
// Constants of the algorithm
// ---------------------------------------------------------------------------

const U64_MASK = 0xFFFF_FFFF_FFFF_FFFFn
const U32_MASK = 0xFFFF_FFFFn

const PRIME32_1 = 0x9E3779B1n
const PRIME32_2 = 0x85EBCA77n
const PRIME32_3 = 0xC2B2AE3Dn
const PRIME64_1 = 0x9E3779B185EBCA87n
const PRIME64_2 = 0xC2B2AE3D27D4EB4Fn
const PRIME64_3 = 0x165667B19E3779F9n
const PRIME64_4 = 0x85EBCA77C2B2AE63n
const PRIME64_5 = 0x27D4EB2F165667C5n
const PRIME_MX1 = 0x165667919E3779F9n
const PRIME_MX2 = 0x9FB21C651E98DF25n

/** Inputs up to this length use the "short" and "mid-size" code paths; longer ones use the striped long hash. */
const MID_SIZE_MAX = 240
const MID_SIZE_START_OFFSET = 3
const MID_SIZE_LAST_OFFSET = 17
const SECRET_SIZE_MIN = 136
const STRIPE_LENGTH = 64
const SECRET_CONSUME_RATE = 8
const SECRET_LAST_ACCUMULATOR_START = 7
const SECRET_MERGE_ACCUMULATORS_START = 11

/**
 * The 192-byte default secret of XXH3 (`XXH3_kSecret`, "taken from FARSH").
 *
 * @example
 * ```ts
 * XXH3_DEFAULT_SECRET.byteLength // 192
 * ```
 */
export const XXH3_DEFAULT_SECRET: Uint8Array = hexToBytes(
  'b8fe6c3923a44bbe7c01812cf721ad1c' +
  'ded46de9839097db7240a4a4b7b3671f' +
  'cb79e64eccc0e578825ad07dccff7221' +
  'b8084674f743248ee03590e6813a264c' +
  '3c2852bb91c300cb88d0658b1b532ea3' +
  '71644897a20df94e3819ef46a9deacd8' +
  'a8fa763fe39c343ff9dcbbc7c70b4f1d' +
  '8a51e04bcdb45931c89f7ec9d9787364' +
  'eac5ac8334d3ebc3c581a0fffa1363eb' +
  '170ddd51b7f0da49d316552629d4689e' +
  '2b16be587d47a1fc8ff8b8d17ad031ce' +
  '45cb3a8f95160428afd7fbcabb4b407e'
)

const SECRET_SIZE = 192

function hexToBytes (hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2)
  for (let i = 0; i < bytes.length; i++) {
    bytes[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16)
  }
  return bytes
}

const DEFAULT_SECRET_VIEW = new DataView(XXH3_DEFAULT_SECRET.buffer, XXH3_DEFAULT_SECRET.byteOffset, SECRET_SIZE)

function readU64 (view: DataView, offset: number): bigint {
  return view.getBigUint64(offset, true)
}

function readU32 (view: DataView, offset: number): bigint {
  return BigInt(view.getUint32(offset, true))
}

/** Secret words that the short paths only ever use XOR-ed together; xxh3-kernel.wat embeds them as constants. */
const SECRET_WORDS = {
  /** 1..3 bytes: `readLE32(secret) ^ readLE32(secret + 4)` */
  bitflip1to3: readU32(DEFAULT_SECRET_VIEW, 0) ^ readU32(DEFAULT_SECRET_VIEW, 4),
  /** 4..8 bytes: `readLE64(secret + 8) ^ readLE64(secret + 16)` */
  bitflip4to8: readU64(DEFAULT_SECRET_VIEW, 8) ^ readU64(DEFAULT_SECRET_VIEW, 16),
  /** 9..16 bytes, low word: `readLE64(secret + 24) ^ readLE64(secret + 32)` */
  bitflip9to16Low: readU64(DEFAULT_SECRET_VIEW, 24) ^ readU64(DEFAULT_SECRET_VIEW, 32),
  /** 9..16 bytes, high word: `readLE64(secret + 40) ^ readLE64(secret + 48)` */
  bitflip9to16High: readU64(DEFAULT_SECRET_VIEW, 40) ^ readU64(DEFAULT_SECRET_VIEW, 48),
  /** empty input: `readLE64(secret + 56) ^ readLE64(secret + 64)` */
  bitflipEmpty: readU64(DEFAULT_SECRET_VIEW, 56) ^ readU64(DEFAULT_SECRET_VIEW, 64)
} as const

// ---------------------------------------------------------------------------
// Reference implementation (BigInt, all lengths)
// ---------------------------------------------------------------------------

function mul128Fold64 (lhs: bigint, rhs: bigint): bigint {
  const product = lhs * rhs
  return (product & U64_MASK) ^ (product >> 64n)
}

function multiply64 (lhs: bigint, rhs: bigint): bigint {
  return (lhs * rhs) & U64_MASK
}

function rotateLeft64 (value: bigint, bits: bigint): bigint {
  return ((value << bits) | (value >> (64n - bits))) & U64_MASK
}

function byteSwap32 (value: bigint): bigint {
  return ((value & 0xFFn) << 24n) | ((value & 0xFF00n) << 8n) | ((value >> 8n) & 0xFF00n) | ((value >> 24n) & 0xFFn)
}

function byteSwap64 (value: bigint): bigint {
  return (byteSwap32(value & U32_MASK) << 32n) | byteSwap32(value >> 32n)
}

/** `XXH3_avalanche`: a fast final mix for inputs that are already partly mixed. */
function avalanche (hash: bigint): bigint {
  hash ^= hash >> 37n
  hash = multiply64(hash, PRIME_MX1)
  return hash ^ (hash >> 32n)
}

/** `XXH64_avalanche`, used by the 0..3 byte paths. */
function xxh64Avalanche (hash: bigint): bigint {
  hash ^= hash >> 33n
  hash = multiply64(hash, PRIME64_2)
  hash ^= hash >> 29n
  hash = multiply64(hash, PRIME64_3)
  return hash ^ (hash >> 32n)
}

/** `XXH3_rrmxmx`, a stronger final mix (after Pelle Evensen's rrmxmx), used by the 4..8 byte path. */
function rrmxmx (hash: bigint, length: number): bigint {
  hash ^= rotateLeft64(hash, 49n) ^ rotateLeft64(hash, 24n)
  hash = multiply64(hash, PRIME_MX2)
  hash ^= (hash >> 35n) + BigInt(length)
  hash = multiply64(hash, PRIME_MX2)
  return hash ^ (hash >> 28n)
}

function mix16Bytes (input: DataView, inputOffset: number, secret: DataView, secretOffset: number, seed: bigint): bigint {
  const inputLow = readU64(input, inputOffset)
  const inputHigh = readU64(input, inputOffset + 8)
  return mul128Fold64(
    inputLow ^ ((readU64(secret, secretOffset) + seed) & U64_MASK),
    inputHigh ^ ((readU64(secret, secretOffset + 8) - seed) & U64_MASK)
  )
}

function hashShort (input: DataView, length: number, seed: bigint): bigint {
  if (length > 8) {
    const bitflipLow = (SECRET_WORDS.bitflip9to16Low + seed) & U64_MASK
    const bitflipHigh = (SECRET_WORDS.bitflip9to16High - seed) & U64_MASK
    const inputLow = readU64(input, 0) ^ bitflipLow
    const inputHigh = readU64(input, length - 8) ^ bitflipHigh
    const accumulator = BigInt(length) + byteSwap64(inputLow) + inputHigh + mul128Fold64(inputLow, inputHigh)
    return avalanche(accumulator & U64_MASK)
  }
  if (length >= 4) {
    const mixedSeed = seed ^ (byteSwap32(seed & U32_MASK) << 32n)
    const input64 = readU32(input, length - 4) + (readU32(input, 0) << 32n)
    const bitflip = (SECRET_WORDS.bitflip4to8 - mixedSeed) & U64_MASK
    return rrmxmx(input64 ^ bitflip, length)
  }
  if (length > 0) {
    const first = BigInt(input.getUint8(0))
    const middle = BigInt(input.getUint8(length >> 1))
    const last = BigInt(input.getUint8(length - 1))
    const combined = (first << 16n) | (middle << 24n) | last | (BigInt(length) << 8n)
    const bitflip = (SECRET_WORDS.bitflip1to3 + seed) & U64_MASK
    return xxh64Avalanche(combined ^ bitflip)
  }
  return xxh64Avalanche(seed ^ SECRET_WORDS.bitflipEmpty)
}

function hash17To128 (input: DataView, length: number, seed: bigint): bigint {
  const secret = DEFAULT_SECRET_VIEW
  let accumulator = BigInt(length) * PRIME64_1
  if (length > 32) {
    if (length > 64) {
      if (length > 96) {
        accumulator += mix16Bytes(input, 48, secret, 96, seed)
        accumulator += mix16Bytes(input, length - 64, secret, 112, seed)
      }
      accumulator += mix16Bytes(input, 32, secret, 64, seed)
      accumulator += mix16Bytes(input, length - 48, secret, 80, seed)
    }
    accumulator += mix16Bytes(input, 16, secret, 32, seed)
    accumulator += mix16Bytes(input, length - 32, secret, 48, seed)
  }
  accumulator += mix16Bytes(input, 0, secret, 0, seed)
  accumulator += mix16Bytes(input, length - 16, secret, 16, seed)
  return avalanche(accumulator & U64_MASK)
}

function hash129To240 (input: DataView, length: number, seed: bigint): bigint {
  const secret = DEFAULT_SECRET_VIEW
  const rounds = Math.floor(length / 16)
  let accumulator = BigInt(length) * PRIME64_1
  for (let round = 0; round < 8; round++) {
    accumulator += mix16Bytes(input, 16 * round, secret, 16 * round, seed)
  }
  accumulator = avalanche(accumulator & U64_MASK)
  for (let round = 8; round < rounds; round++) {
    accumulator += mix16Bytes(input, 16 * round, secret, 16 * (round - 8) + MID_SIZE_START_OFFSET, seed)
  }
  accumulator += mix16Bytes(input, length - 16, secret, SECRET_SIZE_MIN - MID_SIZE_LAST_OFFSET, seed)
  return avalanche(accumulator & U64_MASK)
}

/** One 64-byte stripe of the long hash: eight 32x32->64 multiply-accumulates. */
function accumulateStripe (accumulators: bigint[], input: DataView, inputOffset: number, secret: DataView, secretOffset: number): void {
  for (let lane = 0; lane < 8; lane++) {
    const dataValue = readU64(input, inputOffset + 8 * lane)
    const dataKey = dataValue ^ readU64(secret, secretOffset + 8 * lane)
    accumulators[lane ^ 1] = (accumulators[lane ^ 1] + dataValue) & U64_MASK
    accumulators[lane] = (accumulators[lane] + (dataKey & U32_MASK) * (dataKey >> 32n)) & U64_MASK
  }
}

function scrambleAccumulators (accumulators: bigint[], secret: DataView, secretOffset: number): void {
  for (let lane = 0; lane < 8; lane++) {
    let accumulator = accumulators[lane]
    accumulator ^= accumulator >> 47n
    accumulator ^= readU64(secret, secretOffset + 8 * lane)
    accumulators[lane] = multiply64(accumulator, PRIME32_1)
  }
}

function hashLong (input: DataView, length: number, seed: bigint): bigint {
  // a seeded long hash uses a secret derived from the default one
  const derived = new DataView(new ArrayBuffer(SECRET_SIZE))
  for (let offset = 0; offset < SECRET_SIZE; offset += 16) {
    derived.setBigUint64(offset, (readU64(DEFAULT_SECRET_VIEW, offset) + seed) & U64_MASK, true)
    derived.setBigUint64(offset + 8, (readU64(DEFAULT_SECRET_VIEW, offset + 8) - seed) & U64_MASK, true)
  }

  const accumulators = [PRIME32_3, PRIME64_1, PRIME64_2, PRIME64_3, PRIME64_4, PRIME32_2, PRIME64_5, PRIME32_1]
  const stripesPerBlock = (SECRET_SIZE - STRIPE_LENGTH) / SECRET_CONSUME_RATE
  const blockLength = STRIPE_LENGTH * stripesPerBlock
  const blocks = Math.floor((length - 1) / blockLength)

  for (let block = 0; block < blocks; block++) {
    for (let stripe = 0; stripe < stripesPerBlock; stripe++) {
      accumulateStripe(accumulators, input, block * blockLength + stripe * STRIPE_LENGTH, derived, stripe * SECRET_CONSUME_RATE)
    }
    scrambleAccumulators(accumulators, derived, SECRET_SIZE - STRIPE_LENGTH)
  }

  const lastStripes = Math.floor(((length - 1) - blockLength * blocks) / STRIPE_LENGTH)
  for (let stripe = 0; stripe < lastStripes; stripe++) {
    accumulateStripe(accumulators, input, blocks * blockLength + stripe * STRIPE_LENGTH, derived, stripe * SECRET_CONSUME_RATE)
  }
  accumulateStripe(accumulators, input, length - STRIPE_LENGTH, derived, SECRET_SIZE - STRIPE_LENGTH - SECRET_LAST_ACCUMULATOR_START)

  let result = (BigInt(length) * PRIME64_1) & U64_MASK
  for (let pair = 0; pair < 4; pair++) {
    const secretOffset = SECRET_MERGE_ACCUMULATORS_START + 16 * pair
    result += mul128Fold64(
      accumulators[2 * pair] ^ readU64(derived, secretOffset),
      accumulators[2 * pair + 1] ^ readU64(derived, secretOffset + 8)
    )
  }
  return avalanche(result & U64_MASK)
}

function toSeed (seed: bigint | number): bigint {
  return BigInt.asUintN(64, typeof seed === 'bigint' ? seed : BigInt(seed))
}

/**
 * XXH3-64 of `input` with `seed`, computed with BigInt arithmetic. Slow but
 * portable and complete (every input length); the fast paths are tested
 * against it.
 *
 * @param input - the bytes to hash
 * @param seed - a 64-bit seed (negative numbers wrap around modulo 2^64)
 * @returns the unsigned 64-bit hash
 *
 * @example
 * ```ts
 * xxh3Reference(new Uint8Array(0)) // 0x2d06800538d394c2n
 * xxh3Reference(new TextEncoder().encode('abc'), 1n)
 * ```
 */
export function xxh3Reference (input: Uint8Array, seed: bigint | number = 0n): bigint {
  const seed64 = toSeed(seed)
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength)
  const length = input.byteLength
  if (length <= 16) {
    return hashShort(view, length, seed64)
  }
  if (length <= 128) {
    return hash17To128(view, length, seed64)
  }
  if (length <= MID_SIZE_MAX) {
    return hash129To240(view, length, seed64)
  }
  return hashLong(view, length, seed64)
}

// ---------------------------------------------------------------------------
// WebAssembly kernel: memory layout (must match xxh3-kernel.wat)
// ---------------------------------------------------------------------------

/**
 * Where the default secret lives in the kernel's memory (written from JS at
 * start-up). Not at 0, so that the 129..240 path can address
 * `secret + 16 * (round - 8) + 3` as `16 * round` plus a non-negative
 * constant offset.
 */
const SECRET_OFFSET = 128
/** Where the item to hash is copied to. */
const ITEM_OFFSET = 384
/** Where results go: one 64-bit hash, or a run of 32-bit Bloom indices. */
const OUTPUT_OFFSET = 640
const MEMORY_SIZE = 65536

/**
 * The most Bloom indices one kernel call writes; longer runs take several calls.
 *
 * @example
 * ```ts
 * const count = Math.min(hashCount, BLOOM_INDEX_BATCH)
 * ```
 */
export const BLOOM_INDEX_BATCH = 4096

// ---------------------------------------------------------------------------
// Instantiation and the public API
// ---------------------------------------------------------------------------

interface KernelExports {
  memory: WebAssembly.Memory
  run(length: number, seedLow: number, seedHigh: number, count: number, maxIndex: number, mask: number): number
}

/**
 * Inputs up to this many bytes (240) are hashed by the WebAssembly kernel;
 * longer ones by the reference code.
 *
 * @example
 * ```ts
 * if (item.byteLength > XXH3_KERNEL_MAX_INPUT) console.debug('slow path')
 * ```
 */
export const XXH3_KERNEL_MAX_INPUT = MID_SIZE_MAX

/** The WebAssembly kernel is only used while seeds stay below this (seeds are passed as i32). */
const KERNEL_MAX_SEED = 0x7FFF_FFFF - BLOOM_INDEX_BATCH * 64

function instantiateKernel (): KernelExports | undefined {
  try {
    if (typeof WebAssembly !== 'object') {
      return undefined
    }
    const instance = new WebAssembly.Instance(new WebAssembly.Module(XXH3_KERNEL_WASM), {})
    const { memory, run } = instance.exports
    if (!(memory instanceof WebAssembly.Memory) || typeof run !== 'function') {
      return undefined
    }
    if (memory.buffer.byteLength < MEMORY_SIZE) {
      return undefined
    }
    new Uint8Array(memory.buffer).set(XXH3_DEFAULT_SECRET, SECRET_OFFSET)
    return {
      memory,
      run: run as KernelExports['run']
    }
  } catch {
    return undefined
  }
}

/** Guards against a broken engine: the kernel must agree with the reference on a few inputs. */
function kernelAgreesWithReference (exports: KernelExports): boolean {
  try {
    const memoryBytes = new Uint8Array(exports.memory.buffer)
    const output = new DataView(exports.memory.buffer, OUTPUT_OFFSET, 8)
    const sample = new Uint8Array(MID_SIZE_MAX)
    for (let i = 0; i < sample.length; i++) {
      sample[i] = (i * 167 + 13) & 0xFF
    }
    for (const length of [0, 3, 8, 16, 36, 128, 240]) {
      const input = sample.subarray(0, length)
      const seed = 0x1234_5678_9ABC_DEF0n + BigInt(length)
      memoryBytes.set(input, ITEM_OFFSET)
      exports.run(length, Number(seed & U32_MASK), Number(seed >> 32n), 0, 0, 0)
      if (output.getBigUint64(0, true) !== xxh3Reference(input, seed)) {
        return false
      }
    }
    return true
  } catch {
    return false
  }
}

/**
 * Which implementation a {@link Xxh3Kernel} uses for inputs of up to 240
 * bytes: `'wasm'` for the WebAssembly kernel, `'js'` for the reference code.
 *
 * @example
 * ```ts
 * const backend: Xxh3Backend = xxh3Kernel.backend
 * ```
 */
export type Xxh3Backend = 'wasm' | 'js'

/**
 * Options for {@link Xxh3Kernel}.
 *
 * @example
 * ```ts
 * const referenceOnly = new Xxh3Kernel({ webAssembly: false })
 * ```
 */
export interface Xxh3KernelOptions {
  /** Set to `false` to use only the reference code (for tests and comparisons). Default `true`. */
  webAssembly?: boolean
}

/**
 * XXH3-64 hashing and Bloom index generation, backed by a private instance
 * of the WebAssembly kernel when available (falling back to
 * {@link xxh3Reference} otherwise, and for inputs over 240 bytes).
 *
 * Not re-entrant by design: {@link Xxh3Kernel.loadItem} keeps one item, which
 * {@link Xxh3Kernel.hash} replaces. All methods are synchronous.
 *
 * @example
 * ```ts
 * const kernel = new Xxh3Kernel()
 * kernel.loadItem(cid.bytes)
 * // 12 indices into a 16-bit filter (maxIndex 15, mask 15), seeds from 0
 * const nextSeed = kernel.fillBloomIndices(0, 12, 15, 15)
 * const indices = kernel.indices.subarray(0, 12)
 * ```
 */
export class Xxh3Kernel {
  /** Which code hashes inputs of up to 240 bytes. */
  readonly backend: Xxh3Backend
  /**
   * Output of {@link Xxh3Kernel.fillBloomIndices}: its first `count`
   * entries. Overwritten by every call; holds {@link BLOOM_INDEX_BATCH} entries.
   */
  readonly indices: Uint32Array

  readonly #exports: KernelExports | undefined
  readonly #memoryBytes: Uint8Array
  readonly #output: DataView
  #item: Uint8Array = new Uint8Array(0)
  #itemInKernel = false

  constructor (options: Xxh3KernelOptions = {}) {
    let exports = options.webAssembly === false ? undefined : instantiateKernel()
    if (exports != null && !kernelAgreesWithReference(exports)) {
      exports = undefined
    }
    this.#exports = exports
    if (exports == null) {
      this.backend = 'js'
      this.#memoryBytes = new Uint8Array(0)
      this.#output = new DataView(new ArrayBuffer(8))
      this.indices = new Uint32Array(BLOOM_INDEX_BATCH)
    } else {
      this.backend = 'wasm'
      const buffer = exports.memory.buffer
      this.#memoryBytes = new Uint8Array(buffer)
      this.#output = new DataView(buffer, OUTPUT_OFFSET, 8)
      this.indices = new Uint32Array(buffer, OUTPUT_OFFSET, BLOOM_INDEX_BATCH)
    }
  }

  /**
   * XXH3-64 of `input` with a 64-bit `seed`. Replaces the loaded item.
   *
   * @example
   * ```ts
   * new Xxh3Kernel().hash(new Uint8Array([1, 2, 3]), 7n)
   * ```
   */
  hash (input: Uint8Array, seed: bigint | number = 0n): bigint {
    const exports = this.#exports
    if (exports == null || input.byteLength > XXH3_KERNEL_MAX_INPUT) {
      this.#item = input
      this.#itemInKernel = false
      return xxh3Reference(input, seed)
    }
    const seed64 = toSeed(seed)
    this.#loadIntoKernel(input)
    exports.run(input.byteLength, Number(seed64 & U32_MASK), Number(seed64 >> 32n), 0, 0, 0)
    return this.#output.getBigUint64(0, true)
  }

  /**
   * Makes `item` the input of the next {@link Xxh3Kernel.fillBloomIndices} calls.
   * The bytes are copied (into the kernel's memory) when the kernel is used.
   *
   * @example
   * ```ts
   * kernel.loadItem(cid.bytes)
   * ```
   */
  loadItem (item: Uint8Array): void {
    if (this.#exports != null && item.byteLength <= XXH3_KERNEL_MAX_INPUT) {
      this.#loadIntoKernel(item)
    } else {
      this.#item = item
      this.#itemInKernel = false
    }
  }

  /**
   * Writes the next `count` Bloom indices of the loaded item to
   * `this.indices[0..count)`, trying seeds from `seed` upwards, and returns
   * the first seed not yet tried. For each seed, `value = xxh3(item, seed) mod
   * (mask + 1)` is an index if `value <= maxIndex`.
   *
   * @param seed - first seed to try (0 for a fresh item)
   * @param count - how many indices to produce, at most {@link BLOOM_INDEX_BATCH}
   * @param maxIndex - the largest valid index: bit count - 1 (at most 2^32 - 1)
   * @param mask - next power of two ≥ bit count, minus one (at most 2^32 - 1)
   * @returns the next seed to continue from
   *
   * @example
   * ```ts
   * kernel.loadItem(item)
   * let seed = kernel.fillBloomIndices(0, 2, bitCount - 1, mask) // first two indices
   * seed = kernel.fillBloomIndices(seed, hashCount - 2, bitCount - 1, mask) // the rest
   * ```
   */
  fillBloomIndices (seed: number, count: number, maxIndex: number, mask: number): number {
    if (count > BLOOM_INDEX_BATCH) {
      throw new RangeError(`At most ${BLOOM_INDEX_BATCH} indices per call, got ${count}`)
    }
    if (count <= 0) {
      return seed
    }
    const exports = this.#exports
    if (exports != null && this.#itemInKernel && seed <= KERNEL_MAX_SEED) {
      return exports.run(this.#item.byteLength, seed, 0, count, maxIndex, mask) >>> 0
    }
    const item = this.#itemInKernel ? this.#memoryBytes.slice(ITEM_OFFSET, ITEM_OFFSET + this.#item.byteLength) : this.#item
    const maskBig = BigInt(mask >>> 0)
    const indices = this.indices
    let produced = 0
    while (produced < count) {
      const value = Number(xxh3Reference(item, seed) & maskBig)
      seed++
      if (value <= maxIndex) {
        indices[produced++] = value
      }
    }
    return seed
  }

  #loadIntoKernel (item: Uint8Array): void {
    this.#memoryBytes.set(item, ITEM_OFFSET)
    this.#item = item
    this.#itemInKernel = true
  }
}

/**
 * The shared kernel used by {@link xxh3} and by `BloomFilter`.
 *
 * @example
 * ```ts
 * if (xxh3Kernel.backend === 'js') console.warn('WebAssembly unavailable, Bloom filters are slow')
 * ```
 */
export const xxh3Kernel = new Xxh3Kernel()

/**
 * XXH3-64 of `input` with a 64-bit `seed` (the `xxh3_64_with_seed` of
 * xxhash-rust), using the WebAssembly kernel for inputs of up to 240 bytes.
 *
 * @param input - the bytes to hash
 * @param seed - a 64-bit seed (negative numbers wrap around modulo 2^64)
 * @returns the unsigned 64-bit hash
 *
 * @example
 * ```ts
 * xxh3(new Uint8Array([1, 2, 3]), 0n) // equals xxh3Reference(new Uint8Array([1, 2, 3]), 0n)
 * ```
 */
export function xxh3 (input: Uint8Array, seed: bigint | number = 0n): bigint {
  return xxh3Kernel.hash(input, seed)
}
