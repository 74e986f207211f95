/* eslint-disable no-console */

/**
 * Many clients, one server: `npm run bench:many` (`node benchmarks/many/index.ts`).
 *
 * One server process (./server.ts) and `--workers` client processes
 * (./clients.ts) holding `--clients` Helia nodes between them, each with its
 * own peer id, libp2p node and MemoryBlockstore, all connected to the server
 * over WebSockets on 127.0.0.1 before the clock starts. Every client has its
 * own small tree (./tree.ts, 211 blocks); v2 changes 2 of its 196 leaves
 * (5 new blocks). In the timed phase every client syncs at once: push
 * clients push v2 to a server holding v1, pull clients pull v2 from a server
 * holding it while they hold v1 (`--mode both`: half and half). No retries:
 * a failed sync is reported with its error.
 *
 * Each configuration (`--limits` × `--hints`) runs on fresh processes:
 * `default` is CAR Mirror's default session limits, `raised` sets
 * maxSessions and maxSessionsPerAddress to `--raised` (default 1024).
 *
 * Options: --clients N (1000), --workers N (4), --mode both|push|pull,
 * --hints on|off|on,off (on: hints = [v1 root]), --limits default,raised,
 * --raised N, --max-sessions-per-peer N and --local-walks N (the
 * `localWalks` budget; both apply to every configuration),
 * --budget MS (per sync, 300 s), --dial-concurrency N (per worker, 16),
 * --out FILE (benchmarks/results-many.json), --server-cpu-prof DIR (write
 * the server's V8 CPU profile there).
 */

import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Child } from '../rpc.ts'
import { sourceVersion } from '../source.ts'
import { DEFAULT_SHAPE } from './tree.ts'
import type { ClientSpec, ClientsRunResult, ClientsSetupResult, SyncResult } from './clients.ts'
import type { ServerLimits, ServerMark, ServerReport, ServerSetupResult } from './server.ts'

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '..', '..')

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '1000' },
    workers: { type: 'string', default: '4' },
    mode: { type: 'string', default: 'both' },
    hints: { type: 'string', default: 'on' },
    limits: { type: 'string', default: 'default,raised' },
    raised: { type: 'string', default: '1024' },
    'max-sessions-per-peer': { type: 'string' },
    'local-walks': { type: 'string' },
    budget: { type: 'string', default: '300000' },
    'dial-concurrency': { type: 'string', default: '16' },
    out: { type: 'string' },
    'server-cpu-prof': { type: 'string' }
  }
})

type Mode = 'both' | 'push' | 'pull'
type LimitsName = 'default' | 'raised'

const clientCount = Number(args.clients)
const workerCount = Math.max(1, Math.min(Number(args.workers), clientCount))
const mode = args.mode as Mode
if (!['both', 'push', 'pull'].includes(mode)) {
  throw new Error(`--mode must be both, push or pull, not ${mode}`)
}
const hintsList = args.hints.split(',').map(h => {
  if (h !== 'on' && h !== 'off') {
    throw new Error(`--hints takes on, off or on,off, not ${h}`)
  }
  return h === 'on'
})
const limitsList = args.limits.split(',').map(l => {
  if (l !== 'default' && l !== 'raised') {
    throw new Error(`--limits takes default, raised or default,raised, not ${l}`)
  }
  return l as LimitsName
})
const raised = Number(args.raised)
const perPeer = args['max-sessions-per-peer'] == null ? undefined : Number(args['max-sessions-per-peer'])
const localWalks = args['local-walks'] == null ? undefined : Number(args['local-walks'])
const budgetMs = Number(args.budget)
const dialConcurrency = Number(args['dial-concurrency'])
const outFile = resolve(args.out ?? join(here, '..', 'results-many.json'))

function limitsOf (name: LimitsName): ServerLimits {
  const limits: ServerLimits = name === 'raised' ? { maxSessions: raised, maxSessionsPerAddress: raised } : {}
  if (perPeer != null) {
    limits.maxSessionsPerPeer = perPeer
  }
  if (localWalks != null) {
    limits.localWalks = localWalks
  }
  return limits
}

