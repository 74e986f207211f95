/* eslint-disable no-console */

/**
 * CAR Mirror against Bitswap and a one-shot CAR, under added latency.
 * `npm run bench` runs the full suite (`node benchmarks/index.ts --mode full`),
 * `npm run bench:quick` a smaller one in about two minutes (`--mode quick`).
 *
 * Every run starts two fresh Helia nodes in two worker processes (./worker.ts):
 * the server listens on 127.0.0.1, the client dials it through a shaping
 * proxy (./shaper.ts) that adds a one-way delay each way and counts the bytes.
 * A run is timed in the process that drives it, from the call until the
 * receiver holds the whole DAG; the receiver then walks the DAG offline
 * (outside the timed section) and the run fails if anything is missing.
 * Runs over their time budget are reported as DNF.
 *
 * CAR Mirror's block broker gets its own rows: `broker-pins` is
 * `helia.pins.add(root)` on a client whose only block broker is CAR Mirror's
 * (cold-pull, warm-pull), the `cat-path` scenario reads one small file
 * deep in the tree with `unixfs(helia).cat(root, { path })`, and `cat-file`
 * the largest multi-block file whole by its CID, on that client
 * (`broker-cat`) or on a Bitswap-only one (`bitswap-cat`). The `both-*`
 * methods (`both-pins`, `both-cat`) run on a client with both brokers, which
 * Helia races for every block: their rows show the duplicate bytes Bitswap
 * adds next to the single-broker rows.
 *
 * Options (all optional): --mode quick|full, --datasets real,deep,hamt,large,
 * --scenarios cold-pull,warm-pull,cold-push,warm-push,cat-path,cat-file,
 * --methods car-mirror,car-mirror-no-hint,one-shot-car,bitswap-tuned,
 * bitswap-pins,broker-pins,both-pins,broker-cat,bitswap-cat,both-cat,
 * --runs N, --delay MS (one-way, tree datasets), --large-delay MS,
 * --rate MBIT (per direction), --window BYTES, --budget MS, --pins-budget MS,
 * --real-tree DIR, --large-mb N, --out FILE, --keep (keep the work folder),
 * --no-record (warm runs start without the old version recorded as held
 * whole, so both sides walk the hinted DAG), --ws-client (Node clients use
 * the ws package's WebSocket instead of Node's own).
 */

import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises'
import os from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { buildDataset, DATASET_NAMES } from './datasets.ts'
import { BOTH_METHODS, BROKER_METHODS, METHOD_LABELS, METHOD_NAMES } from './methods.ts'
import { Child } from './rpc.ts'
import { selfCheck, Shaper } from './shaper.ts'
import { runContext } from './source.ts'
import { median } from './stats.ts'
import type { DatasetInfo, DatasetName, Mode } from './datasets.ts'
import type { Action, ActionResult, BitswapCounts, MethodName } from './methods.ts'
import type { SelfCheckResult } from './shaper.ts'
import type { NodeSpec, Report, RunReply, SetupResult, StoreSpec } from './worker.ts'
import type { BrokerStats } from '../src/index.ts'

/**
 * `cat-path`: the client reads one small file deep in the tree by path;
 * `cat-file`: the client reads the largest multi-block file whole by its CID
 * (tree datasets; methods broker-cat, bitswap-cat and both-cat)
 */
type Scenario = 'cold-pull' | 'warm-pull' | 'cold-push' | 'warm-push' | 'cat-path' | 'cat-file'
const SCENARIOS: Scenario[] = ['cold-pull', 'warm-pull', 'cold-push', 'warm-push', 'cat-path', 'cat-file']

interface ModeSettings {
  runs: number
  /** A fresh pair of worker processes for every run of the large file, so its peak RSS is that run's own */
  freshLargeWorkers: boolean
  /** Runs of a tuned Bitswap cell */
  tunedRuns: number
  /** Runs of a Bitswap pins.add cell (slow: one block per round trip) */
  pinsRuns: number
  budgetMs: number
  pinsBudgetMs: number
  largeBudgetMs: number
}

const MODES: Record<Mode, ModeSettings> = {
  quick: { runs: 1, freshLargeWorkers: false, tunedRuns: 1, pinsRuns: 1, budgetMs: 30_000, pinsBudgetMs: 1_500, largeBudgetMs: 60_000 },
  full: { runs: 5, freshLargeWorkers: true, tunedRuns: 3, pinsRuns: 2, budgetMs: 120_000, pinsBudgetMs: 120_000, largeBudgetMs: 300_000 }
}

const { values: args } = parseArgs({
  options: {
    mode: { type: 'string', default: 'quick' },
    datasets: { type: 'string' },
    scenarios: { type: 'string' },
    methods: { type: 'string' },
    runs: { type: 'string' },
    delay: { type: 'string', default: '25' },
    'large-delay': { type: 'string', default: '0' },
    rate: { type: 'string' },
    window: { type: 'string' },
    budget: { type: 'string' },
    'pins-budget': { type: 'string' },
    'real-tree': { type: 'string' },
    'large-mb': { type: 'string' },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
    'no-record': { type: 'boolean', default: false },
    'ws-client': { type: 'boolean', default: false }
  }
})

if (args['ws-client']) {
  // read by ./worker.ts as it starts: every worker forked from here inherits it
  process.env.BENCH_WS_CLIENT = '1'
}

const mode = args.mode as Mode
if (!(mode in MODES)) {
  throw new Error(`--mode must be quick or full, not ${mode}`)
}
const settings: ModeSettings = { ...MODES[mode] }
if (args.runs != null) {
  settings.runs = Number(args.runs)
  settings.tunedRuns = Math.min(settings.tunedRuns, settings.runs)
  settings.pinsRuns = Math.min(settings.pinsRuns, settings.runs)
}
if (args.budget != null) {
  settings.budgetMs = Number(args.budget)
  settings.largeBudgetMs = Number(args.budget)
}
if (args['pins-budget'] != null) {
  settings.pinsBudgetMs = Number(args['pins-budget'])
}
const list = <T extends string>(value: string | undefined, all: T[]): T[] => {
  if (value == null) {
    return all
  }
  const picked = value.split(',').map(v => v.trim()) as T[]
  for (const p of picked) {
    if (!all.includes(p)) {
      throw new Error(`unknown value ${p}; expected one of ${all.join(', ')}`)
    }
  }
  return picked
}
const datasetNames = list<DatasetName>(args.datasets, DATASET_NAMES)
const scenarios = list<Scenario>(args.scenarios, SCENARIOS)
const methods = list<MethodName>(args.methods, METHOD_NAMES)
const delayMs = Number(args.delay)
const largeDelayMs = Number(args['large-delay'])
const rateBytesPerSecond = args.rate == null ? undefined : Number(args.rate) * 1_000_000 / 8
const windowBytes = args.window == null ? undefined : Number(args.window)
const here = dirname(fileURLToPath(import.meta.url))
const outFile = resolve(args.out ?? join(here, `results-${mode}.json`))

// ---------------------------------------------------------------------------
// workers

/** A server or client worker process (./worker.ts) */
class Worker extends Child {
  constructor (name: string) {
    super(name, join(here, 'worker.ts'), [], 60_000)
  }

  /** Asks the worker to exit; kills it if it has not within 15 s */
  async stop (): Promise<void> {
    await this.close(15_000)
  }
}

// ---------------------------------------------------------------------------
// runs

