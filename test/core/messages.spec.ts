/**
 * Property-based fuzzing of the wire decoder: whatever bytes a hostile peer
 * sends, `decodeMessage` returns a well-formed message within the limits or
 * throws a ProtocolError or LimitExceededError, quickly. Also the
 * encode → decode round trip and the limits of PROTOCOL.md §6, one by one.
 */

import * as dagCbor from '@ipld/dag-cbor'
import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { concat } from 'uint8arrays/concat'
import { DEFAULT_MAX_BLOCK_SIZE, DEFAULT_MAX_BLOOM_BYTES, DEFAULT_MAX_BLOOM_HASH_COUNT, DEFAULT_MAX_CIDS_PER_MESSAGE } from '../../src/constants.ts'
import { BloomFilter } from '../../src/core/bloom/bloom-filter.ts'
import { decodeMessage, encodeMessage } from '../../src/core/messages.ts'
import { LimitExceededError, ProtocolError } from '../../src/errors.ts'
import type { ErrorCode, Message, MessageLimits } from '../../src/core/messages.ts'

/** Fuzz cases per property (the README cites these numbers) */
const RANDOM_RUNS = 3000
const PREFIXED_RUNS = 3000
const MUTATION_RUNS = 3000
const FIELD_RUNS = 2000
const TRUNCATION_MESSAGES = 150
const ROUND_TRIP_RUNS = 1000

/** A decode that takes longer than this counts as a hang (frames here are at most a few KiB) */
const MAX_DECODE_MS = 500

const TYPED = new Set([ProtocolError.name, LimitExceededError.name])
const TYPES = new Set(['pull', 'push', 'header', 'block', 'status', 'idle', 'done', 'error'])
const ERROR_CODES: ErrorCode[] = ['not-found', 'refused', 'limit', 'protocol', 'verification', 'internal']

// ---- arbitraries ------------------------------------------------------------

/** CIDs of many shapes: v0, v1 with several codecs and hashes, identity CIDs of any length */
const arbCid: fc.Arbitrary<CID> = fc.oneof(
  fc.uint8Array({ minLength: 32, maxLength: 32 }).map(d => CID.createV0(Digest.create(0x12, d))),
  fc.tuple(fc.constantFrom(0x55, 0x70, 0x71, 0x0129), fc.constantFrom(0x12, 0x1e), fc.uint8Array({ minLength: 32, maxLength: 32 }))
    .map(([code, hash, d]) => CID.createV1(code, Digest.create(hash, d))),
  fc.tuple(fc.constantFrom(0x55, 0x71), fc.uint8Array({ minLength: 64, maxLength: 64 })).map(([code, d]) => CID.createV1(code, Digest.create(0x13, d))),
  fc.tuple(fc.constantFrom(0x55, 0x71), fc.uint8Array({ maxLength: 40 })).map(([code, d]) => CID.createV1(code, Digest.create(0x00, d)))
)

const arbCids = fc.array(arbCid, { maxLength: 6 })

const arbBloom: fc.Arbitrary<BloomFilter | undefined> = fc.option(
  fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 128 }), fc.integer({ min: 1, max: DEFAULT_MAX_BLOOM_HASH_COUNT }))
    .map(([bytes, k]) => new BloomFilter(bytes, k)),
  { nil: undefined }
)

/** Valid messages of every type, within the default limits */
const arbMessage: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ type: fc.constant('pull' as const), roots: arbCids, wants: arbCids, bloom: arbBloom }),
  fc.record({ type: fc.constant('push' as const), roots: arbCids, hints: arbCids }),
  fc.record({ type: fc.constant('header' as const), roots: arbCids }),
  fc.record({ type: fc.constant('block' as const), cid: arbCid, bytes: fc.uint8Array({ maxLength: 2048 }) }),
  fc.record({ type: fc.constant('status' as const), wants: arbCids, bloom: arbBloom, rootsHeld: fc.boolean() }),
  fc.record({ type: fc.constant('idle' as const), statuses: fc.maxSafeNat() }),
  fc.record({ type: fc.constant('done' as const), duplicates: fc.maxSafeNat() }),
  fc.record({ type: fc.constant('error' as const), code: fc.constantFrom(...ERROR_CODES), message: fc.string({ unit: 'grapheme', maxLength: 60 }), cids: arbCids })
)

