/**
 * @packageDocumentation
 *
 * XXH3-64 with a 64-bit seed (the hash of xxHash 0.8, as used by the Rust
 * crate `xxhash-rust` in `deterministic-bloom`), in two forms:
 *
 * 1. {@link xxh3Reference}: a portable BigInt implementation for every input
 * length, written from the public algorithm description in `xxhash.h`.
 *
 * 2. A small WebAssembly kernel, assembled byte by byte below, that hashes
 * inputs of 0..240 bytes and computes whole runs of Bloom filter indices in
 * one call. It is compiled synchronously at import (about 1.5 KB, well below
 * the 4 KB limit Chromium puts on synchronous compilation on the main
 * thread). If WebAssembly is missing or fails, everything falls back to the
 * reference implementation.
 *
 * Everything here is synchronous and works in Node.js, browsers and workers.
 */

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

/** Secret words that the short paths only ever use XOR-ed together; the WASM kernel embeds them as constants. */
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
// WebAssembly kernel: a tiny assembler
// ---------------------------------------------------------------------------

/** Bytes of WebAssembly code, in the binary format of the WebAssembly core specification. */
type Code = number[]

/** Value types. */
const I32 = 0x7F
const I64 = 0x7E
/** Block type of a block that leaves nothing on the stack. */
const EMPTY_BLOCK = 0x40

/** The instructions the kernel uses, by their binary opcode. */
const OP = {
  unreachable: 0x00,
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  else: 0x05,
  end: 0x0B,
  br: 0x0C,
  brIf: 0x0D,
  return: 0x0F,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  i64Load: 0x29,
  i32Load8U: 0x2D,
  i64Load32U: 0x35,
  i32Store: 0x36,
  i64Store: 0x37,
  i32Const: 0x41,
  i64Const: 0x42,
  i32Eqz: 0x45,
  i32Eq: 0x46,
  i32Ne: 0x47,
  i32LtU: 0x49,
  i32GtU: 0x4B,
  i32LeU: 0x4D,
  i32GeU: 0x4F,
  i32Add: 0x6A,
  i32Sub: 0x6B,
  i32And: 0x71,
  i32Or: 0x72,
  i32Shl: 0x74,
  i32ShrU: 0x76,
  i32Rotl: 0x77,
  i32Rotr: 0x78,
  i64Add: 0x7C,
  i64Sub: 0x7D,
  i64Mul: 0x7E,
  i64And: 0x83,
  i64Or: 0x84,
  i64Xor: 0x85,
  i64Shl: 0x86,
  i64ShrU: 0x88,
  i64Rotl: 0x89,
  i32WrapI64: 0xA7,
  i64ExtendI32U: 0xAD
} as const

/** Section ids. */
const SECTION = { type: 1, function: 3, memory: 5, export: 7, code: 10 } as const
const EXPORT_KIND = { function: 0, memory: 2 } as const
const FUNCTION_TYPE = 0x60

function unsignedLeb128 (value: number): Code {
  const bytes: Code = []
  do {
    let byte = value & 0x7F
    value = Math.floor(value / 128)
    if (value !== 0) {
      byte |= 0x80
    }
    bytes.push(byte)
  } while (value !== 0)
  return bytes
}

function signedLeb128 (value: bigint): Code {
  const bytes: Code = []
  for (;;) {
    const byte = Number(value & 0x7Fn)
    value >>= 7n
    const done = (value === 0n && (byte & 0x40) === 0) || (value === -1n && (byte & 0x40) !== 0)
    bytes.push(done ? byte : byte | 0x80)
    if (done) {
      return bytes
    }
  }
}

function vector (items: Code[]): Code {
  return [...unsignedLeb128(items.length), ...items.flat()]
}

function name (text: string): Code {
  return vector([...new TextEncoder().encode(text)].map(byte => [byte]))
}

function section (id: number, items: Code[]): Code {
  const content = vector(items)
  return [id, ...unsignedLeb128(content.length), ...content]
}

const get = (local: number): Code => [OP.localGet, ...unsignedLeb128(local)]
const set = (local: number): Code => [OP.localSet, ...unsignedLeb128(local)]
const tee = (local: number): Code => [OP.localTee, ...unsignedLeb128(local)]
const i32 = (value: number): Code => [OP.i32Const, ...signedLeb128(BigInt(value | 0))]
const i64 = (value: bigint): Code => [OP.i64Const, ...signedLeb128(BigInt.asIntN(64, value))]
/** Memory access with alignment hint 1 (unaligned) and a constant byte offset. */
const memory = (opcode: number, offset = 0): Code => [opcode, 0, ...unsignedLeb128(offset)]