interface RunRecord {
  status: 'ok' | 'dnf' | 'error' | 'incomplete'
  error?: string
  ms: number
  /** Wire bytes (at the shaper) from the sender's side to the receiver's side, and back */
  bytesToReceiver: number
  bytesToSender: number
  /** Blocks the receiver stored that it did not hold */
  newBlocks: number
  newBytes: number
  /** Blocks that crossed the wire although the receiver held them (CAR Mirror: its count; one-shot CAR: sent minus new; Bitswap: writes of held blocks) */
  duplicates?: number
  /** Blocks the method says it moved */
  blocksMoved?: number
  roundTrips?: number
  bloomBytes?: number
  receiverPeakRss: number
  receiverBaselineRss: number
  receiverPeakHeap: number
  receiverPeakArrayBuffers?: number
  senderPeakRss: number
  verify?: Report['verify']
  /** What CAR Mirror's block broker did on the receiver during the run (broker methods) */
  broker?: BrokerStats
  /** pins.add: ms to its first pinned CID (the broker pins each block as its pull verifies it, so this is about one round trip) */
  firstMs?: number
  /** What the receiver's Bitswap received, until the settled reading (receivers with Bitswap) */
  bitswap?: BitswapCounts
  /** Block bytes that reached the receiver although it held them or another broker brought them: the brokers' block bytes received (CAR Mirror's pulls, Bitswap's messages) less the new bytes stored (methods with CAR Mirror's broker) */
  duplicateBytes?: number
  /** Wire bytes in the settling pause after the call returned (broker-table methods): what was still on its way, such as blocks of a race's loser */
  lateToReceiver?: number
  lateToSender?: number
}

interface Cell {
  dataset: DatasetName
  scenario: Scenario
  method: MethodName
  delayMs: number
  budgetMs: number
  runs: RunRecord[]
  /** Runs not made because an earlier one did not finish */
  skipped: number
}

/** A cat reads one file on the client */
function catScenario (scenario: Scenario): boolean {
  return scenario === 'cat-path' || scenario === 'cat-file'
}

/** The client receives (a cat reads on the client too) */
function pulls (scenario: Scenario): boolean {
  return scenario.endsWith('pull') || catScenario(scenario)
}

function warm (scenario: Scenario): boolean {
  return scenario.startsWith('warm')
}

function catMethod (method: MethodName): boolean {
  return method === 'broker-cat' || method === 'bitswap-cat' || method === 'both-cat'
}

/** The broker tables' methods: a pause after the call lets the wire settle before the late bytes are read */
function settles (method: MethodName): boolean {
  return catMethod(method) || method === 'broker-pins' || method === 'both-pins'
}

function applicable (scenario: Scenario, method: MethodName, dataset: DatasetInfo): boolean {
  if (catScenario(scenario) || catMethod(method)) {
    const file = scenario === 'cat-path' ? dataset.catPath : dataset.catFile
    return catScenario(scenario) && catMethod(method) && file != null
  }
  if (method === 'broker-pins' || method === 'both-pins') {
    return pulls(scenario)
  }
  return method !== 'car-mirror-no-hint' || warm(scenario)
}

/**
 * The nodes' block brokers: by default Bitswap only (CAR Mirror's broker
 * off, so Bitswap methods measure Bitswap alone); a broker method's client
 * has CAR Mirror's broker and no Bitswap, a both-* method's client both.
 * Every node serves both protocols (but the broker client, which has no
 * Bitswap).
 */
function nodesFor (method: MethodName): { server: NodeSpec, client: NodeSpec } {
  const plain: NodeSpec = { bitswap: true, broker: false }
  if (BOTH_METHODS.includes(method)) {
    return { server: plain, client: { bitswap: true, broker: true } }
  }
  return { server: plain, client: BROKER_METHODS.includes(method) ? { bitswap: false, broker: true } : plain }
}

/** What a warm transfer may take beyond two round trips and the transfer itself (issue 10's target), ms */
const WARM_SLACK_MS = 20

/** True when the run's nodes record the old version as held whole before it starts, as nodes that exchanged it with CAR Mirror have */
function recordsOld (scenario: Scenario, method: MethodName): boolean {
  return args['no-record'] !== true && warm(scenario) && (method === 'car-mirror' || method === 'car-mirror-no-hint')
}

/** The node that drives the transfer and what it does */
function actionFor (scenario: Scenario, method: MethodName, dataset: DatasetInfo, addr: string): { actor: 'client' | 'server', action: Action } {
  const root = dataset.newRoot
  const hints = warm(scenario) && method === 'car-mirror' ? [dataset.oldRoot] : []
  const pull = pulls(scenario)
  switch (method) {
    case 'car-mirror':
    case 'car-mirror-no-hint':
      return { actor: 'client', action: { kind: pull ? 'cm-pull' : 'cm-push', addr, root, hints } }
    case 'one-shot-car':
      return { actor: 'client', action: { kind: pull ? 'car-pull' : 'car-push', addr, root } }
    // for a push, Bitswap is the server fetching from the client
    case 'bitswap-pins':
      return { actor: pull ? 'client' : 'server', action: { kind: 'bitswap-pins', root } }
    case 'bitswap-tuned':
      return { actor: pull ? 'client' : 'server', action: { kind: 'bitswap-tuned', root, concurrency: 32 } }
    case 'broker-pins':
    case 'both-pins':
      return { actor: 'client', action: { kind: 'broker-pins', root } }
    case 'broker-cat':
    case 'bitswap-cat':
    case 'both-cat': {
      if (scenario === 'cat-file') {
        if (dataset.catFile == null) {
          throw new Error(`dataset ${dataset.name} has no multi-block file for cat-file`)
        }
        return { actor: 'client', action: { kind: 'cat', root: dataset.catFile.cid } }
      }
      if (dataset.catPath == null) {
        throw new Error(`dataset ${dataset.name} has no file for cat-path`)
      }
      return { actor: 'client', action: { kind: 'cat', root, path: dataset.catPath.path } }
    }
    default:
      throw new Error(`unknown method ${String(method)}`)
  }
}

/**
 * Untimed runs on a new pair of workers, so that no measured run pays for
 * loading and optimizing the code (without them, whichever cell comes first
 * looks up to twice as slow). They move the smallest dataset built, without
 * added delay, each way with CAR Mirror and the one-shot CAR, and run the
 * broker and cat methods once when they are measured.
 */
async function warmUp (workers: WorkerPair, work: string, dataset: DatasetInfo): Promise<void> {
  const started = performance.now()
  const runs: Array<[Scenario, MethodName]> = [['cold-pull', 'car-mirror'], ['cold-push', 'car-mirror'], ['cold-pull', 'one-shot-car'], ['cold-push', 'one-shot-car']]
  const extra: Array<[Scenario, MethodName]> = [['cold-pull', 'broker-pins'], ['cold-pull', 'both-pins']]
  for (const scenario of ['cat-path', 'cat-file'] as Scenario[]) {
    extra.push([scenario, 'broker-cat'], [scenario, 'bitswap-cat'], [scenario, 'both-cat'])
  }
  for (const [scenario, method] of extra) {
    if (scenarios.includes(scenario) && methods.includes(method) && applicable(scenario, method, dataset)) {
      runs.push([scenario, method])
    }
  }
  for (const [scenario, method] of runs) {
    await runOnce(workers, work, dataset, scenario, method, 0, settings.budgetMs)
  }
  process.stderr.write(`warm-up runs (${dataset.name}) took ${msText(performance.now() - started)}\n`)
}

interface WorkerPair {
  server: Worker
  client: Worker
}

let runCounter = 0

