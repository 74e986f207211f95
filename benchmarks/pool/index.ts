/* eslint-disable no-console */

/**
 * CAR Pool: one DAG pulled from several providers at once.
 * `npm run bench:pool` (`node benchmarks/pool/index.ts`).
 *
 * Three provider processes (./node.ts), each its own Helia node listening on
 * WebSockets on 127.0.0.1 and holding the same dataset (built once here by
 * ../datasets.ts and read by each provider), and one client process. Each
 * provider has its own shaper (../shaper.ts) in front of it, so every link
 * is capped on its own (default 50 Mbit/s each way, 25 ms one way); the
 * client dials `/ip4/127.0.0.1/tcp/<shaper>/ws/p2p/<provider>`.
 *
 * Cases, each run on a fresh client node with an empty store, fresh
 * provider nodes and fresh shapers: 1 provider (`carMirror.pull(addrs,
 * root)`, the baseline), 2 and 3 providers (`carMirror.pull(root, {
 * providers, pool })`), and 3 providers of which the third is killed
 * (SIGKILL, by the client, from its `onProgress`) once the client has
 * received half the DAG's block bytes. The client connects to every
 * provider and waits for identify before the clock starts; after each pull
 * it walks the DAG offline and the run fails unless every block is held.
 * The cases alternate within each run (1, 2, 3, kill, then again), and the
 * table shows medians over the runs.
 *
 * Options: --datasets deep,large (both), --runs N (3; 1 with --quick),
 * --rate MBIT (50, per link and direction), --delay MS (25, one way),
 * --window BYTES (the shaper's, 4 MiB), --large-mb N (200; 50 with
 * --quick), --stall-timeout MS and --buckets N (the pool's options, the
 * library's defaults unless given), --budget MS (per pull, 300 s),
 * --client-store auto|memory|fs (auto: like the main benchmark, the large
 * file on disk and the tree in memory), --ping-abort (let libp2p's
 * connection monitor abort a connection whose ping times out, its default:
 * see ./node.ts), --cases 1p,2p,3p,3p-kill (all; a speedup needs 1p), --out FILE
 * (benchmarks/results-pool.json), --keep (keep the work folder), --quick (a
 * 50 MiB file and one run).
 */

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { DEFAULT_POOL_BUCKETS } from '../../src/index.ts'
import { buildDataset } from '../datasets.ts'
import { Child } from '../rpc.ts'
import { selfCheck, Shaper } from '../shaper.ts'
import { runContext } from '../source.ts'
import { median } from '../stats.ts'
import type { NodeSetupResult, PoolStoreSpec, ProviderResult, PullArgs, PullResult } from './node.ts'
import type { DatasetInfo } from '../datasets.ts'
import type { SelfCheckResult } from '../shaper.ts'

const here = dirname(fileURLToPath(import.meta.url))
const nodeScript = join(here, 'node.ts')

const { values: args } = parseArgs({
  options: {
    datasets: { type: 'string', default: 'deep,large' },
    runs: { type: 'string' },
    rate: { type: 'string', default: '50' },
    delay: { type: 'string', default: '25' },
    window: { type: 'string' },
    'large-mb': { type: 'string' },
    'stall-timeout': { type: 'string' },
    buckets: { type: 'string' },
    budget: { type: 'string', default: '300000' },
    out: { type: 'string' },
    'client-store': { type: 'string', default: 'auto' },
    'ping-abort': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    cases: { type: 'string' }
  }
})

type PoolDataset = 'deep' | 'large'
const DATASETS: PoolDataset[] = ['deep', 'large']
const datasetNames = args.datasets.split(',').map(d => d.trim()) as PoolDataset[]
for (const name of datasetNames) {
  if (!DATASETS.includes(name)) {
    throw new Error(`--datasets takes ${DATASETS.join(', ')}, not ${name}`)
  }
}
const quick = args.quick
const runs = Number(args.runs ?? (quick ? 1 : 3))
const rateMbit = Number(args.rate)
const rateBytesPerSecond = rateMbit * 1_000_000 / 8
const delayMs = Number(args.delay)
const windowBytes = args.window == null ? undefined : Number(args.window)
const largeBytes = Number(args['large-mb'] ?? (quick ? 50 : 200)) * 1024 * 1024
const budgetMs = Number(args.budget)
const pool: PullArgs['pool'] = {
  ...(args['stall-timeout'] != null ? { stallTimeout: Number(args['stall-timeout']) } : {}),
  ...(args.buckets != null ? { buckets: Number(args.buckets) } : {})
}
const buckets = pool.buckets ?? DEFAULT_POOL_BUCKETS
const clientStore = args['client-store']
if (!['auto', 'memory', 'fs'].includes(clientStore)) {
  throw new Error(`--client-store takes auto, memory or fs, not ${clientStore}`)
}
const outFile = resolve(args.out ?? join(here, '..', 'results-pool.json'))
if (!(runs >= 1) || !(rateMbit > 0) || !(delayMs >= 0)) {
  throw new Error('--runs must be at least 1, --rate above 0 and --delay at least 0')
}