/** Limits to decode with: the defaults, or small ones that random frames can reach */
const arbLimits: fc.Arbitrary<MessageLimits> = fc.oneof(
  fc.constant({}),
  fc.record({
    maxBlockSize: fc.integer({ min: 0, max: 4096 }),
    maxBloomBytes: fc.integer({ min: 0, max: 256 }),
    maxBloomHashCount: fc.integer({ min: 0, max: 70 }),
    maxCidsPerMessage: fc.integer({ min: 0, max: 8 })
  })
)

/** Values DAG-CBOR can encode, CIDs included: the wrong-typed fields of a hostile control map */
const arbCborValue: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>(tie => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.constantFrom(-1, 0, 1, 64, 65, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 1.5, -0.5, 1e300),
    fc.bigInt({ min: -(2n ** 64n) + 1n, max: 2n ** 64n - 1n }),
    fc.string({ maxLength: 12 }),
    fc.constantFrom(...ERROR_CODES, 'pull', 'push', 'status', 'idle', 'done', 'error', 'header'),
    fc.uint8Array({ maxLength: 40 }),
    arbCid,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.array(arbCid, { maxLength: 10 }),
    fc.dictionary(fc.constantFrom('t', 'rs', 'sr', 'hs', 'cs', 'bb', 'bk', 'n', 'd', 'c', 'm', 'x'), tie('value'), { maxKeys: 3 })
  )
})).value

const FIELD_KEYS = ['t', 'rs', 'sr', 'hs', 'cs', 'bb', 'bk', 'n', 'd', 'c', 'm', 'roots', 'version', 'zz']

/** Control maps whose fields hold anything: right type names, wrong field types */
const arbHostileMap: fc.Arbitrary<Record<string, unknown>> = fc.tuple(
  fc.option(fc.constantFrom('pull', 'push', 'status', 'idle', 'done', 'error', 'hello', ''), { nil: undefined }),
  fc.dictionary(fc.constantFrom(...FIELD_KEYS), arbCborValue, { maxKeys: 6 })
).map(([t, fields]) => (t == null ? { ...fields } : { ...fields, t }))

/** An edit applied to a valid frame body */
type Mutation =
  | { kind: 'flip', at: number, bit: number }
  | { kind: 'set', at: number, value: number }
  | { kind: 'insert', at: number, bytes: Uint8Array }
  | { kind: 'delete', at: number, length: number }
  | { kind: 'truncate', at: number }
  | { kind: 'duplicate', at: number, length: number }

const arbMutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.constantFrom(0x00, 0x01, 0x12, 0x18, 0x19, 0x1a, 0x1b, 0x40, 0x58, 0x5b, 0x60, 0x78, 0x80, 0x98, 0x9b, 0x9f, 0xa0, 0xbb, 0xbf, 0xd8, 0xf4, 0xf6, 0xf7, 0xfa, 0xfb, 0xff) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 40 }) })
)

// ---- helpers ----------------------------------------------------------------

function body (message: Message): Uint8Array {
  return concat(encodeMessage(message))
}

function mutate (input: Uint8Array, mutations: Mutation[]): Uint8Array {
  let bytes = input
  for (const m of mutations) {
    const at = bytes.byteLength === 0 ? 0 : m.at % bytes.byteLength
    switch (m.kind) {
      case 'flip':
        if (bytes.byteLength > 0) {
          bytes = bytes.slice()
          bytes[at] ^= 1 << m.bit
        }
        break
      case 'set':
        if (bytes.byteLength > 0) {
          bytes = bytes.slice()
          bytes[at] = m.value
        }
        break
      case 'insert':
        bytes = concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)])
        break
      case 'delete':
        bytes = concat([bytes.subarray(0, at), bytes.subarray(at + m.length)])
        break
      case 'truncate':
        bytes = bytes.slice(0, at)
        break
      case 'duplicate':
        bytes = concat([bytes.subarray(0, at + m.length), bytes.subarray(at)])
        break
      default:
        throw new Error('unknown mutation')
    }
  }
  return bytes
}

