/**
 * The server of the many-clients benchmark, a child process of ./index.ts:
 * one Helia node (Helia light, libp2p WebSockets on 127.0.0.1, noise, yamux,
 * identify) with CAR Mirror allowing every push, its session limits the
 * defaults unless the runner overrides them. Its store is filled
 * deterministically (./tree.ts): version 1 of every client's tree, and
 * version 2 of the pull clients' trees. During the timed phase it samples
 * its RSS and `carMirror.stats()` every 50 ms and counts the sessions it
 * served by outcome (`onSession`).
 */

import { withLibp2pLight } from '@helia/libp2p'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { MemoryDatastore } from 'datastore-core/memory'
import { createHeliaLight } from 'helia'
import { walkDag } from '../../src/core/index.ts'
import { withCarMirror } from '../../src/index.ts'
import { serve } from '../rpc.ts'
import { buildClientTree } from './tree.ts'
import type { HeliaWithCarMirror, ServedSession } from '../../src/index.ts'
import type { Helia } from '@helia/interface'
import type { HeliaWithLibp2p } from '@helia/libp2p'
import type { CID } from 'multiformats/cid'

export interface ServerLimits {
  maxSessions?: number
  maxSessionsPerPeer?: number
  maxSessionsPerAddress?: number
  /** Node-wide budget of local walks at once (default 2) */
  localWalks?: number
}

export interface ServerSetup {
  /** Clients and their roles: 'push' clients push v2 (the server holds v1), 'pull' clients pull v2 (the server holds both) */
  roles: Array<'push' | 'pull'>
  limits: ServerLimits
}

export interface ServerSetupResult {
  addr: string
  storeBlocks: number
  storeBytes: number
  buildMs: number
  /** RSS once the store is filled and the node started, before any client connected */
  rss: number
}

export interface ServerMark {
  /** RSS when the timed phase began (clients connected), after a GC */
  rss: number
  heapUsed: number
  connections: number
}

export interface SessionCounts {
  /** `${kind} ${outcome}` → sessions */
  outcomes: Record<string, number>
  /** `${kind} ${outcome}: ${error name}: ${message}` → sessions, for sessions that did not end 'done' */
  errors: Record<string, number>
  /** Durations of the sessions that ended 'done', ms (from their first frame) */
  doneMs: number[]
}

export interface ServerReport {
  cpuUserMs: number
  cpuSystemMs: number
  wallMs: number
  baselineRss: number
  peakRss: number
  peakHeapUsed: number
  peakArrayBuffers: number
  /** getrusage's lifetime peak RSS */
  maxRss: number
  /** Peak of `stats().sessions.inbound` and of each budget's `used`, with its limit */
  peakSessions: number
  budgets: Record<string, { peak: number, limit: number }>
  sessions: SessionCounts
  connections: number
  /** Push clients whose v2 the server now holds whole */
  pushesComplete: number
  pushesChecked: number
}

type ServerNode = Helia & HeliaWithLibp2p & HeliaWithCarMirror

let node: ServerNode | undefined
let rawStore: MemoryBlockstore | undefined
let pushRoots: CID[] = []
let counts: SessionCounts = { outcomes: {}, errors: {}, doneMs: [] }

class Sampler {
  peakRss = 0
  peakHeapUsed = 0
  peakArrayBuffers = 0
  peakSessions = 0
  budgets: Record<string, { peak: number, limit: number }> = {}
  private timer?: NodeJS.Timeout

  start (): void {
    this.sample()
    this.timer = setInterval(() => { this.sample() }, 50)
  }

  sample (): void {
    const usage = process.memoryUsage()
    this.peakRss = Math.max(this.peakRss, usage.rss)
    this.peakHeapUsed = Math.max(this.peakHeapUsed, usage.heapUsed)
    this.peakArrayBuffers = Math.max(this.peakArrayBuffers, usage.arrayBuffers)
    if (node != null) {
      const stats = node.carMirror.stats()
      this.peakSessions = Math.max(this.peakSessions, stats.sessions.inbound)
      for (const [name, { used, limit }] of Object.entries(stats.budgets)) {
        const entry = this.budgets[name] ??= { peak: 0, limit }
        entry.peak = Math.max(entry.peak, used)
        entry.limit = limit
      }
    }
  }

  stop (): void {
    if (this.timer != null) {
      clearInterval(this.timer)
      this.timer = undefined
      this.sample()
    }
  }
}

let sampler = new Sampler()
let cpuAtMark: NodeJS.CpuUsage | undefined
let startedAt = 0
let baselineRss = 0