/** Where the sender's and the receiver's blocks come from: memory, or disk for the large file */
function storesFor (work: string, dataset: DatasetInfo, scenario: Scenario): { sender: StoreSpec, receiver: StoreSpec } {
  const old = warm(scenario) ? dataset.oldDir : undefined
  if (dataset.name === 'large') {
    return {
      sender: { kind: 'fs', path: dataset.bothDir, shared: true },
      receiver: { kind: 'fs', path: join(work, 'runs', String(runCounter++)), copyFrom: old }
    }
  }
  return { sender: { kind: 'memory', from: dataset.bothDir }, receiver: { kind: 'memory', from: old } }
}

/**
 * CAR Mirror counts its duplicates; for the one-shot CAR it is what was sent
 * less what was new; with CAR Mirror's broker, the blocks its pulls and
 * Bitswap (both-*) received less what was new, up to the receiver's report
 * (after the settling pause); for Bitswap alone, writes of held blocks
 */
function duplicatesOf (method: MethodName, result: ActionResult | undefined, receiver: Report): number | undefined {
  if (method === 'car-mirror' || method === 'car-mirror-no-hint') {
    return result?.duplicates
  }
  if (method === 'one-shot-car') {
    return result?.blocks == null ? undefined : result.blocks - receiver.newBlocks
  }
  if (BROKER_METHODS.includes(method) || BOTH_METHODS.includes(method)) {
    // Helia writes what a broker returns, though the broker's pull stored it: count the wire's duplicates only
    return (receiver.broker?.blocksReceived ?? 0) + (receiver.bitswap?.blocks ?? 0) - receiver.newBlocks
  }
  return receiver.duplicatePuts
}

/** The block bytes behind duplicatesOf, for the methods with CAR Mirror's broker */
function duplicateBytesOf (method: MethodName, receiver: Report): number | undefined {
  if (BROKER_METHODS.includes(method) || BOTH_METHODS.includes(method)) {
    return (receiver.broker?.blockBytesReceived ?? 0) + (receiver.bitswap?.blockBytes ?? 0) - receiver.newBytes
  }
  return undefined
}

function statusOf (reply: RunReply, receiver: Report): RunRecord['status'] {
  if (reply.dnf === true) {
    return 'dnf'
  }
  if (reply.error != null) {
    return 'error'
  }
  return receiver.verify?.complete === true ? 'ok' : 'incomplete'
}

function debug (message: string): void {
  if (process.env.BENCH_DEBUG != null) {
    process.stderr.write(`${message}\n`)
  }
}

/** Connects the client to the server through the shaper and waits until both have identified each other */
async function connect (workers: WorkerPair, shaper: Shaper, server: SetupResult, client: SetupResult): Promise<string> {
  const addr = `/ip4/127.0.0.1/tcp/${shaper.port}/ws/p2p/${server.peerId}`
  await workers.client.call('connect', { addr, protocols: server.protocols })
  await workers.server.call('waitPeer', { peerId: client.peerId, protocols: client.protocols })
  return addr
}

/** The driving worker runs the transfer; the worker enforces the budget, this adds a watchdog for a worker that hangs */
async function drive (driver: Worker, action: Action, budgetMs: number): Promise<RunReply> {
  try {
    return await driver.call<RunReply>('run', { action, budgetMs }, budgetMs + 30_000)
  } catch (err) {
    return { dnf: true, ms: budgetMs, error: (err as Error).message }
  }
}

/** A cat is complete when it returned the file's bytes */
function verifyCat (dataset: DatasetInfo, scenario: Scenario, result: ActionResult | undefined, receiver: Report): Report['verify'] {
  if (result == null) {
    return undefined
  }
  const file = scenario === 'cat-file' ? dataset.catFile : dataset.catPath
  const match = result.catBytes === file?.size && result.catSha256 === file?.sha256
  return { complete: match, blocks: receiver.newBlocks, bytes: result.catBytes ?? 0, missing: match ? 0 : 1 }
}

/**
 * Waits at least two round trips (+ 100 ms) after a call, then until the
 * wire has been quiet for one round trip (+ 100 ms), so the receiver has
 * read what was still on its way; at most 5 s
 */
async function settle (shaper: Shaper, delay: number): Promise<void> {
  const started = performance.now()
  const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
  await sleep(4 * delay + 100)
  const quietMs = 2 * delay + 100
  let last = shaper.counters.clientToServer + shaper.counters.serverToClient
  let quietSince = performance.now()
  while (performance.now() - quietSince < quietMs && performance.now() - started < 5_000) {
    await sleep(20)
    const now = shaper.counters.clientToServer + shaper.counters.serverToClient
    if (now !== last) {
      last = now
      quietSince = performance.now()
    }
  }
}

/** One run: fresh nodes on fresh stores, connect through a fresh shaper, transfer, report, verify, tear down */
async function runOnce (workers: WorkerPair, work: string, dataset: DatasetInfo, scenario: Scenario, method: MethodName, delay: number, budgetMs: number, freshProcesses = false): Promise<RunRecord> {
  const pull = pulls(scenario)
  const stores = storesFor(work, dataset, scenario)
  const receiver = pull ? workers.client : workers.server
  const sender = pull ? workers.server : workers.client

  const nodes = nodesFor(method)
  const t0 = performance.now()
  const [serverSetup, clientSetup] = await Promise.all([
    workers.server.call<SetupResult>('setup', { listen: true, store: pull ? stores.sender : stores.receiver, node: nodes.server }),
    workers.client.call<SetupResult>('setup', { listen: false, store: pull ? stores.receiver : stores.sender, node: nodes.client })
  ])
  const shaper = await Shaper.start({ targetPort: serverSetup.port as number, delayMs: delay, rateBytesPerSecond, windowBytes })
  try {
    const addr = await connect(workers, shaper, serverSetup, clientSetup)
    if (recordsOld(scenario, method)) {
      // both nodes exchanged the old version earlier, so each recorded it as held whole
      await Promise.all([workers.server.call('recordComplete', { root: dataset.oldRoot }), workers.client.call('recordComplete', { root: dataset.oldRoot })])
    }
    await Promise.all([workers.server.call('mark'), workers.client.call('mark')])
    const t1 = performance.now()
    const before = { ...shaper.counters }
    const { actor, action } = actionFor(scenario, method, dataset, addr)
    const reply = await drive(actor === 'client' ? workers.client : workers.server, action, budgetMs)
    const after = { ...shaper.counters }
    // the broker tables' methods: wait for what is still on its way, such as the blocks of a race's loser
    if (settles(method)) {
      await settle(shaper, delay)
    }
    const settled = { ...shaper.counters }
    // a cat reads one file: it is checked against the dataset's copy instead of walking the DAG
    const cat = catScenario(scenario)
    const [receiverReport, senderReport] = await Promise.all([
      receiver.call<Report>('report', { root: cat ? undefined : dataset.newRoot }, 120_000),
      sender.call<Report>('report', {})
    ])
    if (cat) {
      receiverReport.verify = verifyCat(dataset, scenario, reply.result, receiverReport)
    }
    debug(`phases: setup and connect ${(t1 - t0).toFixed(0)} ms, run and report ${(performance.now() - t1).toFixed(0)} ms`)
    const up = after.clientToServer - before.clientToServer
    const down = after.serverToClient - before.serverToClient
    const lateUp = settled.clientToServer - after.clientToServer
    const lateDown = settled.serverToClient - after.serverToClient
    // a fresh process' lifetime peak is this run's peak, sampled or not
    const peak = (report: Report): number => freshProcesses ? Math.max(report.peakRss, report.maxRss) : report.peakRss
    return {
      status: statusOf(reply, receiverReport),
      error: reply.error,
      ms: reply.ms,
      bytesToReceiver: pull ? down : up,
      bytesToSender: pull ? up : down,
      newBlocks: receiverReport.newBlocks,
      newBytes: receiverReport.newBytes,
      duplicates: duplicatesOf(method, reply.result, receiverReport),
      blocksMoved: reply.result?.blocks,
      roundTrips: reply.result?.roundTrips,
      bloomBytes: reply.result?.bloomBytes,
      receiverPeakRss: peak(receiverReport),
      receiverBaselineRss: receiverReport.baselineRss,
      receiverPeakHeap: receiverReport.peakHeap,
      receiverPeakArrayBuffers: receiverReport.peakArrayBuffers,
      senderPeakRss: peak(senderReport),
      verify: receiverReport.verify,
      broker: reply.result?.broker,
      firstMs: reply.result?.firstMs,
      bitswap: receiverReport.bitswap,
      duplicateBytes: duplicateBytesOf(method, receiverReport),
      lateToReceiver: settles(method) ? (pull ? lateDown : lateUp) : undefined,
      lateToSender: settles(method) ? (pull ? lateUp : lateDown) : undefined
    }
  } finally {
    await Promise.allSettled([workers.server.call('teardown', {}, 30_000), workers.client.call('teardown', {}, 30_000)])
    await shaper.stop()
  }
}