function describeLimits (name: LimitsName): string {
  const l = limitsOf(name)
  const total = l.maxSessions ?? 256
  const address = l.maxSessionsPerAddress ?? 128
  const peer = l.maxSessionsPerPeer ?? 32
  return `${name} (${total} / ${address} per address / ${peer} per peer${l.localWalks == null ? '' : `, localWalks ${l.localWalks}`})`
}

// ---------------------------------------------------------------------------
// statistics and formatting

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) {
    return NaN
  }
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]
}

function median (values: number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50)
}

const MiB = 1024 * 1024
const ms = (v: number): string => Number.isNaN(v) ? 'n/a' : v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`
const mib = (v: number): string => `${(v / MiB).toFixed(0)} MiB`

function countBy (values: string[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const v of values) {
    out[v] = (out[v] ?? 0) + 1
  }
  return out
}

function formatCounts (counts: Record<string, number>): string {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1])
  return entries.length === 0 ? 'none' : entries.map(([k, n]) => `${k} ×${n}`).join('; ')
}

function budgetValue (name: string, value: number): string {
  return name.endsWith('Bytes') ? `${(value / MiB).toFixed(1)} MiB` : `${value}`
}

// ---------------------------------------------------------------------------
// one configuration

interface RunResult {
  limits: LimitsName
  limitsDescription: string
  serverLimits: ServerLimits
  hints: boolean
  mode: Mode
  clients: number
  workers: number
  server: { setup: ServerSetupResult, mark: ServerMark, report: ServerReport }
  workerSetups: ClientsSetupResult[]
  workerRuns: Array<Omit<ClientsRunResult, 'results'>>
  results: SyncResult[]
  /** Wall time of the timed phase in the runner, ms */
  wallMs: number
}

function roleOf (index: number): 'push' | 'pull' {
  return mode === 'both' ? (index % 2 === 0 ? 'push' : 'pull') : mode
}

async function runOne (limits: LimitsName, hints: boolean): Promise<RunResult> {
  const label = `${limits} limits, hints ${hints ? 'on' : 'off'}`
  console.error(`== ${label}: ${clientCount} clients in ${workerCount} workers, mode ${mode}`)
  const serverLimits = limitsOf(limits)
  const roles = Array.from({ length: clientCount }, (_, i) => roleOf(i))
  const server = new Child('server', join(here, 'server.ts'), args['server-cpu-prof'] == null ? [] : ['--cpu-prof', `--cpu-prof-dir=${resolve(args['server-cpu-prof'])}`])
  const workers = Array.from({ length: workerCount }, (_, w) => new Child(`clients-${w}`, join(here, 'clients.ts')))
  try {
    const serverSetup = await server.call<ServerSetupResult>('setup', { roles, limits: serverLimits })
    console.error(`server: ${serverSetup.storeBlocks} blocks (${mib(serverSetup.storeBytes)}) built in ${ms(serverSetup.buildMs)}, RSS ${mib(serverSetup.rss)}, at ${serverSetup.addr}`)
    const shares: ClientSpec[][] = workers.map(() => [])
    roles.forEach((role, index) => { shares[index % workerCount].push({ index, role }) })
    const workerSetups = await Promise.all(workers.map(async (worker, w) => worker.call<ClientsSetupResult>('setup', { clients: shares[w], addr: serverSetup.addr, dialConcurrency })))
    const connected = workerSetups.reduce((n, s) => n + s.connected, 0)
    const dialErrors: Record<string, number> = {}
    for (const s of workerSetups) {
      for (const [k, n] of Object.entries(s.dialErrors)) {
        dialErrors[k] = (dialErrors[k] ?? 0) + n
      }
    }
    console.error(`clients: ${connected}/${clientCount} connected (setup ${ms(Math.max(...workerSetups.map(s => s.setupMs)))}, dials ${ms(Math.max(...workerSetups.map(s => s.connectMs)))}); worker RSS ${workerSetups.map(s => mib(s.rss)).join(', ')}${connected < clientCount ? `; dial errors: ${formatCounts(dialErrors)}` : ''}`)
    // let identify and the connection upgrades settle before the clock starts
    await new Promise(resolve => setTimeout(resolve, 3000))
    const serverMark = await server.call<ServerMark>('mark')
    console.error(`server: ${serverMark.connections} connections, RSS ${mib(serverMark.rss)} at the start (after a GC)`)
    const started = performance.now()
    const runs = await Promise.all(workers.map(async worker => worker.call<ClientsRunResult>('run', { hints, budgetMs }, budgetMs + 300_000)))
    const wallMs = performance.now() - started
    const serverReport = await server.call<ServerReport>('report')
    const results = runs.flatMap(r => r.results).sort((a, b) => a.index - b.index)
    const ok = results.filter(r => r.ok).length
    console.error(`done in ${ms(wallMs)}: ${ok}/${results.length} syncs ok`)
    return {
      limits,
      limitsDescription: describeLimits(limits),
      serverLimits,
      hints,
      mode,
      clients: clientCount,
      workers: workerCount,
      server: { setup: serverSetup, mark: serverMark, report: serverReport },
      workerSetups,
      workerRuns: runs.map(({ results, ...rest }) => rest),
      results,
      wallMs
    }
  } finally {
    await Promise.all([server, ...workers].map(async c => c.close()))
  }
}

// ---------------------------------------------------------------------------
// report

function runLabel (r: RunResult): string {
  return `${r.limitsDescription}, hints ${r.hints ? 'on' : 'off'}`
}

function printTables (runs: RunResult[]): void {
  console.log('| limits (sessions / per address / per peer) | hints | clients (workers) | syncs ok / total | p50 / p99 / max latency (ok syncs) | timed phase | server CPU per ok sync (total) | server peak RSS (growth over baseline) | peak sessions |')
  console.log('| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const r of runs) {
    const ok = r.results.filter(s => s.ok)
    const lat = ok.map(s => s.ms).sort((a, b) => a - b)
    const rep = r.server.report
    const cpu = rep.cpuUserMs + rep.cpuSystemMs
    console.log(`| ${r.limitsDescription} | ${r.hints ? 'on' : 'off'} | ${r.clients} (${r.workers}) | ${ok.length} / ${r.results.length} | ${ms(percentile(lat, 50))} / ${ms(percentile(lat, 99))} / ${ms(lat[lat.length - 1] ?? NaN)} | ${ms(r.wallMs)} | ${ok.length === 0 ? 'n/a' : (cpu / ok.length).toFixed(1)} ms (${(cpu / 1000).toFixed(1)} s) | ${mib(rep.peakRss)} (+${mib(rep.peakRss - rep.baselineRss)}) | ${rep.peakSessions} |`)
  }
  console.log()
  console.log('By kind of sync (latency of the ok syncs; blocks, bytes and round trips: medians per ok sync):')
  console.log()
  console.log('| run | sync | ok / total | p50 / p99 / max | failed: median time | blocks moved | block KiB | stream KiB | round trips | duplicates |')
  console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const r of runs) {
    for (const role of ['push', 'pull'] as const) {
      const all = r.results.filter(s => s.role === role)
      if (all.length === 0) {
        continue
      }
      const ok = all.filter(s => s.ok)
      const failed = all.filter(s => !s.ok)
      const lat = ok.map(s => s.ms).sort((a, b) => a - b)
      const med = (pick: (s: SyncResult) => number | undefined): number => median(ok.map(pick).filter((v): v is number => v != null))
      console.log(`| ${runLabel(r)} | ${role} | ${ok.length} / ${all.length} | ${ms(percentile(lat, 50))} / ${ms(percentile(lat, 99))} / ${ms(lat[lat.length - 1] ?? NaN)} | ${failed.length === 0 ? 'n/a' : ms(median(failed.map(s => s.ms)))} | ${med(s => s.blocks)} | ${(med(s => s.blockBytes) / 1024).toFixed(1)} | ${(med(s => s.streamBytes) / 1024).toFixed(1)} | ${med(s => s.roundTrips)} | ${med(s => s.duplicates)} |`)
    }
  }
  console.log()
  const names = [...new Set(runs.flatMap(r => Object.keys(r.server.report.budgets)))]
  console.log('Server: peak use of each node-wide budget (`carMirror.stats()`, sampled every 50 ms) / its limit:')
  console.log()
  console.log(`| run | ${names.join(' | ')} |`)
  console.log(`| --- | ${names.map(() => '---:').join(' | ')} |`)
  for (const r of runs) {
    const b = r.server.report.budgets
    console.log(`| ${runLabel(r)} | ${names.map(n => b[n] == null ? 'n/a' : `${budgetValue(n, b[n].peak)} / ${budgetValue(n, b[n].limit)}`).join(' | ')} |`)
  }
  console.log()
  for (const r of runs) {
    const rep = r.server.report
    const failures = countBy(r.results.filter(s => !s.ok).map(s => `${s.role}: ${s.error ?? 'unknown'}`))
    const incomplete = r.results.filter(s => s.ok && s.role === 'pull' && s.complete !== true).length
    console.log(`- **${runLabel(r)}**: client failures: ${formatCounts(failures)}. ` +
      `Server sessions: ${formatCounts(rep.sessions.outcomes)}; not done: ${formatCounts(rep.sessions.errors)}. ` +
      `Server served sessions p50 / max ${ms(median(rep.sessions.doneMs))} / ${ms(rep.sessions.doneMs.length === 0 ? NaN : Math.max(...rep.sessions.doneMs))}. ` +
      `Server RSS: ${mib(r.server.setup.rss)} with the store before any client, ${mib(rep.baselineRss)} with ${r.server.mark.connections} connections (baseline), peak ${mib(rep.peakRss)}; peak heap ${mib(rep.peakHeapUsed)}, ArrayBuffers ${mib(rep.peakArrayBuffers)}. ` +
      `Server CPU ${(rep.cpuUserMs / 1000).toFixed(1)} s user + ${(rep.cpuSystemMs / 1000).toFixed(1)} s system over ${ms(rep.wallMs)}. ` +
      `Client workers: CPU ${r.workerRuns.map(w => `${(w.cpuMs / 1000).toFixed(1)} s`).join(', ')}; peak RSS ${r.workerRuns.map(w => mib(w.peakRss)).join(', ')}. ` +
      `Pushed v2 held whole by the server: ${rep.pushesComplete} / ${rep.pushesChecked}; ok pulls incomplete: ${incomplete}.`)
  }
}

const cpus = os.cpus()
const machine = `${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`
const version = sourceVersion(root)
const commit = version.commit ?? 'unknown'
const dirty = version.srcDirty
const command = `node ${relative(root, fileURLToPath(import.meta.url))} ${process.argv.slice(2).join(' ')}`.trim()

console.log(`# Many clients: ${clientCount} clients, one server`)
console.log()
console.log(`- machine: ${machine}`)
console.log(`- command: \`${command}\``)
console.log(`- source: commit ${commit}${dirty ? ' (src/ has uncommitted changes)' : ''}`)
console.log(`- tree per client: ${1 + DEFAULT_SHAPE.fanout + DEFAULT_SHAPE.fanout ** 2} blocks (dag-cbor root and ${DEFAULT_SHAPE.fanout} interior nodes, ${DEFAULT_SHAPE.fanout ** 2} raw leaves of 256-767 B); v2 changes ${DEFAULT_SHAPE.changed} leaves: ${1 + 2 * DEFAULT_SHAPE.changed} new blocks`)
console.log(`- mode ${mode}: ${mode === 'both' ? 'even clients push v2 (the server holds v1), odd clients pull v2 (they hold v1)' : `every client ${mode}s v2`}; every client is its own Helia node and libp2p node (own peer id), connected before the clock starts; one sync each, no retries`)
console.log()

const runs: RunResult[] = []
for (const limits of limitsList) {
  for (const hints of hintsList) {
    runs.push(await runOne(limits, hints))
  }
}
printTables(runs)
await mkdir(dirname(outFile), { recursive: true })
await writeFile(outFile, JSON.stringify({ machine, command, commit, srcDirty: dirty, date: new Date().toISOString(), runs }, null, 2))
console.error(`wrote ${relative(process.cwd(), outFile)}`)