/** A comparable plain form of a message: CIDs as strings, Blooms as bytes and count */
function plain (message: Message): unknown {
  const cids = (list: CID[]): string[] => list.map(cid => cid.toString())
  const bloom = (b?: BloomFilter): unknown => b == null ? null : { k: b.hashCount, bytes: [...b.bytes] }
  switch (message.type) {
    case 'pull': return { type: 'pull', roots: cids(message.roots), wants: cids(message.wants), bloom: bloom(message.bloom) }
    case 'push': return { type: 'push', roots: cids(message.roots), hints: cids(message.hints) }
    case 'header': return { type: 'header', roots: cids(message.roots) }
    case 'block': return { type: 'block', cid: message.cid.toString(), bytes: [...message.bytes] }
    case 'status': return { type: 'status', wants: cids(message.wants), bloom: bloom(message.bloom), rootsHeld: (message as { rootsHeld?: boolean }).rootsHeld === true }
    case 'idle': return { type: 'idle', statuses: message.statuses }
    case 'done': return { type: 'done', duplicates: message.duplicates }
    case 'error': return { type: 'error', code: message.code, message: message.message, cids: cids(message.cids) }
    default: throw new Error(`unknown message type ${(message as { type: string }).type}`)
  }
}

/** Checks that a decoded message is well formed and within the limits it was decoded with */
function expectWellFormed (message: Message, limits: MessageLimits): void {
  expect(TYPES.has(message.type), `type ${message.type}`).to.be.true()
  const maxCids = limits.maxCidsPerMessage ?? DEFAULT_MAX_CIDS_PER_MESSAGE
  const lists: CID[][] = []
  switch (message.type) {
    case 'pull': lists.push(message.roots, message.wants); break
    case 'push': lists.push(message.roots, message.hints); break
    case 'header': lists.push(message.roots); break
    case 'status': lists.push(message.wants); break
    case 'error': lists.push(message.cids); break
    default: break
  }
  for (const list of lists) {
    expect(Array.isArray(list)).to.be.true()
    expect(list.length).to.be.at.most(maxCids)
    for (const cid of list) {
      expect(CID.asCID(cid), 'a CID').to.not.be.null()
    }
  }
  if (message.type === 'pull' || message.type === 'status') {
    if (message.bloom != null) {
      expect(message.bloom.bytes.byteLength).to.be.within(1, limits.maxBloomBytes ?? DEFAULT_MAX_BLOOM_BYTES)
      expect(message.bloom.hashCount).to.be.within(1, limits.maxBloomHashCount ?? DEFAULT_MAX_BLOOM_HASH_COUNT)
    }
  }
  expectWellFormedFields(message, limits)
}

function expectWellFormedFields (message: Message, limits: MessageLimits): void {
  if (message.type === 'block') {
    expect(CID.asCID(message.cid)).to.not.be.null()
    expect(message.bytes.byteLength).to.be.at.most(limits.maxBlockSize ?? DEFAULT_MAX_BLOCK_SIZE)
  }
  if (message.type === 'idle') {
    expect(Number.isSafeInteger(message.statuses) && message.statuses >= 0).to.be.true()
  }
  if (message.type === 'done') {
    expect(Number.isSafeInteger(message.duplicates) && message.duplicates >= 0).to.be.true()
  }
  if (message.type === 'error') {
    expect(ERROR_CODES).to.include(message.code)
    expect(message.message).to.be.a('string')
    expect(message.message.length).to.be.at.most(1024)
  }
}

/**
 * The fuzz oracle: decoding returns a well-formed message (which re-encodes
 * and decodes to the same message) or throws a ProtocolError or
 * LimitExceededError, and never takes long.
 */