interface KernelFunction {
  params: number[]
  results: number[]
  /** Types of the extra locals, numbered after the parameters. */
  locals: number[]
  body: Code[]
  exportName?: string
}

function assembleModule (functions: KernelFunction[]): Uint8Array<ArrayBuffer> {
  const header = [0x00, 0x61, 0x73, 0x6D, 0x01, 0x00, 0x00, 0x00]
  const types = functions.map(fn => [FUNCTION_TYPE, ...vector(fn.params.map(type => [type])), ...vector(fn.results.map(type => [type]))])
  const functionTypes = functions.map((_, index) => unsignedLeb128(index))
  // one page (64 KiB) that never grows, so views on it stay valid
  const memories = [[0x01, 0x01, 0x01]]
  const exports = [
    [...name('memory'), EXPORT_KIND.memory, 0],
    ...functions.flatMap((fn, index) => fn.exportName == null ? [] : [[...name(fn.exportName), EXPORT_KIND.function, ...unsignedLeb128(index)]])
  ]
  const bodies = functions.map(fn => {
    const locals = vector(fn.locals.map(type => [1, type]))
    const code = [...locals, ...fn.body.flat(), OP.end]
    return [...unsignedLeb128(code.length), ...code]
  })
  return Uint8Array.from([
    ...header,
    ...section(SECTION.type, types),
    ...section(SECTION.function, functionTypes),
    ...section(SECTION.memory, memories),
    ...section(SECTION.export, exports),
    ...section(SECTION.code, bodies)
  ])
}

// ---------------------------------------------------------------------------
// WebAssembly kernel: memory layout and functions
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

const LOW_32 = (value: Code): Code => [...value, OP.i32WrapI64, OP.i64ExtendI32U]

/**
 * Scratch locals (all i64) for the inline sequences below. The hot code is
 * inlined rather than called (measured about 25% faster in V8), and the
 * module still stays small.
 */
interface Scratch {
  lhs: number
  rhs: number
  lhsLow: number
  lhsHigh: number
  rhsLow: number
  rhsHigh: number
  lowLow: number
  highLow: number
  cross: number
}

const SCRATCH_LOCAL_TYPES = [I64, I64, I64, I64, I64, I64, I64, I64, I64]

function scratchFrom (firstLocal: number): Scratch {
  const [lhs, rhs, lhsLow, lhsHigh, rhsLow, rhsHigh, lowLow, highLow, cross] = SCRATCH_LOCAL_TYPES.map((_, i) => firstLocal + i)
  return { lhs, rhs, lhsLow, lhsHigh, rhsLow, rhsHigh, lowLow, highLow, cross }
}

/**
 * Inline `XXH3_mul128_fold64(lhs, rhs)`: the 128-bit product folded by XOR
 * of its halves, from four 32x32->64 products. Leaves an i64 on the stack.
 */
function emitMul128Fold (lhsValue: Code, rhsValue: Code, scratch: Scratch): Code {
  const { lhs, rhs, lhsLow, lhsHigh, rhsLow, rhsHigh, lowLow, highLow, cross } = scratch
  return [
    ...lhsValue, ...set(lhs),
    ...rhsValue, ...set(rhs),
    ...LOW_32(get(lhs)), ...set(lhsLow),
    ...get(lhs), ...i64(32n), OP.i64ShrU, ...set(lhsHigh),
    ...LOW_32(get(rhs)), ...set(rhsLow),
    ...get(rhs), ...i64(32n), OP.i64ShrU, ...set(rhsHigh),
    ...get(lhsLow), ...get(rhsLow), OP.i64Mul, ...set(lowLow),
    ...get(lhsHigh), ...get(rhsLow), OP.i64Mul, ...set(highLow),
    // cross = (lowLow >> 32) + (highLow & 0xFFFFFFFF) + lhsLow * rhsHigh (never overflows)
    ...get(lowLow), ...i64(32n), OP.i64ShrU,
    ...LOW_32(get(highLow)), OP.i64Add,
    ...get(lhsLow), ...get(rhsHigh), OP.i64Mul, OP.i64Add, ...set(cross),
    // upper = (highLow >> 32) + (cross >> 32) + lhsHigh * rhsHigh
    ...get(highLow), ...i64(32n), OP.i64ShrU,
    ...get(cross), ...i64(32n), OP.i64ShrU, OP.i64Add,
    ...get(lhsHigh), ...get(rhsHigh), OP.i64Mul, OP.i64Add,
    // lower = (cross << 32) | (lowLow & 0xFFFFFFFF)
    ...get(cross), ...i64(32n), OP.i64Shl, ...LOW_32(get(lowLow)), OP.i64Or,
    OP.i64Xor
  ]
}