// ---------------------------------------------------------------------------
// report

interface CellSummary {
  ok: number
  total: number
  dnf: boolean
  failed: boolean
  ms?: number
  minMs?: number
  maxMs?: number
  bytesToReceiver?: number
  bytesToSender?: number
  newBlocks?: number
  duplicates?: number
  roundTrips?: number
  bloomBytes?: number
  receiverPeakRss?: number
  /** Receiver's peak RSS over its RSS when the run started */
  receiverDeltaRss?: number
  senderPeakRss?: number
  /** Medians of the broker's counters over the runs (broker methods) */
  broker?: BrokerStats
  /** pins.add: median ms to the first pinned CID */
  firstMs?: number
  /** Medians: what the receiver's Bitswap received (blocks, block bytes, messages) */
  bitswapBlocks?: number
  bitswapBlockBytes?: number
  bitswapMessages?: number
  /** Median duplicate block bytes (methods with CAR Mirror's broker) */
  duplicateBytes?: number
  /** Median wire bytes in the settling pause after the call */
  lateToReceiver?: number
  lateToSender?: number
}

function summarize (cell: Cell): CellSummary {
  const ok = cell.runs.filter(r => r.status === 'ok')
  const summary: CellSummary = {
    ok: ok.length,
    total: cell.runs.length + cell.skipped,
    dnf: cell.runs.some(r => r.status === 'dnf'),
    failed: cell.runs.some(r => r.status === 'error' || r.status === 'incomplete')
  }
  const pick = (runs: RunRecord[], f: (r: RunRecord) => number | undefined): number | undefined => {
    const values = runs.map(f).filter((v): v is number => v != null)
    return values.length === 0 ? undefined : median(values)
  }
  // a cell with a DNF is reported as DNF; its other figures are from the runs that ended
  const runs = ok.length > 0 ? ok : cell.runs
  if (ok.length > 0 && !summary.dnf) {
    summary.ms = median(ok.map(r => r.ms))
    summary.minMs = Math.min(...ok.map(r => r.ms))
    summary.maxMs = Math.max(...ok.map(r => r.ms))
  }
  summary.bytesToReceiver = pick(runs, r => r.bytesToReceiver)
  summary.bytesToSender = pick(runs, r => r.bytesToSender)
  summary.newBlocks = pick(runs, r => r.newBlocks)
  summary.duplicates = pick(runs, r => r.duplicates)
  summary.roundTrips = pick(runs, r => r.roundTrips)
  summary.bloomBytes = pick(runs, r => r.bloomBytes)
  summary.receiverPeakRss = pick(runs, r => r.receiverPeakRss)
  summary.receiverDeltaRss = pick(runs, r => r.receiverPeakRss - r.receiverBaselineRss)
  summary.senderPeakRss = pick(runs, r => r.senderPeakRss)
  summary.firstMs = pick(ok, r => r.firstMs)
  summary.bitswapBlocks = pick(runs, r => r.bitswap?.blocks)
  summary.bitswapBlockBytes = pick(runs, r => r.bitswap?.blockBytes)
  summary.bitswapMessages = pick(runs, r => r.bitswap?.messages)
  summary.duplicateBytes = pick(runs, r => r.duplicateBytes)
  summary.lateToReceiver = pick(runs, r => r.lateToReceiver)
  summary.lateToSender = pick(runs, r => r.lateToSender)
  const withBroker = runs.filter(r => r.broker != null)
  if (withBroker.length > 0) {
    const first = withBroker[0].broker as BrokerStats
    const broker = { ...first }
    for (const key of Object.keys(first) as Array<keyof BrokerStats>) {
      broker[key] = median(withBroker.map(r => (r.broker as BrokerStats)[key]))
    }
    summary.broker = broker
  }
  return summary
}