function checkDecode (bytes: Uint8Array, limits: MessageLimits = {}): 'ok' | 'rejected' {
  const started = performance.now()
  let message: Message
  try {
    message = decodeMessage(bytes, limits)
  } catch (err) {
    const name = (err as Error)?.name
    if (!TYPED.has(name)) {
      throw new Error(`decodeMessage threw ${name}: ${(err as Error)?.message} for ${hex(bytes)}`)
    }
    expect(performance.now() - started, 'decode time (ms)').to.be.below(MAX_DECODE_MS)
    return 'rejected'
  }
  expect(performance.now() - started, 'decode time (ms)').to.be.below(MAX_DECODE_MS)
  expectWellFormed(message, limits)
  expect(plain(decodeMessage(body(message), limits))).to.deep.equal(plain(message))
  return 'ok'
}

function hex (bytes: Uint8Array): string {
  const shown = [...bytes.subarray(0, 64)].map(b => b.toString(16).padStart(2, '0')).join(' ')
  return bytes.byteLength > 64 ? `${shown} … (${bytes.byteLength} bytes)` : shown
}

function expectThrowsNamed (run: () => unknown, name: string): Error {
  try {
    run()
  } catch (err) {
    expect((err as Error).name, (err as Error).message).to.equal(name)
    return err as Error
  }
  throw new Error(`expected a ${name}`)
}

const limitError = (run: () => unknown): Error => expectThrowsNamed(run, LimitExceededError.name)
const protocolError = (run: () => unknown): Error => expectThrowsNamed(run, ProtocolError.name)

// ---- tests ------------------------------------------------------------------

describe('messages: decodeMessage against hostile input', function () {
  this.timeout(120_000)

  it(`random bytes (${RANDOM_RUNS} cases): only ProtocolError or LimitExceededError, never a hang`, () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), arbLimits, (bytes, limits) => {
      checkDecode(bytes, limits)
    }), { numRuns: RANDOM_RUNS })
  })

  it(`random bytes after a CID or map first byte (${PREFIXED_RUNS} cases): only typed errors; some decode`, () => {
    let decoded = 0
    fc.assert(fc.property(
      fc.constantFrom(0x01, 0x12, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xb7, 0xbb),
      fc.uint8Array({ maxLength: 400 }),
      arbLimits,
      (first, rest, limits) => {
        if (checkDecode(concat([Uint8Array.of(first), rest]), limits) === 'ok') {
          decoded++
        }
      }), { numRuns: PREFIXED_RUNS })
    // 0xa0 alone is an empty map (rejected), but CID-looking bodies decode as blocks: the oracle saw both outcomes
    expect(decoded).to.be.greaterThan(0)
  })

  it(`mutated valid frames of every type (${MUTATION_RUNS} cases): only typed errors, decoded ones well formed`, () => {
    const outcomes = { ok: 0, rejected: 0 }
    const types = new Set<string>()
    fc.assert(fc.property(arbMessage, fc.array(arbMutation, { minLength: 1, maxLength: 4 }), arbLimits, (message, mutations, limits) => {
      types.add(message.type)
      outcomes[checkDecode(mutate(body(message), mutations), limits)]++
    }), { numRuns: MUTATION_RUNS })
    expect([...types].sort()).to.deep.equal([...TYPES].sort())
    expect(outcomes.ok).to.be.greaterThan(0)
    expect(outcomes.rejected).to.be.greaterThan(0)
  })

  it(`control maps with wrong-typed fields (${FIELD_RUNS} cases): only typed errors`, () => {
    const outcomes = { ok: 0, rejected: 0 }
    fc.assert(fc.property(arbHostileMap, arbLimits, (map, limits) => {
      let bytes: Uint8Array
      try {
        bytes = dagCbor.encode(map)
      } catch {
        return // not encodable (e.g. a float DAG-CBOR refuses): nothing a peer could send
      }
      outcomes[checkDecode(bytes, limits)]++
    }), { numRuns: FIELD_RUNS })
    expect(outcomes.rejected).to.be.greaterThan(0)
  })

  it(`every prefix of ${TRUNCATION_MESSAGES} valid frames: a truncated frame never decodes to a different message`, () => {
    let prefixes = 0
    fc.assert(fc.property(arbMessage, (message) => {
      const full = body(message)
      for (let length = 0; length < full.byteLength; length++) {
        const prefix = full.subarray(0, length)
        prefixes++
        let decoded: Message
        try {
          decoded = decodeMessage(prefix)
        } catch (err) {
          expect(TYPED.has((err as Error).name), `${(err as Error).name} for a ${length}-byte prefix of a ${message.type}`).to.be.true()
          continue
        }
        // a prefix of a block frame is a shorter block of the same CID; a prefix of a control frame never decodes
        expect(message.type, `a ${length}-byte prefix of ${hex(full)} decoded`).to.equal('block')
        expect(decoded.type).to.equal('block')
        if (decoded.type === 'block' && message.type === 'block') {
          expect(decoded.cid.equals(message.cid)).to.be.true()
          expect(decoded.bytes.byteLength).to.equal(length - message.cid.bytes.byteLength)
        }
      }
    }), { numRuns: TRUNCATION_MESSAGES })
    expect(prefixes).to.be.greaterThan(TRUNCATION_MESSAGES)
  })

  it('deeply nested CBOR in a control map is a ProtocolError, not a stack overflow', () => {
    const depth = 200_000
    const nested = new Uint8Array(4 + depth + 1)
    nested.set([0xa1, 0x61, 0x74], 0) // { t: [[[[...]]]] }
    nested.fill(0x81, 3, 3 + depth)
    nested[3 + depth] = 0xf6
    protocolError(() => decodeMessage(nested.subarray(0, 3 + depth + 1)))
  })

  it('a map header claiming 2^64 entries or a byte string of 2^63 bytes is rejected without allocating', () => {
    protocolError(() => decodeMessage(Uint8Array.of(0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)))
    protocolError(() => decodeMessage(Uint8Array.of(0xa1, 0x62, 0x62, 0x62, 0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)))
  })
})

