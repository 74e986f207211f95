/* eslint-disable no-console */

/**
 * Bloom filter benchmark: this package's BloomFilter (XXH3 in a small
 * WebAssembly kernel) against a baseline that computes the same indices with
 * the native XXH3 of `@node-rs/xxhash` (one N-API call per hash, BigInt seeds).
 *
 * Run with `node benchmarks/bloom/index.ts` (Node 22 type stripping), or
 * `npm run bench:bloom`. Options: `--items N` (default 100000), `--runs N` (default 7).
 */

import { createHash } from 'node:crypto'
import os from 'node:os'
import { parseArgs } from 'node:util'
import { xxh3 as nativeXxh3 } from '@node-rs/xxhash'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { BloomFilter } from '../../src/core/bloom/bloom-filter.ts'
import { xxh3Kernel } from '../../src/core/bloom/xxh3.ts'
import { median } from '../stats.ts'

const RAW_CODEC = 0x55
const SHA2_256 = 0x12

const { values: options } = parseArgs({
  options: {
    items: { type: 'string', default: '100000' },
    runs: { type: 'string', default: '7' }
  }
})
const itemCount = Number(options.items)
const runs = Number(options.runs)

/** CIDv1 (raw, sha2-256) of the 4-byte little-endian encoding of `index`. */
function makeCid (index: number): CID {
  const data = new Uint8Array(4)
  new DataView(data.buffer).setUint32(0, index, true)
  const digest = createHash('sha256').update(data).digest()
  return CID.createV1(RAW_CODEC, Digest.create(SHA2_256, new Uint8Array(digest)))
}

/** The minimal interface both implementations offer. */
interface BenchFilter {
  readonly bytes: Uint8Array
  add(item: Uint8Array): void
  has(item: Uint8Array): boolean
}

/**
 * The baseline: the same deterministic-bloom indices (XXH3_64(item, seed) for
 * seeds 0, 1, …, rejection sampling against the next power of two), with the
 * native XXH3 called once per hash.
 */
class NativeBloomFilter implements BenchFilter {
  readonly bytes: Uint8Array
  readonly hashCount: number
  readonly #bitCount: number
  readonly #mask: bigint

  constructor (byteLength: number, hashCount: number) {
    this.bytes = new Uint8Array(byteLength)
    this.hashCount = hashCount
    this.#bitCount = byteLength * 8
    let power = 1
    while (power < this.#bitCount) {
      power *= 2
    }
    this.#mask = BigInt(power - 1)
  }

  add (item: Uint8Array): void {
    const bytes = this.bytes
    let seed = 0
    for (let found = 0; found < this.hashCount;) {
      const index = Number(nativeXxh3.xxh64(item, BigInt(seed++)) & this.#mask)
      if (index < this.#bitCount) {
        bytes[index >>> 3] |= 1 << (index & 7)
        found++
      }
    }
  }

  has (item: Uint8Array): boolean {
    const bytes = this.bytes
    let seed = 0
    for (let found = 0; found < this.hashCount;) {
      const index = Number(nativeXxh3.xxh64(item, BigInt(seed++)) & this.#mask)
      if (index < this.#bitCount) {
        if ((bytes[index >>> 3] & (1 << (index & 7))) === 0) {
          return false
        }
        found++
      }
    }
    return true
  }
}

interface Implementation {
  name: string
  create(): BenchFilter
}

const template = BloomFilter.forCapacity(itemCount)
const implementations: Implementation[] = [
  { name: `BloomFilter (XXH3 in WebAssembly, backend: ${xxh3Kernel.backend})`, create: () => BloomFilter.forCapacity(itemCount) },
  { name: 'baseline: native @node-rs/xxhash, BigInt seeds', create: () => new NativeBloomFilter(template.bytes.byteLength, template.hashCount) }
]

interface Sample {
  buildMs: number
  presentLookupMs: number
  absentLookupMs: number
  bytes: Uint8Array
}

function measure (implementation: Implementation, present: Uint8Array[], absent: Uint8Array[]): Sample {
  let start = performance.now()
  const filter = implementation.create()
  for (const item of present) {
    filter.add(item)
  }
  const buildMs = performance.now() - start

  start = performance.now()
  let hits = 0
  for (const item of present) {
    if (filter.has(item)) {
      hits++
    }
  }
  const presentLookupMs = performance.now() - start
  if (hits !== present.length) {
    throw new Error(`${implementation.name}: false negatives (${present.length - hits})`)
  }

  start = performance.now()
  for (const item of absent) {
    filter.has(item)
  }
  const absentLookupMs = performance.now() - start
  return { buildMs, presentLookupMs, absentLookupMs, bytes: filter.bytes }
}

function perSecond (count: number, milliseconds: number): string {
  return Math.round(count / (milliseconds / 1000)).toLocaleString('en-US')
}

const present = Array.from({ length: itemCount }, (_, i) => makeCid(i).bytes)
const absent = Array.from({ length: itemCount }, (_, i) => makeCid(itemCount + i).bytes)

// warm up both (JIT and WebAssembly tier-up), and check they build identical filters
const warmUp = implementations.map(implementation => measure(implementation, present, absent))
if (!warmUp.every(sample => sample.bytes.length === warmUp[0].bytes.length && sample.bytes.every((byte, i) => byte === warmUp[0].bytes[i]))) {
  throw new Error('The implementations built different filters')
}

const samples = new Map<Implementation, Sample[]>(implementations.map(implementation => [implementation, []]))
for (let run = 0; run < runs; run++) {
  // interleave the implementations so that machine noise hits both alike
  for (const implementation of implementations) {
    samples.get(implementation)?.push(measure(implementation, present, absent))
  }
}

const cpus = os.cpus()
console.log(`## Bloom filter benchmark: ${itemCount.toLocaleString('en-US')} CIDv1 (raw, sha2-256) CIDs, ${template.bytes.byteLength.toLocaleString('en-US')}-byte filter, k = ${template.hashCount}\n`)
console.log(`- CPU: ${cpus[0]?.model ?? 'unknown'} (${cpus.length} logical cores)`)
console.log(`- Node.js: ${process.version} (V8 ${process.versions.v8}), ${os.platform()} ${os.arch()}`)
console.log(`- medians of ${runs} runs after one warm-up run; both implementations build byte-identical filters\n`)
console.log('| implementation | build filter (ms) | inserts/s | lookups/s (present) | lookups/s (absent) |')
console.log('| --- | ---: | ---: | ---: | ---: |')
const medians = implementations.map(implementation => {
  const list = samples.get(implementation) ?? []
  return {
    implementation,
    buildMs: median(list.map(sample => sample.buildMs)),
    presentLookupMs: median(list.map(sample => sample.presentLookupMs)),
    absentLookupMs: median(list.map(sample => sample.absentLookupMs))
  }
})
for (const { implementation, buildMs, presentLookupMs, absentLookupMs } of medians) {
  console.log(`| ${implementation.name} | ${buildMs.toFixed(1)} | ${perSecond(itemCount, buildMs)} | ${perSecond(itemCount, presentLookupMs)} | ${perSecond(itemCount, absentLookupMs)} |`)
}
const [ours, native] = medians
console.log(`\nBuild time: ours / native = ${(ours.buildMs / native.buildMs).toFixed(2)} (target: < 100 ms and within 2x of native)`)