// ---------------------------------------------------------------------------
// cases and targets

type CaseName = '1p' | '2p' | '3p' | '3p-kill'
const CASES: CaseName[] = ['1p', '2p', '3p', '3p-kill']
const runCases = args.cases == null ? CASES : args.cases.split(',').map(c => c.trim()) as CaseName[]
for (const c of runCases) {
  if (!CASES.includes(c)) {
    throw new Error(`--cases takes ${CASES.join(', ')}, not ${c}`)
  }
}
const CASE_LABELS: Record<CaseName, string> = {
  '1p': '1 provider (baseline)',
  '2p': '2 providers',
  '3p': '3 providers',
  '3p-kill': '3 providers, C killed at ½'
}
const PROVIDER_LABELS = ['A', 'B', 'C']
/** The provider killed in the kill case */
const VICTIM = 2

const PROVIDER_COUNTS: Record<CaseName, number> = { '1p': 1, '2p': 2, '3p': 3, '3p-kill': 3 }

/** Speedup targets (time of 1 provider / time of N): reported, not asserted */
const SPEEDUP_TARGETS: Partial<Record<CaseName, number>> = { '2p': 1.8, '3p': 2.6 }
/** Duplicate block bytes of a pull from several providers, fraction of the DAG's bytes */
const DUPLICATE_TARGET = 0.05
/** Extra wire bytes of the kill case over the healthy 3-provider run, fraction of the DAG's bytes */
const KILL_EXTRA_TARGET = 0.05

// ---------------------------------------------------------------------------
// processes

/** A provider or the client (./node.ts) */
class NodeProcess extends Child {
  constructor (name: string) {
    super(name, nodeScript, [], 120_000)
  }

  /** A fresh node on a fresh (or the dataset's shared) store */
  async start (store: PoolStoreSpec, listen: boolean): Promise<NodeSetupResult> {
    return this.call<NodeSetupResult>('setup', { listen, store, pingAbort: args['ping-abort'] })
  }

  /** Stops the node (nothing when the process has exited) */
  async teardown (): Promise<void> {
    if (this.alive) {
      await this.call('teardown', {}, 30_000).catch((err: Error) => { console.error(`${this.name}: teardown failed - ${err.message}`) })
    }
  }
}

/** Started after the shaper's self-check, so it runs on a quiet machine */
let providers: NodeProcess[] = []
let clientProcess: NodeProcess | undefined

function theClient (): NodeProcess {
  if (clientProcess == null) {
    throw new Error('the client process has not been started')
  }
  return clientProcess
}

function directAddr (setup: NodeSetupResult): string {
  return `/ip4/127.0.0.1/tcp/${setup.port as number}/ws/p2p/${setup.peerId}`
}

/**
 * Untimed pulls of a small tree over loopback without a shaper, so that no
 * measured run pays for loading and optimizing the code: one from all three
 * providers at once, then one from each alone (for a restarted provider
 * too, so it is as warm as the others)
 */
async function warmUp (warm: DatasetInfo): Promise<void> {
  const started = performance.now()
  const client = theClient()
  const setups = await Promise.all(providers.map(async p => p.start({ kind: 'memory', from: warm.bothDir }, true)))
  const direct = setups.map(directAddr)
  try {
    for (const targets of [direct, [direct[0]], [direct[1]], [direct[2]], direct]) {
      await client.start({ kind: 'memory' }, false)
      await client.call('connect', { addrs: targets })
      const reply = await client.call<PullResult>('pull', { root: warm.newRoot, providers: targets.map(t => [t]), pool, expect: warm.new, budgetMs: 60_000 } satisfies PullArgs, 90_000)
      if (!reply.ok) {
        throw new Error(`warm-up pull from ${targets.length} provider(s) failed: ${reply.error ?? `incomplete (${JSON.stringify(reply.verify)})`}`)
      }
      await client.teardown()
    }
  } finally {
    await Promise.all([client, ...providers].map(async p => p.teardown()))
  }
  console.error(`warm-up took ${(performance.now() - started).toFixed(0)} ms`)
}