/**
 * Inline `XXH3_mix16B(input, secret, seed)` for the 16 bytes at
 * `inputAddress + inputOffset` and secret at `secretAddress + secretOffset`
 * (addresses are evaluated twice). Leaves an i64 on the stack.
 */
function emitMix16 (inputAddress: Code, inputOffset: number, secretAddress: Code, secretOffset: number, seed: number, scratch: Scratch): Code {
  return emitMul128Fold(
    [...inputAddress, ...memory(OP.i64Load, inputOffset), ...secretAddress, ...memory(OP.i64Load, secretOffset), ...get(seed), OP.i64Add, OP.i64Xor],
    [...inputAddress, ...memory(OP.i64Load, inputOffset + 8), ...secretAddress, ...memory(OP.i64Load, secretOffset + 8), ...get(seed), OP.i64Sub, OP.i64Xor],
    scratch
  )
}

/** Inline `XXH3_avalanche` of local `hash` (which it overwrites). Leaves an i64 on the stack. */
function emitAvalanche (hash: number): Code {
  return [
    ...get(hash), ...get(hash), ...i64(37n), OP.i64ShrU, OP.i64Xor,
    ...i64(PRIME_MX1), OP.i64Mul, ...tee(hash),
    ...get(hash), ...i64(32n), OP.i64ShrU, OP.i64Xor
  ]
}

/**
 * The kernel's only function (exported as `run`):
 *
 * `run(length: i32, seedLow: i32, seedHigh: i32, count: i32, maxIndex: i32, mask: i32): i32`
 *
 * Hashes the `length` (0..240) bytes at ITEM_OFFSET with XXH3-64, path by
 * path as {@link xxh3Reference}, starting at seed `seedHigh << 32 | seedLow`.
 *
 * With `count = 0` it writes that one 64-bit hash to OUTPUT_OFFSET and
 * returns 0. With `count > 0` it computes Bloom indices: for seed, seed + 1,
 * …, `value = hash & mask` is kept if `value <= maxIndex` (rejection
 * sampling when the bit count is not a power of two), until `count` values
 * are written to OUTPUT_OFFSET as u32; it returns the low 32 bits of the
 * next unused seed.
 *
 * The hash is inlined in the seed loop, so a whole run of indices costs one
 * call from JavaScript.
 */