function kib (n?: number): string {
  if (n == null) {
    return 'n/a'
  }
  return n >= 10 * 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`
}
const mib = (n?: number): string => n == null ? 'n/a' : (n / 1024 / 1024).toFixed(0)
function msText (n?: number): string {
  if (n == null) {
    return 'n/a'
  }
  return n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : `${n.toFixed(0)} ms`
}

function timeCell (cell: Cell, s: CellSummary): string {
  if (s.dnf) {
    const dnf = cell.runs.find(r => r.status === 'dnf') as RunRecord
    const progress = dnf.verify == null ? '' : `, ${dnf.verify.blocks} blocks held`
    return `DNF (> ${msText(cell.budgetMs)}${progress})`
  }
  if (s.ms == null) {
    const bad = cell.runs.find(r => r.status !== 'ok')
    return `FAILED (${bad?.status}${bad?.error != null ? ': ' + bad.error.split('\n')[0].slice(0, 80) : ''})`
  }
  const range = s.ok > 1 ? ` (${msText(s.minMs)}–${msText(s.maxMs)})` : ''
  return `${msText(s.ms)}${range}${s.failed ? ' ⚠ some runs failed' : ''}`
}

function markdownTable (cells: Cell[], datasets: Map<DatasetName, DatasetInfo>): string {
  const lines = [
    '| dataset | scenario | delay | method | runs | time (median, range) | wire → receiver | wire → sender | new blocks | duplicates | round trips | Bloom | receiver peak RSS MiB (growth) | sender peak RSS MiB |',
    '| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
  ]
  for (const cell of cells) {
    const s = summarize(cell)
    const dataset = datasets.get(cell.dataset) as DatasetInfo
    // a cat needs the directory blocks on its path and the file's, a whole-file cat the file's
    const needed = cell.scenario === 'cat-path' ? dataset.catPath?.blocks : cell.scenario === 'cat-file' ? dataset.catFile?.blocks : dataset.new.blocks
    lines.push(`| ${cell.dataset} | ${cell.scenario} | ${cell.delayMs} ms | ${METHOD_LABELS[cell.method]} | ${s.ok}/${s.total} | ${timeCell(cell, s)} | ${kib(s.bytesToReceiver)} | ${kib(s.bytesToSender)} | ${s.newBlocks ?? 'n/a'} / ${needed} | ${s.duplicates ?? 'n/a'} | ${s.roundTrips ?? 'n/a'} | ${s.bloomBytes == null ? 'n/a' : kib(s.bloomBytes)} | ${mib(s.receiverPeakRss)} (+${mib(s.receiverDeltaRss)}) | ${mib(s.senderPeakRss)} |`)
  }
  return lines.join('\n')
}

/** The broker's counters in a table cell: pulls (shallow), blocks and block bytes received, joined retrieves, failures */
function brokerText (b?: BrokerStats): string {
  if (b == null) {
    return 'n/a'
  }
  return `${b.retrieves} retrieves, ${b.pulls} pulls (${b.shallowPulls} shallow), ${b.joined} joined, ${b.blocksReceived} blocks / ${kib(b.blockBytesReceived)}, stream ${kib(b.bytesReceived)}, ${b.failures} failed`
}

/** A cell's time, or n/a when it was not measured */
function timeOf (found: Found): string {
  return found.cell == null || found.s == null ? 'n/a' : timeCell(found.cell, found.s)
}

/** The row of broker pins.add against carMirror.pull and Bitswap's pins.add */
function pinsRow (checker: TargetChecker, dataset: DatasetInfo, scenario: Scenario): string | undefined {
  const broker = checker.find(dataset.name, scenario, 'broker-pins')
  if (broker.cell == null) {
    return undefined
  }
  const cm = checker.find(dataset.name, scenario, 'car-mirror')
  const bitswap = checker.find(dataset.name, scenario, 'bitswap-pins')
  const slow = checker.slowTime(bitswap)
  const dag = warm(scenario) ? dataset.added.bytes : dataset.new.bytes
  const ms = broker.s?.ms
  const first = broker.s?.firstMs
  const walk = ms == null || first == null ? undefined : ms - first
  return `| ${dataset.name} | ${scenario} | ${broker.cell.delayMs} ms | ${timeOf(broker)} | ${timeOf(cm)} | ${msText(first)} + ${msText(walk)} | ${fixed(ratio(ms, cm.s?.ms))}x | ${timeOf(bitswap)} | ${slow.bound ? '>' : ''}${fixed(ratio(slow.ms, ms), 1)}x | ${kib(broker.s?.bytesToReceiver)} | ${kib(cm.s?.bytesToReceiver)} | ${kib(bitswap.s?.bytesToReceiver)} | ${kib(dag)} | ${fixed(ratio(broker.s?.bytesToReceiver, dag))}x | ${brokerText(broker.s?.broker)} |`
}

/** The file a cat scenario reads, and what reading it touches */
function catTarget (dataset: DatasetInfo, scenario: Scenario): { label: string, blocks: number, bytes: number } | undefined {
  if (scenario === 'cat-file') {
    const file = dataset.catFile
    return file == null ? undefined : { label: `\`${file.path}\` whole, by its CID (depth ${file.depth}, ${kib(file.size)})`, blocks: file.blocks, bytes: file.bytes }
  }
  const cat = dataset.catPath
  return cat == null ? undefined : { label: `\`${cat.path}\` (depth ${cat.depth}, ${cat.siblings} siblings, ${kib(cat.size)})`, blocks: cat.blocks, bytes: cat.bytes }
}

/** The row of a cat (by path, or a whole file) with the broker against Bitswap */
function catRow (checker: TargetChecker, dataset: DatasetInfo, scenario: Scenario): string | undefined {
  const broker = checker.find(dataset.name, scenario, 'broker-cat')
  const bitswap = checker.find(dataset.name, scenario, 'bitswap-cat')
  const target = catTarget(dataset, scenario)
  const delay = broker.cell?.delayMs ?? bitswap.cell?.delayMs
  if (target == null || delay == null) {
    return undefined
  }
  const b = broker.s
  const w = bitswap.s
  return `| ${dataset.name} | ${scenario} | ${target.label} | ${delay} ms | ${target.blocks} blocks / ${kib(target.bytes)} | ${timeOf(broker)} | ${timeOf(bitswap)} | ${fixed(ratio(b?.ms, w?.ms))}x | ${kib(wire(b))} (${kib(b?.bytesToReceiver)}) | ${kib(wire(w))} (${kib(w?.bytesToReceiver)}) | ${fixed(ratio(wire(b), wire(w)))}x (${fixed(ratio(b?.bytesToReceiver, w?.bytesToReceiver))}x) | ${b?.newBlocks ?? 'n/a'} / ${w?.newBlocks ?? 'n/a'} | ${brokerText(b?.broker)} |`
}

/** A signed byte count */
function signedKib (n?: number): string {
  return n == null ? 'n/a' : `${n < 0 ? '−' : '+'}${kib(Math.abs(n))}`
}

/** A fraction as a percentage */
function percent (n?: number): string {
  return n == null ? 'n/a' : `${n < 0 ? '−' : ''}${(Math.abs(n) * 100).toFixed(1)}%`
}

/**
 * The row of a both-* method (Bitswap and CAR Mirror's broker on one
 * client) against the same call with the broker alone and with Bitswap
 * alone: the wire bytes it adds over the broker alone are Bitswap's
 * duplicates plus its protocol overhead
 */
function bothRow (checker: TargetChecker, dataset: DatasetInfo, scenario: Scenario): string | undefined {
  const cat = catScenario(scenario)
  const both = checker.find(dataset.name, scenario, cat ? 'both-cat' : 'both-pins')
  if (both.cell == null) {
    return undefined
  }
  const broker = checker.find(dataset.name, scenario, cat ? 'broker-cat' : 'broker-pins')
  const bitswap = checker.find(dataset.name, scenario, cat ? 'bitswap-cat' : 'bitswap-pins')
  let what: string
  let dag: number | undefined
  if (cat) {
    const target = catTarget(dataset, scenario)
    what = `cat ${target?.label ?? 'n/a'}`
    dag = target?.bytes
  } else {
    what = 'pins.add of the DAG'
    dag = warm(scenario) ? dataset.added.bytes : dataset.new.bytes
  }
  const x = both.s
  const b = broker.s
  const extra = x?.bytesToReceiver == null || b?.bytesToReceiver == null ? undefined : x.bytesToReceiver - b.bytesToReceiver
  // with what arrived in the pause after the call: a race's loser may still be sending when the call returns
  const total = (s?: CellSummary): number | undefined => s?.bytesToReceiver == null ? undefined : s.bytesToReceiver + (s.lateToReceiver ?? 0)
  const bothTotal = total(x)
  const brokerTotal = total(b)
  const extraTotal = bothTotal == null || brokerTotal == null ? undefined : bothTotal - brokerTotal
  const bitswapReceived = x?.bitswapBlocks == null ? 'n/a' : `${x.bitswapBlocks} / ${kib(x.bitswapBlockBytes)} (${x.bitswapMessages} msgs)`
  return `| ${dataset.name} | ${scenario} | ${what} | ${both.cell.delayMs} ms | ${timeOf(both)} | ${timeOf(broker)} | ${timeOf(bitswap)} | ${kib(x?.bytesToReceiver)} | ${kib(b?.bytesToReceiver)} | ${signedKib(extra)} (${percent(ratio(extra, dag))}) | ${kib(x?.lateToReceiver)} / ${kib(b?.lateToReceiver)} | ${signedKib(extraTotal)} (${percent(ratio(extraTotal, dag))}) | ${kib(dag)} | ${fixed(ratio(bothTotal, dag))}x | ${kib(x?.bytesToSender)} | ${kib(b?.bytesToSender)} | ${bitswapReceived} | ${x?.duplicates ?? 'n/a'} / ${kib(x?.duplicateBytes)} (${percent(ratio(x?.duplicateBytes, dag))}) | ${brokerText(x?.broker)} |`
}

/**
 * The block broker's rows side by side: pins.add over CAR Mirror against
 * `carMirror.pull` and Bitswap's pins.add, cats against Bitswap, and both
 * brokers on one client against each alone, with the ratios the issue's
 * targets name
 */