function onSession (session: ServedSession): void {
  const key = `${session.kind} ${session.outcome}`
  counts.outcomes[key] = (counts.outcomes[key] ?? 0) + 1
  if (session.outcome === 'done') {
    counts.doneMs.push(session.durationMs)
  } else {
    const err = session.error
    const why = `${key}: ${err?.name ?? 'no error'}: ${err?.message ?? ''}`
    counts.errors[why] = (counts.errors[why] ?? 0) + 1
  }
}

async function setup (args: ServerSetup): Promise<ServerSetupResult> {
  const started = performance.now()
  const blockstore = new MemoryBlockstore()
  rawStore = blockstore
  let storeBlocks = 0
  let storeBytes = 0
  pushRoots = []
  for (let i = 0; i < args.roles.length; i++) {
    const tree = await buildClientTree(i)
    const blocks = args.roles[i] === 'pull' ? [...tree.v1, ...tree.added] : tree.v1
    for (const { cid, bytes } of blocks) {
      blockstore.put(cid, bytes)
      storeBlocks++
      storeBytes += bytes.byteLength
    }
    if (args.roles[i] === 'push') {
      pushRoots.push(tree.v2Root)
    }
  }
  const buildMs = performance.now() - started
  const clients = args.roles.length
  const libp2pNode = withLibp2pLight(createHeliaLight({ blockstore, datastore: new MemoryDatastore() }), {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    // a server meant for many clients on one address: libp2p's own defaults
    // (300 connections, 5 new connections per second per host, 10 upgrades
    // at once) would refuse most clients before CAR Mirror sees them
    connectionManager: {
      maxConnections: clients + 256,
      inboundConnectionThreshold: clients + 256,
      maxIncomingPendingConnections: 256
    }
  })
  node = withCarMirror(libp2pNode, {
    allowPush: () => true,
    broker: false,
    onSession,
    maxSessions: args.limits.maxSessions,
    maxSessionsPerPeer: args.limits.maxSessionsPerPeer,
    maxSessionsPerAddress: args.limits.maxSessionsPerAddress,
    budgets: args.limits.localWalks == null ? undefined : { localWalks: args.limits.localWalks }
  }) as unknown as ServerNode
  await node.start()
  const addr = node.libp2p.getMultiaddrs().map(ma => ma.toString()).find(a => a.includes('/ws'))
  if (addr == null) {
    throw new Error('the server has no WebSocket address')
  }
  globalThis.gc?.()
  return { addr, storeBlocks, storeBytes, buildMs, rss: process.memoryUsage().rss }
}

function current (): ServerNode {
  if (node == null) {
    throw new Error('no node: call setup first')
  }
  return node
}

async function mark (): Promise<ServerMark> {
  globalThis.gc?.()
  counts = { outcomes: {}, errors: {}, doneMs: [] }
  sampler = new Sampler()
  const usage = process.memoryUsage()
  baselineRss = usage.rss
  cpuAtMark = process.cpuUsage()
  startedAt = performance.now()
  sampler.start()
  return { rss: usage.rss, heapUsed: usage.heapUsed, connections: current().libp2p.getConnections().length }
}

async function report (): Promise<ServerReport> {
  sampler.stop()
  const cpu = process.cpuUsage(cpuAtMark)
  const wallMs = performance.now() - startedAt
  const maxRss = process.resourceUsage().maxRSS * 1024
  const n = current()
  // untimed: does the server hold every pushed v2 whole? (offline, on its own store)
  let pushesComplete = 0
  for (const root of pushRoots) {
    let missing = 0
    for await (const block of walkDag(rawStore ?? n.blockstore, [root], { readAhead: 8, onMissing: () => { missing++ } })) {
      void block
    }
    if (missing === 0) {
      pushesComplete++
    }
  }
  return {
    cpuUserMs: cpu.user / 1000,
    cpuSystemMs: cpu.system / 1000,
    wallMs,
    baselineRss,
    peakRss: sampler.peakRss,
    peakHeapUsed: sampler.peakHeapUsed,
    peakArrayBuffers: sampler.peakArrayBuffers,
    maxRss,
    peakSessions: sampler.peakSessions,
    budgets: sampler.budgets,
    sessions: counts,
    connections: n.libp2p.getConnections().length,
    pushesComplete,
    pushesChecked: pushRoots.length
  }
}

serve({
  setup,
  mark,
  report,
  stats: async () => ({ connections: current().libp2p.getConnections().length, rss: process.memoryUsage().rss })
}, async () => {
  sampler.stop()
  await node?.stop()
  node = undefined
})