/** Replaces providers whose process has exited (the kill case's victim), and warms them up with the others */
async function reviveProviders (warm: DatasetInfo): Promise<void> {
  let revived = false
  for (let i = 0; i < providers.length; i++) {
    if (!providers[i].alive) {
      providers[i] = new NodeProcess(`provider-${PROVIDER_LABELS[i].toLowerCase()}`)
      revived = true
    }
  }
  if (revived) {
    await warmUp(warm)
  }
}

async function waitForExit (child: Child, ms: number): Promise<void> {
  const deadline = performance.now() + ms
  while (child.alive && performance.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

// ---------------------------------------------------------------------------
// one run

interface RunRecord {
  dataset: PoolDataset
  case: CaseName
  run: number
  ok: boolean
  /** The pull's error, or why the DAG is incomplete */
  error?: string
  /** The pull, in the client, ms */
  ms: number
  /** The client's CPU time during the pull, ms */
  clientCpuMs?: number
  /** Wire bytes at the shapers during the pull: providers → client and back, and per provider (A, B, C) */
  wireDown: number
  wireUp: number
  wirePerProvider: Array<{ down: number, up: number }>
  /** The pull's TransferStats */
  blocksReceived?: number
  blockBytesReceived?: number
  duplicateBlocks?: number
  /** Stream bytes the client read (framing and control frames included, noise/yamux/WebSocket not) */
  streamBytesReceived?: number
  roundTrips?: number
  /** Block bytes received beyond the DAG's */
  duplicateBytes?: number
  /** stats.providers, labelled A, B, C */
  providers?: Array<ProviderResult & { label: string }>
  killed?: PullResult['killed']
  verify?: PullResult['verify']
  /** Per provider (A, B, C), from the shapers' counters sampled every 20 ms: when its bytes to the client first passed 64 KiB and when they last grew, ms after the call */
  timeline?: Array<{ startMs?: number, endMs?: number }>
}

/** Samples the shapers' byte counts to the client while a pull runs */
class Timeline {
  private readonly shapers: Shaper[]
  private readonly started = performance.now()
  private readonly base: number[]
  private readonly last: number[]
  private readonly startMs: Array<number | undefined>
  private readonly endMs: Array<number | undefined>
  private readonly timer: NodeJS.Timeout

  constructor (shapers: Shaper[]) {
    this.shapers = shapers
    this.base = shapers.map(s => s.counters.serverToClient)
    this.last = [...this.base]
    this.startMs = shapers.map(() => undefined)
    this.endMs = shapers.map(() => undefined)
    this.timer = setInterval(() => { this.sample() }, 20)
  }

  private sample (): void {
    const now = performance.now() - this.started
    this.shapers.forEach((s, i) => {
      const bytes = s.counters.serverToClient
      if (this.startMs[i] == null && bytes - this.base[i] > 64 * 1024) {
        this.startMs[i] = now
      }
      if (bytes !== this.last[i]) {
        this.last[i] = bytes
        this.endMs[i] = now
      }
    })
  }

  stop (): void {
    this.sample()
    clearInterval(this.timer)
  }

  summary (): Array<{ startMs?: number, endMs?: number }> {
    return this.startMs.map((startMs, i) => ({ startMs, endMs: this.endMs[i] }))
  }
}

let runDirCounter = 0

/** Like the main benchmark: the large file on disk (the providers share the dataset's store), the tree in memory; `--client-store` overrides the client's */
function storesFor (work: string, dataset: DatasetInfo): { provider: PoolStoreSpec, client: PoolStoreSpec } {
  const large = dataset.name === 'large'
  const onDisk = clientStore === 'auto' ? large : clientStore === 'fs'
  return {
    provider: large ? { kind: 'fs', path: dataset.bothDir, shared: true } : { kind: 'memory', from: dataset.bothDir },
    client: onDisk ? { kind: 'fs', path: join(work, 'runs', String(runDirCounter++)) } : { kind: 'memory' }
  }
}

async function runCase (work: string, dataset: DatasetInfo, name: PoolDataset, c: CaseName, run: number): Promise<RunRecord> {
  const client = theClient()
  const used = providers.slice(0, PROVIDER_COUNTS[c])
  const stores = storesFor(work, dataset)
  const shapers: Shaper[] = []
  const record: RunRecord = { dataset: name, case: c, run, ok: false, ms: NaN, wireDown: 0, wireUp: 0, wirePerProvider: [] }
  try {
    const [setups] = await Promise.all([
      Promise.all(used.map(async p => p.start(stores.provider, true))),
      client.start(stores.client, false)
    ])
    for (const setup of setups) {
      shapers.push(await Shaper.start({ targetPort: setup.port as number, delayMs, rateBytesPerSecond, windowBytes }))
    }
    const addrs = setups.map((setup, i) => `/ip4/127.0.0.1/tcp/${shapers[i].port}/ws/p2p/${setup.peerId}`)
    await client.call('connect', { addrs })
    const before = shapers.map(s => ({ ...s.counters }))
    const timeline = new Timeline(shapers)
    const victim = c === '3p-kill' ? used[VICTIM] : undefined
    const reply = await client.call<PullResult>('pull', {
      root: dataset.newRoot,
      providers: addrs.map(a => [a]),
      pool,
      kill: victim?.pid == null ? undefined : { pid: victim.pid, atBytes: Math.round(dataset.new.bytes / 2) },
      expect: dataset.new,
      budgetMs
    } satisfies PullArgs, budgetMs + 120_000).finally(() => { timeline.stop() })
    record.timeline = timeline.summary()
    record.wirePerProvider = shapers.map((s, i) => ({ down: s.counters.serverToClient - before[i].serverToClient, up: s.counters.clientToServer - before[i].clientToServer }))
    record.wireDown = record.wirePerProvider.reduce((n, w) => n + w.down, 0)
    record.wireUp = record.wirePerProvider.reduce((n, w) => n + w.up, 0)
    record.ms = reply.ms
    record.clientCpuMs = reply.cpuMs
    record.verify = reply.verify
    record.killed = reply.killed
    const stats = reply.stats
    if (stats != null) {
      record.blocksReceived = stats.blocksReceived
      record.blockBytesReceived = stats.blockBytesReceived
      record.duplicateBlocks = stats.duplicateBlocks
      record.streamBytesReceived = stats.bytesReceived
      record.roundTrips = stats.roundTrips
      record.duplicateBytes = stats.blockBytesReceived - dataset.new.bytes
      record.providers = stats.providers?.map(p => ({ ...p, label: PROVIDER_LABELS[setups.findIndex(s => s.peerId === p.peer)] ?? p.peer }))
    }
    record.ok = reply.ok
    if (!reply.ok) {
      record.error = reply.error ?? `the client does not hold the whole DAG: ${reply.verify.blocks} of ${dataset.new.blocks} blocks, ${reply.verify.bytes} of ${dataset.new.bytes} bytes, ${reply.verify.missing} missing`
    } else if (c === '3p-kill' && (reply.killed == null || reply.killed.error != null)) {
      record.ok = false
      record.error = `the victim was not killed: ${reply.killed?.error ?? 'the threshold was never reached'}`
    }
    if (victim != null) {
      await waitForExit(victim, 5_000)
    }
  } catch (err) {
    record.ok = false
    record.error = (err as Error).message
  } finally {
    await Promise.all([client, ...used].map(async p => p.teardown()))
    await Promise.all(shapers.map(async s => s.stop()))
  }
  return record
}

// ---------------------------------------------------------------------------
// summaries

interface CellSummary {
  dataset: PoolDataset
  case: CaseName
  runs: number
  ok: number
  ms?: number
  minMs?: number
  maxMs?: number
  /** Median time of 1 provider / this cell's */
  speedup?: number
  /** Median duplicate block bytes, fraction of the DAG's bytes */
  duplicateFraction?: number
  wireDown?: number
  wireUp?: number
  /** Median wire bytes to the client over the DAG's bytes */
  wireOverDag?: number
  /** The kill case: median wire bytes (and block bytes) over the healthy 3-provider run's, fraction of the DAG */
  extraWireFraction?: number
  extraBlockFraction?: number
  /** The kill case: the dropped provider's error names, with counts */
  droppedErrors?: Record<string, number>
  /** The kill case: median block bytes received when the victim was killed, fraction of the DAG */
  killedAtFraction?: number
  /** Median client CPU time over the pull's time */
  clientCpuShare?: number
  /** The run whose time is the median (the lower middle of an even count): its per-provider figures go in the tables */
  medianRun?: RunRecord
  errors: string[]
}

function summarize (records: RunRecord[], dataset: DatasetInfo, name: PoolDataset, c: CaseName): CellSummary {
  const cell = records.filter(r => r.dataset === name && r.case === c)
  const ok = cell.filter(r => r.ok)
  const dag = dataset.new.bytes
  const s: CellSummary = { dataset: name, case: c, runs: cell.length, ok: ok.length, errors: cell.filter(r => !r.ok).map(r => r.error ?? 'failed') }
  if (ok.length === 0) {
    return s
  }
  const pick = (rs: RunRecord[], f: (r: RunRecord) => number | undefined): number => median(rs.map(f).filter((v): v is number => v != null && !Number.isNaN(v)))
  s.ms = pick(ok, r => r.ms)
  s.minMs = Math.min(...ok.map(r => r.ms))
  s.maxMs = Math.max(...ok.map(r => r.ms))
  const base = records.filter(r => r.dataset === name && r.case === '1p' && r.ok)
  if (base.length > 0) {
    s.speedup = pick(base, r => r.ms) / s.ms
  }
  s.duplicateFraction = pick(ok, r => r.duplicateBytes) / dag
  s.wireDown = pick(ok, r => r.wireDown)
  s.wireUp = pick(ok, r => r.wireUp)
  s.wireOverDag = s.wireDown / dag
  s.clientCpuShare = pick(ok, r => r.clientCpuMs == null ? undefined : r.clientCpuMs / r.ms)
  const byTime = [...ok].sort((a, b) => a.ms - b.ms)
  s.medianRun = byTime[Math.floor((byTime.length - 1) / 2)]
  if (c === '3p-kill') {
    const healthy = records.filter(r => r.dataset === name && r.case === '3p' && r.ok)
    if (healthy.length > 0) {
      s.extraWireFraction = (s.wireDown - pick(healthy, r => r.wireDown)) / dag
      s.extraBlockFraction = (pick(ok, r => r.blockBytesReceived) - pick(healthy, r => r.blockBytesReceived)) / dag
    }
    s.droppedErrors = {}
    for (const r of ok) {
      const victim = r.providers?.find(p => p.label === PROVIDER_LABELS[VICTIM])
      const key = victim?.error?.name ?? 'not dropped'
      s.droppedErrors[key] = (s.droppedErrors[key] ?? 0) + 1
    }
    s.killedAtFraction = pick(ok, r => r.killed?.atBytes) / dag
  }
  return s
}

const msText = (n?: number): string => n == null || Number.isNaN(n) ? 'n/a' : `${Math.round(n).toLocaleString('en-US')} ms`
const mb = (n?: number): string => n == null || Number.isNaN(n) ? 'n/a' : (n / 1e6).toFixed(1)
const pct = (f?: number): string => f == null || Number.isNaN(f) ? 'n/a' : `${f < 0 ? '−' : ''}${(Math.abs(f) * 100).toFixed(1)}%`
const signedPct = (f?: number): string => f == null || Number.isNaN(f) ? 'n/a' : `${f < 0 ? '−' : '+'}${(Math.abs(f) * 100).toFixed(1)}%`
const times = (n?: number): string => n == null || Number.isNaN(n) ? 'n/a' : `${n.toFixed(2)}x`
const counts = (c: Record<string, number>): string => Object.entries(c).map(([k, n]) => `${k} ×${n}`).join(', ')

/** Buckets each of `n` providers owns when a pull starts (the planner's contiguous ranges) */
function initialBuckets (n: number): number[] {
  const out = new Array<number>(n).fill(0)
  for (let bucket = 0; bucket < buckets; bucket++) {
    out[Math.floor(bucket * n / buckets)]++
  }
  return out
}

/** Whether buckets moved between providers in a run: a provider's final count differs from its start */
function stealing (r: RunRecord): boolean | undefined {
  if (r.providers == null) {
    return undefined
  }
  const start = initialBuckets(r.providers.length)
  return r.providers.some((p, i) => p.error == null && p.buckets !== start[i])
}

function notes (s: CellSummary): string {
  const parts: string[] = []
  if (s.ok < s.runs) {
    const errors: Record<string, number> = {}
    for (const e of s.errors) {
      const key = e.split('\n')[0].slice(0, 100)
      errors[key] = (errors[key] ?? 0) + 1
    }
    parts.push(`**${s.runs - s.ok} of ${s.runs} runs FAILED**: ${counts(errors)}`)
  }
  const r = s.medianRun
  if (r == null) {
    return parts.join('; ')
  }
  parts.push(`${s.ok > 1 ? `${msText(s.minMs)}–${msText(s.maxMs)}; ` : ''}wire/DAG ${times(s.wireOverDag)}`)
  if (r.providers != null) {
    const total = r.providers.reduce((n, p) => n + p.blockBytesReceived, 0)
    parts.push(`shares ${r.providers.map(p => `${p.label} ${(p.blockBytesReceived / total * 100).toFixed(0)}%`).join(' · ')}`)
    parts.push(`buckets ${initialBuckets(r.providers.length).join('/')} → ${r.providers.map(p => p.buckets).join('/')}${stealing(r) === true ? ' (work moved)' : ''}`)
  }
  if (s.case === '3p-kill') {
    parts.push(`killed at ${pct(s.killedAtFraction)} of the DAG`)
    parts.push(`dropped: ${counts(s.droppedErrors ?? {})}`)
    parts.push(`extra over 3 healthy: wire ${signedPct(s.extraWireFraction)}, block bytes ${signedPct(s.extraBlockFraction)} of the DAG`)
  }
  parts.push(`client CPU ${pct(s.clientCpuShare)}`)
  return parts.join('; ')
}

interface TargetCheck {
  dataset: PoolDataset
  case: CaseName
  target: string
  measured: string
  met?: boolean
}

function checkTargets (summaries: CellSummary[]): TargetCheck[] {
  const checks: TargetCheck[] = []
  for (const s of summaries) {
    const speedup = SPEEDUP_TARGETS[s.case]
    if (speedup != null) {
      checks.push({ dataset: s.dataset, case: s.case, target: `speedup ≥ ${speedup}x`, measured: times(s.speedup), met: s.speedup == null ? undefined : s.speedup >= speedup })
    }
    if (s.case !== '1p') {
      checks.push({ dataset: s.dataset, case: s.case, target: `duplicates ≤ ${DUPLICATE_TARGET * 100}% of the DAG`, measured: pct(s.duplicateFraction), met: s.duplicateFraction == null ? undefined : s.duplicateFraction <= DUPLICATE_TARGET })
    }
    if (s.case === '3p-kill') {
      checks.push({ dataset: s.dataset, case: s.case, target: `extra wire bytes over the healthy 3-provider run ≤ ${KILL_EXTRA_TARGET * 100}% of the DAG`, measured: signedPct(s.extraWireFraction), met: s.extraWireFraction == null ? undefined : s.extraWireFraction <= KILL_EXTRA_TARGET })
    }
  }
  return checks
}

function mainTable (summaries: CellSummary[]): string {
  const lines = [
    '| dataset | case | time (median) | speedup | duplicate % | wire MB | notes |',
    '| --- | --- | ---: | ---: | ---: | ---: | --- |'
  ]
  for (const s of summaries) {
    const time = s.ms == null ? `FAILED (${s.ok}/${s.runs} ok)` : `${msText(s.ms)}${s.ok < s.runs ? ` (${s.ok}/${s.runs} ok)` : ''}`
    const speedupTarget = SPEEDUP_TARGETS[s.case]
    const speedup = s.case === '1p' ? '1.00x (base)' : `${times(s.speedup)}${speedupTarget == null ? '' : ` (≥ ${speedupTarget}x)`}`
    lines.push(`| ${s.dataset} | ${CASE_LABELS[s.case]} | ${time} | ${speedup} | ${pct(s.duplicateFraction)} | ${mb(s.wireDown)} | ${notes(s)} |`)
  }
  return lines.join('\n')
}

function providerTable (summaries: CellSummary[]): string {
  const lines = [
    '| dataset | case | provider | block MB | share | blocks | duplicate blocks | buckets (start → end) | wire MB ↓ | error |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |'
  ]
  for (const s of summaries) {
    const r = s.medianRun
    if (r?.providers == null) {
      continue
    }
    const total = r.providers.reduce((n, p) => n + p.blockBytesReceived, 0)
    const start = initialBuckets(r.providers.length)
    r.providers.forEach((p, i) => {
      lines.push(`| ${s.dataset} | ${CASE_LABELS[s.case]} | ${p.label} | ${mb(p.blockBytesReceived)} | ${(p.blockBytesReceived / total * 100).toFixed(1)}% | ${p.blocksReceived} | ${p.duplicateBlocks} | ${start[i]} → ${p.buckets} | ${mb(r.wirePerProvider[i]?.down)} | ${p.error == null ? '' : `${p.error.name}: ${p.error.message.slice(0, 80)}`} |`)
    })
  }
  return lines.join('\n')
}

// ---------------------------------------------------------------------------
// main

const { command, source, machine } = runContext(import.meta.url)
console.info('# CAR Pool benchmark: one DAG from several providers at once\n')
console.info(`- command: \`${command}\` (in ${process.cwd()})`)
console.info(`- source: ${source}`)
console.info(`- machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.platform}, Node ${machine.node}`)
console.info(`- links: one shaper per provider, ${rateMbit} Mbit/s each way per link, ${delayMs} ms one way, window ${windowBytes ?? 4 * 1024 * 1024} bytes each way`)
console.info(`- stores: the tree in memory on every node; the large file on disk for the providers (they share the dataset's blockstore-fs folder) and ${clientStore === 'memory' ? 'in memory' : 'on disk (a fresh blockstore-fs folder per run)'} for the client${clientStore === 'auto' ? '' : ` (--client-store ${clientStore}${clientStore === 'fs' ? ': the tree on disk too' : ''})`}`)
console.info(`- libp2p's connection monitor: ${args['ping-abort'] ? 'aborts a connection whose ping times out (libp2p\'s default, --ping-abort)' : 'pings but never aborts a connection (its ping waits behind the blocks on a full link: see node.ts)'}`)
console.info(`- runs per case: ${runs}${quick ? ' (quick)' : ''}; pool options: ${JSON.stringify(pool)} (buckets ${buckets}); budget ${msText(budgetMs)} per pull`)
console.info(`- targets (reported, not asserted): 2 providers ≥ ${SPEEDUP_TARGETS['2p']}x and 3 providers ≥ ${SPEEDUP_TARGETS['3p']}x the 1-provider throughput, duplicates ≤ ${DUPLICATE_TARGET * 100}% of the DAG, the kill case ≤ ${KILL_EXTRA_TARGET * 100}% extra wire bytes over the healthy 3-provider run`)
console.info(`- started ${new Date().toISOString()}\n`)

const started = performance.now()
const startedAt = new Date().toISOString()
const check: SelfCheckResult = await selfCheck(delayMs, rateBytesPerSecond)
console.info(`shaper self-check: echo RTT ${check.echoRttMs.toFixed(1)} ms at ${delayMs} ms one-way (expected ≈ ${2 * delayMs}), capped echo ${(check.bulkBytesPerSecond / 1e6).toFixed(2)} MB/s (expected ≈ ${(check.expectedBytesPerSecond / 1e6).toFixed(2)}), backpressure after ${(check.backpressureAcceptedBytes / 1024 / 1024).toFixed(1)} MiB: ${check.ok ? 'ok' : 'FAILED'}\n`)
if (!check.ok) {
  console.error('!!! the shaper self-check FAILED: the figures below are suspect')
}

const work = await mkdtemp(join(os.tmpdir(), 'car-mirror-pool-bench-'))
const datasets = new Map<PoolDataset, DatasetInfo>()
const records: RunRecord[] = []
let summaries: CellSummary[] = []

/** Keeps a run's record and prints a line about it; a failed run makes the exit code 1 */
function logRun (record: RunRecord): void {
  records.push(record)
  const victim = record.providers?.find(p => p.label === PROVIDER_LABELS[VICTIM])
  const extra = record.case === '3p-kill' ? `, killed at ${mb(record.killed?.atBytes)} MB after ${msText(record.killed?.atMs)}, dropped with ${victim?.error?.name ?? 'no error'}` : ''
  console.error(`${record.dataset} ${CASE_LABELS[record.case]} run ${record.run}/${runs}: ${msText(record.ms)}, wire ↓ ${mb(record.wireDown)} MB, duplicates ${mb(record.duplicateBytes)} MB${extra}${record.ok ? '' : ` !!! FAILED: ${record.error ?? ''}`}`)
  if (!record.ok) {
    process.exitCode = 1
  }
}

async function saveResults (complete: boolean): Promise<TargetCheck[]> {
  summaries = []
  for (const [name, dataset] of datasets) {
    for (const c of CASES) {
      if (records.some(r => r.dataset === name && r.case === c)) {
        summaries.push(summarize(records, dataset, name, c))
      }
    }
  }
  const targets = checkTargets(summaries)
  await mkdir(dirname(outFile), { recursive: true })
  await writeFile(outFile, JSON.stringify({
    command,
    source,
    complete,
    machine,
    settings: { runs, quick, rateMbit, rateBytesPerSecond, delayMs, windowBytes, largeBytes, pool, budgetMs },
    startedAt,
    totalSeconds: (performance.now() - started) / 1000,
    shaperSelfCheck: check,
    datasets: [...datasets.values()].map(d => ({ name: d.name, description: d.description, root: d.newRoot, blocks: d.new.blocks, bytes: d.new.bytes, buildMs: d.buildMs })),
    summaries: summaries.map(({ medianRun, ...s }) => ({ ...s, medianRun: medianRun?.run })),
    targets,
    records
  }, null, 2) + '\n')
  return targets
}

try {
  providers = PROVIDER_LABELS.map(label => new NodeProcess(`provider-${label.toLowerCase()}`))
  clientProcess = new NodeProcess('client')
  // the warm-up tree: the main benchmark's quick deep tree (~820 blocks)
  const warm = await buildDataset('deep', { mode: 'quick', workDir: join(work, 'warm') })
  console.info('| dataset | what | blocks | bytes | built in |')
  console.info('| --- | --- | ---: | ---: | ---: |')
  for (const name of datasetNames) {
    // the full benchmark's deep tree; the large file at --large-mb; the new version's root is pulled
    const info = await buildDataset(name, { mode: 'full', workDir: work, largeBytes })
    datasets.set(name, info)
    console.info(`| ${name} | ${info.description} | ${info.new.blocks} | ${mb(info.new.bytes)} MB | ${msText(info.buildMs)} |`)
  }
  console.info('')
  await warmUp(warm)

  for (const [name, dataset] of datasets) {
    // the cases alternate, so a drift of the machine touches each alike
    for (let run = 1; run <= runs; run++) {
      for (const c of runCases) {
        await reviveProviders(warm)
        logRun(await runCase(work, dataset, name, c, run))
      }
    }
    await saveResults(false)
  }

  const targets = await saveResults(true)
  console.info(mainTable(summaries))
  console.info('\ntime: median of the runs in the client, from the call until the DAG is held (connections and identify are set up before); speedup: the 1-provider median time / this case\'s; duplicate %: block bytes received beyond the DAG\'s, of the DAG\'s bytes; wire MB: bytes from the providers to the client at the shapers (noise, yamux, WebSocket framing included; MB = 10^6 bytes); notes: the range, and for the run with the median time the providers\' shares of the block bytes and their buckets at the start and the end. Client CPU: its CPU time over the pull\'s time (2 would be both cores).')
  console.info('\n## Per provider (the run with the median time)\n')
  console.info(providerTable(summaries))
  console.info('\n## Targets (reported, not asserted)\n')
  for (const t of targets) {
    const verdict = t.met == null ? '?' : (t.met ? 'met' : 'MISSED')
    console.info(`- ${verdict}: ${t.dataset}, ${CASE_LABELS[t.case]}: ${t.target}: ${t.measured}`)
  }
  const failed = records.filter(r => !r.ok)
  if (failed.length > 0) {
    console.info(`\n**${failed.length} run(s) FAILED** (see the notes and the JSON)`)
  }
  console.info(`\nfinished in ${((performance.now() - started) / 1000).toFixed(0)} s; JSON: ${relative(process.cwd(), outFile)}`)
} finally {
  await Promise.all([clientProcess, ...providers].map(async p => p?.close(15_000)))
  if (args.keep) {
    console.info(`work folder kept: ${work}`)
  } else {
    await rm(work, { recursive: true, force: true })
  }
}