/** A markdown table with its title and an optional note under it; nothing when it has no rows */
function section (rows: string[], title: string, header: string, align: string, note?: string): string[] {
  if (rows.length === 0) {
    return []
  }
  return [title, header, align, ...rows, '', ...(note == null ? [] : [note])]
}

function brokerTables (cells: Cell[], datasets: Map<DatasetName, DatasetInfo>): string {
  const checker = new TargetChecker(cells)
  const defined = (row: string | undefined): row is string => row != null
  const all = [...datasets.values()]
  const pins = all.flatMap(d => [pinsRow(checker, d, 'cold-pull'), pinsRow(checker, d, 'warm-pull')]).filter(defined)
  const cats = all.flatMap(d => [catRow(checker, d, 'cat-path'), catRow(checker, d, 'cat-file')]).filter(defined)
  const both = all.flatMap(d => (['cold-pull', 'warm-pull', 'cat-path', 'cat-file'] as Scenario[]).map(scenario => bothRow(checker, d, scenario))).filter(defined)
  return [
    ...section(pins, '### pins.add over CAR Mirror\'s block broker (client: CAR Mirror broker only, names no peer)\n', '| dataset | scenario | delay | broker pins.add | carMirror.pull | broker: first pinned + the rest | broker / pull time | Bitswap pins.add | Bitswap / broker time | wire → receiver, broker | pull | Bitswap | DAG bytes (warm: new blocks) | broker wire / DAG | broker counters (median) |', '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |', '"first pinned + the rest": until pins.add yields its first pinned CID (the broker pins each block as its one pull of the whole DAG verifies it), then the rest of the call (medians).\n'),
    ...section(cats, '### unixfs.cat: CAR Mirror broker only vs Bitswap only (cat-path: one small file by path; cat-file: the largest multi-block file whole, by its CID)\n', '| dataset | scenario | file | delay | blocks read | broker time | Bitswap time | broker / Bitswap time | broker wire both ways (→ receiver) | Bitswap wire both ways (→ receiver) | broker / Bitswap wire | new blocks broker / Bitswap | broker counters (median) |', '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |'),
    ...section(both, '### Both brokers on one client (Bitswap + CAR Mirror broker, raced by Helia for every block): duplicate bytes\n', '| dataset | scenario | what | delay | time, both | broker only | Bitswap only | wire → receiver, both | broker only | both − broker only (% of DAG) | late → receiver, both / broker only | both − broker only, with late (% of DAG) | DAG / file bytes | both with late / DAG | wire → sender, both | broker only | Bitswap received: blocks / block bytes | duplicate blocks / bytes (% of DAG) | broker counters, both (median) |', '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |', '"both − broker only": the extra wire bytes to the receiver during the call over the same call with CAR Mirror\'s broker alone (medians of separate runs): Bitswap\'s duplicate blocks plus its protocol overhead (want lists are on the wire → sender). "late": wire bytes to the receiver in a pause after the call returned (two round trips + 100 ms, then until the wire is quiet for one round trip + 100 ms), when a race\'s loser may still be sending; "with late" adds them (the duplicate bytes the call caused in all). "Bitswap received": blocks in the Bitswap messages the client decoded (wanted or not), until the end of the pause. "duplicate blocks / bytes": blocks (bytes) CAR Mirror\'s pulls and Bitswap received less the new blocks (bytes) stored, until the end of the pause.\n')
  ].join('\n')
}

interface TargetCheck {
  target: string
  measured: string
  met: boolean | undefined
}

function ratio (a?: number, b?: number): number | undefined {
  return a == null || b == null || b === 0 ? undefined : a / b
}

function fixed (n?: number, digits = 2): string {
  return n == null ? 'n/a' : n.toFixed(digits)
}

/** Bytes on the wire both ways */
function wire (s?: CellSummary): number | undefined {
  return s?.bytesToReceiver == null || s.bytesToSender == null ? undefined : s.bytesToReceiver + s.bytesToSender
}

function failures (cell?: Cell): number {
  return cell?.runs.filter(r => r.status === 'error' || r.status === 'incomplete').length ?? 0
}

interface Found {
  cell?: Cell
  s?: CellSummary
}

/** Checks the issue's targets against the measured cells */
class TargetChecker {
  readonly checks: TargetCheck[] = []
  private readonly cells: Cell[]

  constructor (cells: Cell[]) {
    this.cells = cells
  }

  find (dataset: DatasetName, scenario: Scenario, method: MethodName): Found {
    const cell = this.cells.find(c => c.dataset === dataset && c.scenario === scenario && c.method === method)
    return { cell, s: cell == null ? undefined : summarize(cell) }
  }

  /** A Bitswap time, or its budget as a lower bound when it did not finish */
  slowTime (found: Found): { ms?: number, bound: boolean } {
    if (found.s?.ms != null) {
      return { ms: found.s.ms, bound: false }
    }
    return found.s?.dnf === true ? { ms: found.cell?.budgetMs, bound: true } : { bound: false }
  }

  add (target: string, measured: string, met: boolean | undefined): void {
    this.checks.push({ target, measured, met })
  }

  faster (label: string, factor: number, cm: Found, tuned: Found): void {
    const slow = this.slowTime(tuned)
    const speedup = ratio(slow.ms, cm.s?.ms)
    this.add(`${label}: ≥ ${factor}x faster than tuned Bitswap`, `${msText(slow.ms)} vs ${msText(cm.s?.ms)} = ${slow.bound ? '>' : ''}${fixed(speedup, 1)}x`, speedup == null ? undefined : speedup >= factor)
  }

  /** Cold pull and push of the deep tree: close to the one-shot CAR, far ahead of Bitswap */
  cold (scenario: Scenario): void {
    const cm = this.find('deep', scenario, 'car-mirror')
    if (cm.cell == null) {
      return
    }
    const car = this.find('deep', scenario, 'one-shot-car')
    const r = ratio(cm.s?.ms, car.s?.ms)
    this.add(`deep ${scenario} at ${cm.cell.delayMs} ms: CAR Mirror within 1.2x of the one-shot CAR`, `${msText(cm.s?.ms)} vs ${msText(car.s?.ms)} = ${fixed(r)}x`, r == null ? undefined : r <= 1.2)
    this.faster(`deep ${scenario}`, 20, cm, this.find('deep', scenario, 'bitswap-tuned'))
  }

  /** Warm pull and push: about the new blocks on the wire, in two round trips */
  warm (dataset: DatasetInfo, scenario: Scenario): void {
    const name = dataset.name
    const cm = this.find(name, scenario, 'car-mirror')
    if (cm.cell == null || cm.s == null) {
      return
    }
    const cmWire = wire(cm.s)
    const bloom = cm.s.bloomBytes ?? 0
    const allowance = 1.1 * dataset.added.bytes + bloom
    this.add(`${name} ${scenario}: wire bytes ≤ 1.1 x new blocks' bytes + Bloom`, `${kib(cmWire)} vs 1.1 x ${kib(dataset.added.bytes)} + ${kib(bloom)} = ${kib(allowance)} (${fixed(ratio(cmWire, dataset.added.bytes + bloom))}x of new + Bloom)`, cmWire == null ? undefined : cmWire <= allowance)
    const car = this.find(name, scenario, 'one-shot-car')
    const fewer = ratio(wire(car.s), cmWire)
    this.add(`${name} ${scenario}: ≥ 50x fewer wire bytes than the one-shot CAR`, `${kib(wire(car.s))} vs ${kib(cmWire)} = ${fixed(fewer, 1)}x (the new blocks are 1/${fixed(dataset.new.bytes / Math.max(1, dataset.added.bytes), 0)} of the DAG's bytes)`, fewer == null ? undefined : fewer >= 50)
    // transfer time at the throughput the one-shot CAR reached cold on this dataset
    const coldCar = this.find(name, pulls(scenario) ? 'cold-pull' : 'cold-push', 'one-shot-car').s
    const throughput = coldCar?.ms == null || coldCar.bytesToReceiver == null ? undefined : coldCar.bytesToReceiver / coldCar.ms
    const rtt = 2 * cm.cell.delayMs
    const transfer = cmWire == null || throughput == null ? 0 : cmWire / throughput
    // issue 10's floor: two round trips (the stream's protocol negotiation, then the transfer's), the transfer, and 20 ms
    const bound = 2 * rtt + transfer + WARM_SLACK_MS
    this.add(`${name} ${scenario}: time within two round trips + transfer + ${WARM_SLACK_MS} ms`, `${msText(cm.s.ms)} vs 2 x ${rtt} ms + ${msText(transfer)} + ${WARM_SLACK_MS} ms = ${msText(bound)}`, cm.s.ms == null ? undefined : cm.s.ms <= bound)
    this.faster(`${name} ${scenario}`, 10, cm, this.find(name, scenario, 'bitswap-tuned'))
  }

