/**
 * A benchmark worker: a child process that holds one node at a time and
 * does what the runner (./index.ts) asks over IPC: set up a fresh node on a
 * fresh blockstore, connect, run a transfer with a time budget, report
 * memory and block counts and verify the DAG, tear down. Sender and receiver
 * live in separate workers, so each has its own core and its own memory
 * figures.
 */

import { execFile } from 'node:child_process'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { dirname } from 'node:path'
import { promisify } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import { FsBlockstore } from 'blockstore-fs'
import { CID } from 'multiformats/cid'
import { walkDag } from '../src/core/index.ts'
import { PROTOCOL_ID } from '../src/index.ts'
import { BITSWAP_PROTOCOL, bitswapCounter, createBenchNode, runAction, stopBenchNode } from './methods.ts'
import { serve } from './rpc.ts'
import { memoryStoreOf } from './stores.ts'
import type { Action, ActionResult, BenchNode, BitswapCounts } from './methods.ts'
import type { BrokerStats } from '../src/index.ts'
import type { AbortOptions } from '@libp2p/interface'
import type { Blockstore, InputPair, Pair } from 'interface-blockstore'

const run = promisify(execFile)

if (process.env.BENCH_WS_CLIENT === '1') {
  // --ws-client: the client's WebSocket is the ws package's, not Node's own
  // (undici), which masks every byte a client sends in a JavaScript loop
  const { WebSocket } = await import('ws')
  globalThis.WebSocket = WebSocket as unknown as typeof globalThis.WebSocket
}

/** Where a node's blockstore comes from */
export type StoreSpec =
  /** in memory, filled with the blocks of an on-disk store (cached by the worker) */
  | { kind: 'memory', from?: string }
  /** on disk; `copyFrom` is hard-linked in first; `shared` stores are used as they are and never deleted */
  | { kind: 'fs', path: string, copyFrom?: string, shared?: boolean }

export interface SetupResult {
  peerId: string
  /** TCP port of the WebSocket listener (servers only) */
  port?: number
  /** Blocks loaded into the store */
  storeBlocks: number
  /** Of Bitswap and CAR Mirror, the protocols the node speaks (what its peer waits for identify to tell) */
  protocols: string[]
}

/** Which block brokers a node has (see BenchNodeOptions) */
export interface NodeSpec {
  bitswap?: boolean
  broker?: boolean
}

export interface RunReply {
  result?: ActionResult
  dnf?: boolean
  error?: string
  ms: number
}

export interface Report {
  /** Peak resident set size while sampling (every 10 ms), bytes */
  peakRss: number
  /** Peak V8 heap in use while sampling, bytes */
  peakHeap: number
  /** Peak memory held by ArrayBuffers (Buffers, Uint8Arrays) while sampling, bytes */
  peakArrayBuffers: number
  /** RSS when the run started, bytes */
  baselineRss: number
  /** The process' lifetime peak RSS (getrusage) when the run ended, before the verifying walk, bytes */
  maxRss: number
  /** Blocks written that the store did not hold */
  newBlocks: number
  newBytes: number
  /** Writes of blocks the store already held */
  duplicatePuts: number
  /** What the node's Bitswap received since the run started (mark), when it has Bitswap */
  bitswap?: BitswapCounts
  /** What CAR Mirror's block broker did since the run started (mark): unlike the run's result, this includes what arrived after the call returned */
  broker?: BrokerStats
  verify?: { complete: boolean, blocks: number, bytes: number, missing: number }
}

/** A blockstore wrapper that counts writes (new blocks, and blocks already held) */
export class CountingBlockstore implements Blockstore {
  readonly inner: Blockstore
  newBlocks = 0
  newBytes = 0
  duplicatePuts = 0

  constructor (inner: Blockstore) {
    this.inner = inner
  }

  private count (held: boolean, bytes: InputPair['bytes']): void {
    if (held) {
      this.duplicatePuts++
    } else {
      this.newBlocks++
      this.newBytes += bytes instanceof Uint8Array ? bytes.byteLength : 0
    }
  }

  put (cid: CID, bytes: InputPair['bytes'], options?: AbortOptions): CID | Promise<CID> {
    const held = this.inner.has(cid, options)
    if (held instanceof Promise) {
      return held.then(async (h) => {
        this.count(h, bytes)
        return this.inner.put(cid, bytes, options)
      })
    }
    this.count(held, bytes)
    return this.inner.put(cid, bytes, options)
  }

  async * putMany (source: AsyncIterable<InputPair> | Iterable<InputPair>, options?: AbortOptions): AsyncGenerator<CID> {
    for await (const { cid, bytes } of source) {
      yield await this.put(cid, bytes, options)
    }
  }