describe('messages: encode → decode round trip', function () {
  this.timeout(60_000)

  it(`${ROUND_TRIP_RUNS} random valid messages of every type decode to themselves`, () => {
    const types = new Set<string>()
    fc.assert(fc.property(arbMessage, (message) => {
      types.add(message.type)
      const decoded = decodeMessage(body(message))
      expect(plain(decoded)).to.deep.equal(plain(message))
    }), { numRuns: ROUND_TRIP_RUNS })
    expect([...types].sort()).to.deep.equal([...TYPES].sort())
  })

  it('block frames are CARv1 sections: CID bytes then data, CIDv0 included', () => {
    const digest = Digest.create(0x12, new Uint8Array(32).fill(7))
    const v0 = CID.createV0(digest)
    const decoded = decodeMessage(body({ type: 'block', cid: v0, bytes: Uint8Array.of(1, 2, 3) }))
    expect(decoded.type).to.equal('block')
    expect(body(decoded)[0]).to.equal(0x12)
    expect(plain(decoded)).to.deep.equal({ type: 'block', cid: v0.toString(), bytes: [1, 2, 3] })
  })

  it('an error message is cut to 1024 characters', () => {
    const decoded = decodeMessage(body({ type: 'error', code: 'internal', message: 'x'.repeat(5000), cids: [] }))
    expect(decoded.type === 'error' && decoded.message).to.equal('x'.repeat(1024))
  })

  it('an empty bb means no Bloom whatever bk says', () => {
    const decoded = decodeMessage(dagCbor.encode({ t: 'status', sr: [], bb: new Uint8Array(0), bk: 1_000_000 }))
    expect(decoded.type === 'status' && decoded.bloom).to.be.undefined()
  })
})