  /** The block broker on the deep tree: pins.add close to a pull and far ahead of Bitswap; cat by path about Bitswap's bytes */
  broker (dataset: DatasetInfo): void {
    this.brokerPins(dataset)
    this.brokerCat(dataset)
  }

  brokerPins (dataset: DatasetInfo): void {
    const name = dataset.name
    const pins = this.find(name, 'cold-pull', 'broker-pins')
    if (pins.cell == null) {
      return
    }
    const at = `${name} cold-pull at ${pins.cell.delayMs} ms`
    const ms = pins.s?.ms
    const cm = this.find(name, 'cold-pull', 'car-mirror')
    const r = ratio(ms, cm.s?.ms)
    this.add(`${at}: broker pins.add ≤ 1.3x carMirror.pull's time`, `${msText(ms)} vs ${msText(cm.s?.ms)} = ${fixed(r)}x (of which the pull ${msText(pins.s?.firstMs)})`, r == null ? undefined : r <= 1.3)
    const slow = this.slowTime(this.find(name, 'cold-pull', 'bitswap-pins'))
    const speedup = ratio(slow.ms, ms)
    // a DNF's budget is a lower bound: it settles the target only when it already clears the factor
    let met: boolean | undefined
    if (speedup != null && (speedup >= 5 || !slow.bound)) {
      met = speedup >= 5
    }
    this.add(`${at}: broker pins.add ≥ 5x faster than Bitswap pins.add`, `${msText(slow.ms)} vs ${msText(ms)} = ${slow.bound ? '>' : ''}${fixed(speedup, 1)}x`, met)
    const bytes = ratio(pins.s?.bytesToReceiver, dataset.new.bytes)
    this.add(`${at}: broker pins.add wire bytes → receiver ≤ 1.15x the DAG's bytes`, `${kib(pins.s?.bytesToReceiver)} vs ${kib(dataset.new.bytes)} = ${fixed(bytes)}x`, bytes == null ? undefined : bytes <= 1.15)
  }

  brokerCat (dataset: DatasetInfo): void {
    const name = dataset.name
    const cat = this.find(name, 'cat-path', 'broker-cat')
    const bitswap = this.find(name, 'cat-path', 'bitswap-cat')
    if (cat.cell == null || bitswap.cell == null) {
      return
    }
    const b = cat.s
    const w = bitswap.s
    const r = ratio(wire(b), wire(w))
    this.add(`${name} cat-path at ${cat.cell.delayMs} ms (depth ${dataset.catPath?.depth}): broker wire bytes ≤ 2x Bitswap's`, `${kib(wire(b))} vs ${kib(wire(w))} both ways = ${fixed(r)}x (→ receiver ${kib(b?.bytesToReceiver)} vs ${kib(w?.bytesToReceiver)} = ${fixed(ratio(b?.bytesToReceiver, w?.bytesToReceiver))}x); time ${msText(b?.ms)} vs ${msText(w?.ms)}`, r == null ? undefined : r <= 2)
  }

  /** The large file without delay: the one-shot CAR's throughput, a bounded receiver */
  large (dataset: DatasetInfo, scenario: Scenario): void {
    const cm = this.find('large', scenario, 'car-mirror')
    if (cm.cell == null) {
      return
    }
    const failed = failures(cm.cell)
    const failedNote = failed > 0 ? `; ${failed} of ${cm.cell.runs.length} CAR Mirror runs FAILED` : ''
    if (!warm(scenario)) {
      const car = this.find('large', scenario, 'one-shot-car')
      const throughput = (s?: CellSummary): number | undefined => s?.ms == null ? undefined : dataset.new.bytes / 1024 / 1024 / (s.ms / 1000)
      const r = ratio(throughput(cm.s), throughput(car.s))
      this.add(`large ${scenario} at ${cm.cell.delayMs} ms: throughput ≥ 0.9x the one-shot CAR`, `${fixed(throughput(cm.s), 1)} vs ${fixed(throughput(car.s), 1)} MiB/s = ${fixed(r)}x${failedNote}`, r == null ? undefined : r >= 0.9 && failed === 0)
    }
    const rss = cm.s?.receiverPeakRss
    if (rss != null) {
      this.add(`large ${scenario}: CAR Mirror receiver peak RSS < 256 MiB`, `${mib(rss)} MiB (of which ${mib(cm.s?.receiverDeltaRss)} MiB grown during the run)${failedNote}`, rss < 256 * 1024 * 1024)
    }
  }
}

function checkTargets (cells: Cell[], datasets: Map<DatasetName, DatasetInfo>): TargetCheck[] {
  const checker = new TargetChecker(cells)
  checker.cold('cold-pull')
  checker.cold('cold-push')
  const deep = datasets.get('deep')
  if (deep != null) {
    checker.broker(deep)
  }
  for (const dataset of datasets.values()) {
    if (dataset.name === 'large') {
      for (const scenario of SCENARIOS) {
        checker.large(dataset, scenario)
      }
    } else {
      checker.warm(dataset, 'warm-pull')
      checker.warm(dataset, 'warm-push')
    }
  }
  return checker.checks
}

// ---------------------------------------------------------------------------
// main

/** The worker processes of one dataset: created on demand, warmed up, replaced when they die */
class WorkerPool {
  private readonly work: string
  private readonly warmUpWith?: DatasetInfo
  private pair?: WorkerPair

  constructor (work: string, warmUpWith?: DatasetInfo) {
    this.work = work
    this.warmUpWith = warmUpWith
  }

  async get (): Promise<WorkerPair> {
    if (this.pair != null && (!this.pair.server.alive || !this.pair.client.alive)) {
      await this.drop()
    }
    if (this.pair == null) {
      this.pair = { server: new Worker('server'), client: new Worker('client') }
      if (this.warmUpWith != null) {
        await warmUp(this.pair, this.work, this.warmUpWith)
      }
    }
    return this.pair
  }

  async drop (): Promise<void> {
    const pair = this.pair
    this.pair = undefined
    if (pair != null) {
      await Promise.all([pair.server.stop(), pair.client.stop()])
    }
  }
}

function failedRun (err: Error): RunRecord {
  return { status: 'error', error: err.message, ms: 0, bytesToReceiver: 0, bytesToSender: 0, newBlocks: 0, newBytes: 0, receiverPeakRss: 0, receiverBaselineRss: 0, receiverPeakHeap: 0, senderPeakRss: 0 }
}