  get (cid: CID, options?: AbortOptions): Generator<Uint8Array> | AsyncGenerator<Uint8Array> {
    return this.inner.get(cid, options)
  }

  getMany (source: AsyncIterable<CID> | Iterable<CID>, options?: AbortOptions): Generator<Pair> | AsyncGenerator<Pair> {
    return this.inner.getMany(source, options)
  }

  getAll (options?: AbortOptions): Generator<Pair> | AsyncGenerator<Pair> {
    return this.inner.getAll(options)
  }

  has (cid: CID, options?: AbortOptions): boolean | Promise<boolean> {
    return this.inner.has(cid, options)
  }

  delete (cid: CID, options?: AbortOptions): void | Promise<void> {
    return this.inner.delete(cid, options)
  }

  deleteMany (source: AsyncIterable<CID> | Iterable<CID>, options?: AbortOptions): Generator<CID> | AsyncGenerator<CID> {
    return this.inner.deleteMany(source, options)
  }
}

/**
 * Samples memory while a run goes on: RSS every 10 ms (cheap), the V8 heap and
 * ArrayBuffers every 100 ms (process.memoryUsage() walks the heap spaces and
 * costs about 0.5 ms, too much to call 100 times a second)
 */
class MemorySampler {
  peakRss = 0
  peakHeap = 0
  peakArrayBuffers = 0
  baselineRss = 0
  private timer?: NodeJS.Timeout
  private ticks = 0

  start (): void {
    this.stop()
    const usage = process.memoryUsage()
    this.baselineRss = usage.rss
    this.peakRss = usage.rss
    this.peakHeap = usage.heapUsed
    this.peakArrayBuffers = usage.arrayBuffers
    this.ticks = 0
    this.timer = setInterval(() => { this.sample() }, 10)
  }

  sample (full = false): void {
    this.peakRss = Math.max(this.peakRss, process.memoryUsage.rss())
    if (full || ++this.ticks % 10 === 0) {
      const usage = process.memoryUsage()
      this.peakHeap = Math.max(this.peakHeap, usage.heapUsed)
      this.peakArrayBuffers = Math.max(this.peakArrayBuffers, usage.arrayBuffers)
    }
  }

  stop (): void {
    if (this.timer != null) {
      this.sample(true)
      clearInterval(this.timer)
      this.timer = undefined
    }
  }
}

let node: BenchNode | undefined
/** With BENCH_PROFILE=<folder>, each run's CPU profile (from mark to report) is written there */
const profileDir = process.env.BENCH_PROFILE
let profiler: Session | undefined
let profiles = 0
let store: CountingBlockstore | undefined
let runDir: string | undefined
const sampler = new MemorySampler()
/** The node's Bitswap counter (cumulative) and its and the broker's readings at mark */
let bitswapCounts: BitswapCounts | undefined
let bitswapAtMark: BitswapCounts | undefined
let brokerAtMark: BrokerStats | undefined

function since<T extends object> (now: T, before: T): T {
  const delta = { ...now }
  for (const key of Object.keys(delta) as Array<keyof T>) {
    (delta[key] as number) = (now[key] as number) - (before[key] as number)
  }
  return delta
}

async function setup (args: { listen: boolean, store: StoreSpec, node?: NodeSpec }): Promise<SetupResult> {
  if (node != null) {
    await teardown()
  }
  let inner: Blockstore
  let storeBlocks = 0
  if (args.store.kind === 'memory') {
    const memory = await memoryStoreOf(args.store.from)
    storeBlocks = memory.blocks
    inner = memory.store
  } else {
    if (args.store.copyFrom != null) {
      // the folder that holds the copy does not exist yet when no earlier run made one (a warm scenario run alone)
      await mkdir(dirname(args.store.path), { recursive: true })
      await run('cp', ['-al', args.store.copyFrom, args.store.path])
    } else {
      await mkdir(args.store.path, { recursive: true })
    }
    runDir = args.store.shared === true ? undefined : args.store.path
    const fs = new FsBlockstore(args.store.path)
    await fs.open()
    inner = fs
  }
  store = new CountingBlockstore(inner)
  node = await createBenchNode({ blockstore: store, listen: args.listen, ...args.node })
  bitswapCounts = bitswapCounter(node)
  bitswapAtMark = undefined
  brokerAtMark = undefined
  const port = node.libp2p.getMultiaddrs().map(ma => Number(/\/tcp\/(\d+)/.exec(ma.toString())?.[1] ?? 0)).find(p => p > 0)
  const spoken = node.libp2p.getProtocols()
  return { peerId: node.libp2p.peerId.toString(), port, storeBlocks, protocols: [BITSWAP_PROTOCOL, PROTOCOL_ID].filter(p => spoken.includes(p)) }
}