describe('messages: limits', () => {
  const cid = CID.createV1(0x55, Digest.create(0x12, new Uint8Array(32).fill(1)))
  const cidsOf = (n: number): CID[] => Array.from({ length: n }, (_, i) => {
    const digest = new Uint8Array(32)
    new DataView(digest.buffer).setUint32(0, i)
    return CID.createV1(0x71, Digest.create(0x12, digest))
  })

  it('a block over maxBlockSize is a LimitExceededError; one at the limit decodes', () => {
    const at = body({ type: 'block', cid, bytes: new Uint8Array(1024) })
    const over = body({ type: 'block', cid, bytes: new Uint8Array(1025) })
    expect(decodeMessage(at, { maxBlockSize: 1024 }).type).to.equal('block')
    limitError(() => decodeMessage(over, { maxBlockSize: 1024 }))
  })

  it('a block over the default 2 MiB is a LimitExceededError', () => {
    expect(decodeMessage(body({ type: 'block', cid, bytes: new Uint8Array(DEFAULT_MAX_BLOCK_SIZE) })).type).to.equal('block')
    limitError(() => decodeMessage(body({ type: 'block', cid, bytes: new Uint8Array(DEFAULT_MAX_BLOCK_SIZE + 1) })))
  })

  for (const type of ['pull', 'status'] as const) {
    it(`a ${type} Bloom over maxBloomBytes is a LimitExceededError (custom and default limit)`, () => {
      const frame = (bytes: number): Uint8Array => dagCbor.encode({ t: type, rs: [cid], sr: [], bk: 3, bb: new Uint8Array(bytes).fill(0x5a) })
      expect(decodeMessage(frame(256), { maxBloomBytes: 256 }).type).to.equal(type)
      limitError(() => decodeMessage(frame(257), { maxBloomBytes: 256 }))
      limitError(() => decodeMessage(frame(DEFAULT_MAX_BLOOM_BYTES + 1)))
    })

    it(`a ${type} Bloom with hash count 0 and non-empty bytes, or above maxBloomHashCount, is a LimitExceededError`, () => {
      const frame = (bk: number): Uint8Array => dagCbor.encode({ t: type, rs: [cid], sr: [], bk, bb: Uint8Array.of(0xff, 0xff) })
      limitError(() => decodeMessage(frame(0)))
      limitError(() => decodeMessage(frame(DEFAULT_MAX_BLOOM_HASH_COUNT + 1)))
      limitError(() => decodeMessage(frame(1_000_000)))
      limitError(() => decodeMessage(frame(9), { maxBloomHashCount: 8 }))
      const ok = decodeMessage(frame(DEFAULT_MAX_BLOOM_HASH_COUNT))
      expect((ok.type === 'pull' || ok.type === 'status') && ok.bloom?.hashCount).to.equal(DEFAULT_MAX_BLOOM_HASH_COUNT)
    })

    it(`a ${type} Bloom whose hash count is not an unsigned integer is a ProtocolError`, () => {
      for (const bk of [-1, 'many', null, 2.5, 2n ** 64n - 1n]) {
        protocolError(() => decodeMessage(dagCbor.encode({ t: type, rs: [cid], sr: [], bk, bb: Uint8Array.of(1) })))
      }
    })
  }

  const lists: Array<[string, (cids: CID[]) => Uint8Array]> = [
    ['pull rs (roots)', cids => dagCbor.encode({ t: 'pull', rs: cids, sr: [], bk: 0, bb: new Uint8Array(0) })],
    ['pull sr (wants)', cids => dagCbor.encode({ t: 'pull', rs: [cid], sr: cids, bk: 0, bb: new Uint8Array(0) })],
    ['push rs (roots)', cids => dagCbor.encode({ t: 'push', rs: cids, hs: [] })],
    ['push hs (hints)', cids => dagCbor.encode({ t: 'push', rs: [cid], hs: cids })],
    ['header roots', cids => dagCbor.encode({ roots: cids, version: 1 })],
    ['status sr (wants)', cids => dagCbor.encode({ t: 'status', sr: cids, bk: 0, bb: new Uint8Array(0) })],
    ['error cs', cids => dagCbor.encode({ t: 'error', c: 'not-found', m: '', cs: cids })]
  ]

  for (const [name, frame] of lists) {
    it(`a CID list over maxCidsPerMessage in ${name} is a LimitExceededError`, () => {
      expect(TYPES.has(decodeMessage(frame(cidsOf(5)), { maxCidsPerMessage: 5 }).type)).to.be.true()
      limitError(() => decodeMessage(frame(cidsOf(6)), { maxCidsPerMessage: 5 }))
    })
  }

  it(`a CID list of ${DEFAULT_MAX_CIDS_PER_MESSAGE + 1} is over the default limit; ${DEFAULT_MAX_CIDS_PER_MESSAGE} is not`, () => {
    const status = (n: number): Uint8Array => dagCbor.encode({ t: 'status', sr: cidsOf(n), bk: 0, bb: new Uint8Array(0) })
    const ok = decodeMessage(status(DEFAULT_MAX_CIDS_PER_MESSAGE))
    expect(ok.type === 'status' && ok.wants.length).to.equal(DEFAULT_MAX_CIDS_PER_MESSAGE)
    limitError(() => decodeMessage(status(DEFAULT_MAX_CIDS_PER_MESSAGE + 1)))
  })

  it('a CID list holding something other than links, or not a list, is a ProtocolError', () => {
    protocolError(() => decodeMessage(dagCbor.encode({ t: 'push', rs: [cid, 'bafy'], hs: [] })))
    protocolError(() => decodeMessage(dagCbor.encode({ t: 'push', rs: cid, hs: [] })))
    protocolError(() => decodeMessage(dagCbor.encode({ t: 'push', rs: [cid.bytes], hs: [] })))
  })

  it('a CAR header with version 2 (or any version but 1) is a ProtocolError', () => {
    protocolError(() => decodeMessage(dagCbor.encode({ roots: [cid], version: 2 })))
    protocolError(() => decodeMessage(dagCbor.encode({ roots: [cid], version: 0 })))
    protocolError(() => decodeMessage(dagCbor.encode({ roots: [cid], version: '1' })))
    expect(plain(decodeMessage(dagCbor.encode({ roots: [cid], version: 1 })))).to.deep.equal({ type: 'header', roots: [cid.toString()] })
  })

  it('idle and done counts must be unsigned safe integers', () => {
    for (const n of [-1, 1.5, '1', null, 2n ** 60n]) {
      protocolError(() => decodeMessage(dagCbor.encode({ t: 'idle', n })))
      protocolError(() => decodeMessage(dagCbor.encode({ t: 'done', d: n })))
    }
  })

  it('a link that is not a valid CID (a "CIDv0" with another codec or hash, written with a version varint) is a ProtocolError', () => {
    // tag 42 over 00 | 00 55 00 00: version 0, codec raw, identity hash, empty digest.
    // Build { t: 'push', hs: [], rs: [link] } around a valid 4-byte CID (01 55 00 00), then set its version byte to 0
    const valid = CID.createV1(0x55, Digest.create(0x00, new Uint8Array(0)))
    const frame = dagCbor.encode({ t: 'push', rs: [valid], hs: [] })
    const at = frame.findIndex((_, i) => frame[i] === 0x45 && frame[i + 1] === 0x00 && frame[i + 2] === 0x01)
    expect(at).to.be.greaterThan(0)
    frame[at + 2] = 0x00
    protocolError(() => decodeMessage(frame))
    // the same with a 64-byte sha2-512 digest: a CIDv0 is a 34-byte sha2-256 multihash and nothing else
    const sha512 = CID.createV1(0x71, Digest.create(0x13, new Uint8Array(64).fill(9)))
    const frame2 = dagCbor.encode({ t: 'status', sr: [sha512], bk: 0, bb: new Uint8Array(0) })
    const at2 = frame2.findIndex((_, i) => frame2[i] === 0x58 && frame2[i + 1] === 0x45 && frame2[i + 2] === 0x00 && frame2[i + 3] === 0x01)
    expect(at2).to.be.greaterThan(0)
    frame2[at2 + 3] = 0x00
    protocolError(() => decodeMessage(frame2))
  })

  it('empty frames, unknown first bytes, unknown types and error codes are ProtocolErrors', () => {
    protocolError(() => decodeMessage(new Uint8Array(0)))
    protocolError(() => decodeMessage(Uint8Array.of(0x00)))
    protocolError(() => decodeMessage(Uint8Array.of(0x80)))
    protocolError(() => decodeMessage(Uint8Array.of(0xbf, 0xff)))
    protocolError(() => decodeMessage(dagCbor.encode({ t: 'hello' })))
    protocolError(() => decodeMessage(dagCbor.encode({ t: 'error', c: 'oops', m: '', cs: [] })))
    protocolError(() => decodeMessage(Uint8Array.of(0x01, 0x55)))
  })
})