function runsFor (method: MethodName): number {
  if (method === 'bitswap-pins') {
    return settings.pinsRuns
  }
  return method === 'bitswap-tuned' ? settings.tunedRuns : settings.runs
}

function budgetFor (method: MethodName, large: boolean): number {
  if (method === 'bitswap-pins') {
    return settings.pinsBudgetMs
  }
  return large ? settings.largeBudgetMs : settings.budgetMs
}

/** All runs of one cell; it stops at the first DNF */
async function runCell (pool: WorkerPool, work: string, dataset: DatasetInfo, scenario: Scenario, method: MethodName, fresh: boolean): Promise<Cell> {
  const large = dataset.name === 'large'
  const delay = large ? largeDelayMs : delayMs
  const runs = runsFor(method)
  const cell: Cell = { dataset: dataset.name, scenario, method, delayMs: delay, budgetMs: budgetFor(method, large), runs: [], skipped: 0 }
  for (let i = 0; i < runs; i++) {
    let record: RunRecord
    try {
      record = await runOnce(await pool.get(), work, dataset, scenario, method, delay, cell.budgetMs, fresh)
    } catch (err) {
      record = failedRun(err as Error)
      await pool.drop()
    }
    cell.runs.push(record)
    if (fresh) {
      // a fresh process per run makes the large file's peak RSS that run's own
      await pool.drop()
    }
    const note = record.status === 'ok' ? '' : ` ${record.status.toUpperCase()}${record.error != null ? ': ' + record.error.split('\n')[0].slice(0, 120) : ''}`
    process.stderr.write(`${dataset.name} ${scenario} ${METHOD_LABELS[method]} run ${i + 1}/${runs}: ${msText(record.ms)}, → receiver ${kib(record.bytesToReceiver)}, → sender ${kib(record.bytesToSender)}${note}\n`)
    if (record.status === 'dnf') {
      cell.skipped = runs - i - 1
      break
    }
  }
  return cell
}

function targetLine (t: TargetCheck): string {
  let verdict = '?'
  if (t.met != null) {
    verdict = t.met ? 'met' : 'MISSED'
  }
  return `- ${verdict}: ${t.target}: ${t.measured}`
}

const { command, source, machine } = runContext(import.meta.url)
console.info('# CAR Mirror benchmark\n')
console.info(`- command: \`${command}\` (${mode} mode, in ${process.cwd()})`)
console.info(`- source: ${source}`)
console.info(`- machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.platform}, Node ${machine.node}`)
console.info(`- shaper: ${delayMs} ms one-way (${largeDelayMs} ms for the large file), ${rateBytesPerSecond == null ? 'no bandwidth cap' : `${args.rate} Mbit/s cap`}, window ${windowBytes ?? 4 * 1024 * 1024} bytes each way${args['ws-client'] === true ? '; clients send with the ws package\'s WebSocket' : ''}`)
console.info(`- runs per cell: ${settings.runs} (tuned Bitswap: ${settings.tunedRuns}, Bitswap pins.add: ${settings.pinsRuns}; a cell stops at its first DNF); budgets: ${msText(settings.budgetMs)} per run, ${msText(settings.pinsBudgetMs)} for pins.add, ${msText(settings.largeBudgetMs)} for the large file`)
console.info(`- started ${new Date().toISOString()}\n`)

const started = performance.now()
const startedAt = new Date().toISOString()
const check: SelfCheckResult = await selfCheck(delayMs)
console.info(`shaper self-check: echo RTT ${check.echoRttMs.toFixed(1)} ms at ${delayMs} ms one-way (expected ≈ ${2 * delayMs}), capped echo ${(check.bulkBytesPerSecond / 1024 / 1024).toFixed(2)} MiB/s (expected ≈ ${(check.expectedBytesPerSecond / 1024 / 1024).toFixed(2)}), backpressure after ${(check.backpressureAcceptedBytes / 1024 / 1024).toFixed(1)} MiB: ${check.ok ? 'ok' : 'FAILED'}\n`)

const work = await mkdtemp(join(os.tmpdir(), 'car-mirror-bench-'))
const datasets = new Map<DatasetName, DatasetInfo>()
const cells: Cell[] = []

/** Writes the JSON results; called after each dataset, so a long run that dies keeps what it measured */
async function saveResults (complete: boolean): Promise<TargetCheck[]> {
  const targets = checkTargets(cells, datasets)
  await mkdir(dirname(outFile), { recursive: true })
  await writeFile(outFile, JSON.stringify({
    command,
    source,
    mode,
    complete,
    machine,
    settings: { ...settings, delayMs, largeDelayMs, rateBytesPerSecond, windowBytes, wsClient: args['ws-client'] === true },
    startedAt,
    totalSeconds: (performance.now() - started) / 1000,
    shaperSelfCheck: check,
    datasets: [...datasets.values()].map(d => ({ ...d, oldDir: undefined, bothDir: undefined })),
    cells: cells.map(cell => ({ ...cell, summary: summarize(cell) })),
    targets
  }, null, 2) + '\n')
  return targets
}

try {
  console.info('| dataset | what | old version | new version | new blocks (not in old) | update | built in |')
  console.info('| --- | --- | ---: | ---: | ---: | --- | ---: |')
  for (const name of datasetNames) {
    const info = await buildDataset(name, { mode, workDir: work, realTree: args['real-tree'], largeBytes: args['large-mb'] == null ? undefined : Number(args['large-mb']) * 1024 * 1024 })
    datasets.set(name, info)
    console.info(`| ${name} | ${info.description} | ${info.old.blocks} blocks, ${kib(info.old.bytes)} | ${info.new.blocks} blocks, ${kib(info.new.bytes)} | ${info.added.blocks} blocks, ${kib(info.added.bytes)} | ${info.update} | ${msText(info.buildMs)} |`)
  }
  console.info('')

  // warm-ups move the smallest tree (the large file would take seconds each time)
  const trees = [...datasets.values()].filter(d => d.name !== 'large').sort((a, b) => a.new.blocks - b.new.blocks)
  for (const dataset of datasets.values()) {
    const fresh = dataset.name === 'large' && settings.freshLargeWorkers
    const pool = new WorkerPool(work, fresh ? undefined : trees[0] ?? dataset)
    for (const scenario of scenarios) {
      for (const method of methods.filter(m => applicable(scenario, m, dataset))) {
        cells.push(await runCell(pool, work, dataset, scenario, method, fresh))
      }
    }
    await pool.drop()
    await saveResults(false)
  }

  console.info(markdownTable(cells, datasets))
  const broker = brokerTables(cells, datasets)
  if (broker.length > 0) {
    console.info(`\n## CAR Mirror's block broker\n\n${broker}`)
  }
  console.info(`\nwire bytes are counted by the shaper (everything on the connection: framing, noise, yamux, Bitswap want lists); new blocks = blocks the receiver stored that it did not hold / blocks in the DAG; peak RSS sampled every 10 ms in each worker process${settings.freshLargeWorkers ? ' (the large file: a fresh process per run, its lifetime peak)' : ' (workers are reused across runs in quick mode: RSS is indicative)'}.`)
  const targets = await saveResults(true)
  console.info('\n## Targets\n')
  for (const t of targets) {
    console.info(targetLine(t))
  }
  console.info(`\nfinished in ${((performance.now() - started) / 1000).toFixed(0)} s; JSON: ${relative(process.cwd(), outFile)}`)
} finally {
  if (args.keep) {
    console.info(`work folder kept: ${work}`)
  } else {
    await rm(work, { recursive: true, force: true })
  }
}