function current (): BenchNode {
  if (node == null) {
    throw new Error('no node: call setup first')
  }
  return node
}

/** Waits until identify has told us the peer speaks the protocols (default: Bitswap and CAR Mirror) */
async function waitForPeer (peerId: string, protocols = [BITSWAP_PROTOCOL, PROTOCOL_ID], timeoutMs = 10_000): Promise<void> {
  const n = current()
  const deadline = Date.now() + timeoutMs
  while (true) {
    const connection = n.libp2p.getConnections().find(c => c.remotePeer.toString() === peerId)
    if (connection != null) {
      try {
        const peer = await n.libp2p.peerStore.get(connection.remotePeer)
        if (protocols.every(p => peer.protocols.includes(p))) {
          return
        }
      } catch {
        // not in the peer store yet
      }
    }
    if (Date.now() > deadline) {
      throw new Error(`peer ${peerId} did not identify within ${timeoutMs} ms`)
    }
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

async function connect (args: { addr: string, protocols?: string[] }): Promise<void> {
  const connection = await current().libp2p.dial(multiaddr(args.addr), { signal: AbortSignal.timeout(15_000) })
  await waitForPeer(connection.remotePeer.toString(), args.protocols)
}

async function runTransfer (args: { action: Action, budgetMs: number }): Promise<RunReply> {
  const signal = AbortSignal.timeout(args.budgetMs)
  const started = performance.now()
  try {
    const result = await runAction(current(), args.action, signal)
    return { result, ms: result.ms }
  } catch (err) {
    const ms = performance.now() - started
    if (signal.aborted) {
      return { dnf: true, ms, error: (err as Error).message }
    }
    return { error: err instanceof Error ? `${err.name}: ${err.message}` : `non-error thrown: ${String(err)}`, ms }
  }
}

async function report (args: { root?: string }): Promise<Report> {
  sampler.stop()
  if (profiler != null) {
    const { profile } = await profiler.post('Profiler.stop')
    profiler.disconnect()
    profiler = undefined
    await writeFile(`${profileDir}/${process.pid}-${++profiles}.cpuprofile`, JSON.stringify(profile))
  }
  // before the verifying walk below, which reads the whole DAG
  const maxRss = process.resourceUsage().maxRSS * 1024
  const s = store
  if (s == null) {
    throw new Error('no store: call setup first')
  }
  let verify: Report['verify']
  if (args.root != null) {
    // offline, on the raw store: nothing may be fetched now
    let blocks = 0
    let bytes = 0
    let missing = 0
    for await (const block of walkDag(s.inner, [CID.parse(args.root)], { readAhead: 8, onMissing: () => { missing++ } })) {
      blocks++
      bytes += block.bytes.byteLength
    }
    verify = { complete: missing === 0, blocks, bytes, missing }
  }
  return {
    peakRss: sampler.peakRss,
    peakHeap: sampler.peakHeap,
    peakArrayBuffers: sampler.peakArrayBuffers,
    baselineRss: sampler.baselineRss,
    maxRss,
    newBlocks: s.newBlocks,
    newBytes: s.newBytes,
    duplicatePuts: s.duplicatePuts,
    bitswap: bitswapCounts == null || bitswapAtMark == null ? undefined : since(bitswapCounts, bitswapAtMark),
    broker: node == null || brokerAtMark == null ? undefined : since(node.carMirror.stats().broker, brokerAtMark),
    verify
  }
}

async function teardown (): Promise<void> {
  sampler.stop()
  const n = node
  node = undefined
  store = undefined
  bitswapCounts = undefined
  if (n != null) {
    await stopBenchNode(n)
  }
  if (runDir != null) {
    await rm(runDir, { recursive: true, force: true })
    runDir = undefined
  }
}

const handlers: Record<string, (args: any) => Promise<unknown>> = {
  setup,
  connect,
  recordComplete: async (args: { root: string }) => current().carMirror.recordComplete(CID.parse(args.root)),
  waitPeer: async (args: { peerId: string, protocols?: string[] }) => { await waitForPeer(args.peerId, args.protocols) },
  mark: async () => {
    bitswapAtMark = bitswapCounts == null ? undefined : { ...bitswapCounts }
    brokerAtMark = node == null ? undefined : { ...node.carMirror.stats().broker }
    globalThis.gc?.()
    if (profileDir != null) {
      await mkdir(profileDir, { recursive: true })
      profiler = new Session()
      profiler.connect()
      await profiler.post('Profiler.enable')
      await profiler.post('Profiler.setSamplingInterval', { interval: 200 })
      await profiler.post('Profiler.start')
    }
    sampler.start()
    return { rss: sampler.baselineRss }
  },
  run: runTransfer,
  report,
  teardown
}

serve(handlers, teardown, 'worker')