function runFunction (): KernelFunction {
  // parameters
  const [length, seedLow, seedHigh, count, maxIndex, mask] = [0, 1, 2, 3, 4, 5]
  // locals
  const [seed, output, outputEnd, value, accumulator, low, high, index, lengthTimesPrime] = [6, 7, 8, 9, 10, 11, 12, 13, 14]
  const scratch = scratchFrom(15)
  const localTypes = [I64, I32, I32, I32, I64, I64, I64, I32, I64, ...SCRATCH_LOCAL_TYPES]

  const NO_ADDRESS = i32(0)
  /** accumulator += mix16(inputAddress + ITEM_OFFSET + inputOffset, secretAddress + SECRET_OFFSET + secretOffset) */
  const addMix = (inputAddress: Code, inputOffset: number, secretAddress: Code, secretOffset: number): Code => [
    ...get(accumulator),
    ...emitMix16(inputAddress, ITEM_OFFSET + inputOffset, secretAddress, SECRET_OFFSET + secretOffset, seed, scratch),
    OP.i64Add, ...set(accumulator)
  ]
  const lengthAbove = (bound: number): Code => [...get(length), ...i32(bound), OP.i32GtU]
  /** Leaves the `if` of a length range with the hash on the stack: branch to the `hashed` block around the paths. */
  const BREAK_HASHED = [OP.br, 1]
  const evenBytes64 = 0x00FF00FF00FF00FFn
  const evenShorts64 = 0x0000FFFF0000FFFFn

  const hash129To240: Code[] = [
    // eight rounds, avalanche, the remaining whole rounds against the secret
    // shifted by MID_SIZE_START_OFFSET, then the last 16 bytes
    lengthAbove(128), [OP.if, EMPTY_BLOCK],
    get(lengthTimesPrime), set(accumulator),
    i32(0), set(index),
    [OP.loop, EMPTY_BLOCK],
    addMix(get(index), 0, get(index), 0),
    get(index), i32(16), [OP.i32Add], tee(index), i32(128), [OP.i32Ne], [OP.brIf, 0],
    [OP.end],
    emitAvalanche(accumulator), set(accumulator),
    [OP.block, EMPTY_BLOCK],
    [OP.loop, EMPTY_BLOCK],
    // leave once the next round would run past the end (round = index / 16 < length / 16)
    get(index), i32(16), [OP.i32Add], get(length), [OP.i32GtU], [OP.brIf, 1],
    addMix(get(index), 0, get(index), MID_SIZE_START_OFFSET - 128),
    get(index), i32(16), [OP.i32Add], set(index),
    [OP.br, 0],
    [OP.end],
    [OP.end],
    addMix(get(length), -16, NO_ADDRESS, SECRET_SIZE_MIN - MID_SIZE_LAST_OFFSET),
    emitAvalanche(accumulator), BREAK_HASHED,
    [OP.end]
  ]

  const hash17To128: Code[] = [
    // ceil(length / 32) pairs: 16 bytes from the front (secret 32j) and 16 from the back (secret 32j + 16)
    lengthAbove(16), [OP.if, EMPTY_BLOCK],
    get(lengthTimesPrime), set(accumulator),
    i32(0), set(index),
    [OP.loop, EMPTY_BLOCK],
    addMix(get(index), 0, [...get(index), ...get(index), OP.i32Add], 0),
    addMix([...get(length), ...get(index), OP.i32Sub], -16, [...get(index), ...get(index), OP.i32Add], 16),
    get(index), i32(16), [OP.i32Add], tee(index), get(index), [OP.i32Add], get(length), [OP.i32LtU], [OP.brIf, 0],
    [OP.end],
    emitAvalanche(accumulator), BREAK_HASHED,
    [OP.end]
  ]

  const hash9To16: Code[] = [
    lengthAbove(8), [OP.if, EMPTY_BLOCK],
    NO_ADDRESS, memory(OP.i64Load, ITEM_OFFSET), i64(SECRET_WORDS.bitflip9to16Low), get(seed), [OP.i64Add], [OP.i64Xor], set(low),
    get(length), memory(OP.i64Load, ITEM_OFFSET - 8), i64(SECRET_WORDS.bitflip9to16High), get(seed), [OP.i64Sub], [OP.i64Xor], set(high),
    // accumulator = length + byteSwap64(low) + high + mul128Fold(low, high)
    get(length), [OP.i64ExtendI32U],
    // byteSwap64: swap bytes within 16-bit lanes, then 16-bit lanes within 32-bit lanes, then the halves
    get(low), i64(evenBytes64), [OP.i64And], i64(8n), [OP.i64Shl],
    get(low), i64(8n), [OP.i64ShrU], i64(evenBytes64), [OP.i64And], [OP.i64Or], set(accumulator),
    get(accumulator), i64(evenShorts64), [OP.i64And], i64(16n), [OP.i64Shl],
    get(accumulator), i64(16n), [OP.i64ShrU], i64(evenShorts64), [OP.i64And], [OP.i64Or], i64(32n), [OP.i64Rotl],
    [OP.i64Add],
    get(high), [OP.i64Add],
    emitMul128Fold(get(low), get(high), scratch), [OP.i64Add], set(accumulator),
    emitAvalanche(accumulator), BREAK_HASHED,
    [OP.end]
  ]

  const seedLow32 = [...get(seed), OP.i32WrapI64]
  const hash4To8: Code[] = [
    get(length), i32(4), [OP.i32GeU], [OP.if, EMPTY_BLOCK],
    // low = seed ^ (byteSwap32(low 32 bits of seed) << 32)
    get(seed),
    seedLow32, i32(0xFF00FF00), [OP.i32And], i32(8), [OP.i32Rotr],
    seedLow32, i32(0x00FF00FF), [OP.i32And], i32(8), [OP.i32Rotl], [OP.i32Or], i32(16), [OP.i32Rotl],
    [OP.i64ExtendI32U], i64(32n), [OP.i64Shl], [OP.i64Xor], set(low),
    // keyed = (readLE32(last 4) + (readLE32(first 4) << 32)) ^ (bitflip - low)
    get(length), memory(OP.i64Load32U, ITEM_OFFSET - 4), NO_ADDRESS, memory(OP.i64Load32U, ITEM_OFFSET), i64(32n), [OP.i64Shl], [OP.i64Add],
    i64(SECRET_WORDS.bitflip4to8), get(low), [OP.i64Sub], [OP.i64Xor], set(accumulator),
    // rrmxmx(keyed, length)
    get(accumulator), get(accumulator), i64(49n), [OP.i64Rotl], get(accumulator), i64(24n), [OP.i64Rotl], [OP.i64Xor], [OP.i64Xor],
    i64(PRIME_MX2), [OP.i64Mul], set(accumulator),
    get(accumulator), get(accumulator), i64(35n), [OP.i64ShrU], get(length), [OP.i64ExtendI32U], [OP.i64Add], [OP.i64Xor],
    i64(PRIME_MX2), [OP.i64Mul], set(accumulator),
    get(accumulator), get(accumulator), i64(28n), [OP.i64ShrU], [OP.i64Xor], BREAK_HASHED,
    [OP.end]
  ]

  const hash0To3: Code[] = [
    get(length), [OP.if, EMPTY_BLOCK],
    // combined = first << 16 | middle << 24 | last | length << 8
    NO_ADDRESS, memory(OP.i32Load8U, ITEM_OFFSET), i32(16), [OP.i32Shl],
    get(length), i32(1), [OP.i32ShrU], memory(OP.i32Load8U, ITEM_OFFSET), i32(24), [OP.i32Shl], [OP.i32Or],
    get(length), memory(OP.i32Load8U, ITEM_OFFSET - 1), [OP.i32Or],
    get(length), i32(8), [OP.i32Shl], [OP.i32Or],
    [OP.i64ExtendI32U], i64(SECRET_WORDS.bitflip1to3), get(seed), [OP.i64Add], [OP.i64Xor], set(accumulator),
    [OP.else],
    get(seed), i64(SECRET_WORDS.bitflipEmpty), [OP.i64Xor], set(accumulator),
    [OP.end],
    // XXH64 avalanche, left on the stack as the result of the `hashed` block
    get(accumulator), get(accumulator), i64(33n), [OP.i64ShrU], [OP.i64Xor], i64(PRIME64_2), [OP.i64Mul], set(accumulator),
    get(accumulator), get(accumulator), i64(29n), [OP.i64ShrU], [OP.i64Xor], i64(PRIME64_3), [OP.i64Mul], set(accumulator),
    get(accumulator), get(accumulator), i64(32n), [OP.i64ShrU], [OP.i64Xor]
  ]

  return {
    params: [I32, I32, I32, I32, I32, I32],
    results: [I32],
    locals: localTypes,
    exportName: 'run',
    body: [
      get(seedLow), [OP.i64ExtendI32U], get(seedHigh), [OP.i64ExtendI32U], i64(32n), [OP.i64Shl], [OP.i64Or], set(seed),
      i32(OUTPUT_OFFSET), set(output),
      get(count), i32(2), [OP.i32Shl], i32(OUTPUT_OFFSET), [OP.i32Add], set(outputEnd),
      get(length), [OP.i64ExtendI32U], i64(PRIME64_1), [OP.i64Mul], set(lengthTimesPrime),
      [OP.loop, EMPTY_BLOCK],
      // ---- hashed = XXH3-64(item, seed)
      [OP.block, I64],
      ...hash129To240,
      ...hash17To128,
      ...hash9To16,
      ...hash4To8,
      ...hash0To3,
      [OP.end],
      set(accumulator),
      // ---- count = 0: the hash itself
      get(count), [OP.i32Eqz], [OP.if, EMPTY_BLOCK],
      i32(OUTPUT_OFFSET), get(accumulator), memory(OP.i64Store),
      i32(0), [OP.return],
      [OP.end],
      // ---- otherwise the next Bloom index, if not rejected
      get(accumulator), [OP.i32WrapI64], get(mask), [OP.i32And], set(value),
      get(seed), i64(1n), [OP.i64Add], set(seed),
      get(value), get(maxIndex), [OP.i32LeU], [OP.if, EMPTY_BLOCK],
      get(output), get(value), memory(OP.i32Store),
      get(output), i32(4), [OP.i32Add], tee(output), get(outputEnd), [OP.i32Eq], [OP.if, EMPTY_BLOCK],
      get(seed), [OP.i32WrapI64], [OP.return],
      [OP.end],
      [OP.end],
      [OP.br, 0],
      [OP.end],
      [OP.unreachable]
    ]
  }
}

/**
 * The kernel's WebAssembly binary (about 1.5 KB), assembled at import.
 *
 * @example
 * ```ts
 * WebAssembly.validate(XXH3_KERNEL_WASM) // true
 * ```
 */
export const XXH3_KERNEL_WASM: Uint8Array<ArrayBuffer> = assembleModule([runFunction()])

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
