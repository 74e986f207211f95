/**
 * A client worker of the many-clients benchmark, a child process of
 * ./index.ts: it runs its share of the clients, each a Helia node of its own
 * (Helia light, libp2p WebSockets + noise + yamux + identify, its own peer id
 * and MemoryBlockstore, CAR Mirror without the block broker). Setup (untimed)
 * builds each client's tree (./tree.ts), stores version 1 (and version 2's
 * new blocks for a push client), starts the node and connects it to the
 * server. `run` starts every client's sync at once: a push client pushes v2,
 * a pull client pulls it; each sync is timed on its own, and the pull
 * clients' v2 is then checked offline.
 */

import { withLibp2pLight } from '@helia/libp2p'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { MemoryDatastore } from 'datastore-core/memory'
import { createHeliaLight } from 'helia'
import { walkDag } from '../../src/core/index.ts'
import { withCarMirror } from '../../src/index.ts'
import { serve } from '../rpc.ts'
import { buildClientTree } from './tree.ts'
import type { HeliaWithCarMirror, TransferStats } from '../../src/index.ts'
import type { Helia } from '@helia/interface'
import type { HeliaWithLibp2p } from '@helia/libp2p'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'

export interface ClientSpec {
  index: number
  role: 'push' | 'pull'
}

export interface ClientsSetup {
  clients: ClientSpec[]
  addr: string
  /** Dials in flight at once in this worker */
  dialConcurrency: number
}

export interface ClientsSetupResult {
  clients: number
  connected: number
  /** Dial failures: `${name}: ${message}` → count */
  dialErrors: Record<string, number>
  setupMs: number
  connectMs: number
  rss: number
}

export interface SyncResult {
  index: number
  role: 'push' | 'pull'
  ok: boolean
  /** From the call to its end (resolved or thrown), ms */
  ms: number
  /** `${err.name}: ${err.message}` when it failed */
  error?: string
  errorName?: string
  /** Blocks and block bytes that crossed (sent for a push, received for a pull) */
  blocks?: number
  blockBytes?: number
  /** Bytes on the client's stream, both ways */
  streamBytes?: number
  duplicates?: number
  roundTrips?: number
  /** Pull clients: whether they hold v2 whole afterwards (checked offline) */
  complete?: boolean
}

export interface ClientsRunResult {
  results: SyncResult[]
  cpuMs: number
  baselineRss: number
  peakRss: number
  wallMs: number
}

type ClientNode = Helia & HeliaWithLibp2p & HeliaWithCarMirror

interface Client {
  spec: ClientSpec
  node: ClientNode
  store: MemoryBlockstore
  v1Root: CID
  v2Root: CID
}

let clients: Client[] = []
let server: Multiaddr | undefined

async function setup (args: ClientsSetup): Promise<ClientsSetupResult> {
  const started = performance.now()
  server = multiaddr(args.addr)
  for (const spec of args.clients) {
    const tree = await buildClientTree(spec.index)
    const store = new MemoryBlockstore()
    for (const { cid, bytes } of spec.role === 'push' ? [...tree.v1, ...tree.added] : tree.v1) {
      store.put(cid, bytes)
    }
    const node = withCarMirror(withLibp2pLight(createHeliaLight({ blockstore: store, datastore: new MemoryDatastore() }), {
      addresses: { listen: [] },
      transports: [webSockets()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() },
      connectionGater: { denyDialMultiaddr: () => false }
    }), { broker: false }) as unknown as ClientNode
    await node.start()
    clients.push({ spec, node, store, v1Root: tree.v1Root, v2Root: tree.v2Root })
  }
  const connectStarted = performance.now()
  const dialErrors: Record<string, number> = {}
  let connected = 0
  let next = 0
  const dialer = async (): Promise<void> => {
    while (next < clients.length) {
      const client = clients[next++]
      try {
        await client.node.libp2p.dial(server as Multiaddr, { signal: AbortSignal.timeout(60_000) })
        connected++
      } catch (err) {
        const key = `${(err as Error).name}: ${(err as Error).message}`
        dialErrors[key] = (dialErrors[key] ?? 0) + 1
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, args.dialConcurrency) }, dialer))
  const now = performance.now()
  return { clients: clients.length, connected, dialErrors, setupMs: now - started, connectMs: now - connectStarted, rss: process.memoryUsage().rss }
}

function summarize (stats: TransferStats, role: 'push' | 'pull'): Partial<SyncResult> {
  return {
    blocks: role === 'push' ? stats.blocksSent : stats.blocksReceived,
    blockBytes: role === 'push' ? stats.blockBytesSent : stats.blockBytesReceived,
    streamBytes: stats.bytesSent + stats.bytesReceived,
    duplicates: stats.duplicateBlocks,
    roundTrips: stats.roundTrips
  }
}

async function sync (client: Client, hints: boolean, budgetMs: number): Promise<SyncResult> {
  const { spec, node, v1Root, v2Root } = client
  const options = { hints: hints ? [v1Root] : [], signal: AbortSignal.timeout(budgetMs) }
  const started = performance.now()
  try {
    const stats = spec.role === 'push'
      ? await node.carMirror.push(server as Multiaddr, v2Root, options)
      : await node.carMirror.pull(server as Multiaddr, v2Root, options)
    return { index: spec.index, role: spec.role, ok: true, ms: performance.now() - started, ...summarize(stats, spec.role) }
  } catch (err) {
    const ms = performance.now() - started
    const e = err as Error
    return { index: spec.index, role: spec.role, ok: false, ms, errorName: e.name, error: `${e.name}: ${e.message}` }
  }
}

async function run (args: { hints: boolean, budgetMs: number }): Promise<ClientsRunResult> {
  globalThis.gc?.()
  const baselineRss = process.memoryUsage.rss()
  let peakRss = baselineRss
  const timer = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage.rss()) }, 50)
  const cpu = process.cpuUsage()
  const started = performance.now()
  const results = await Promise.all(clients.map(async client => sync(client, args.hints, args.budgetMs)))
  const wallMs = performance.now() - started
  const used = process.cpuUsage(cpu)
  clearInterval(timer)
  peakRss = Math.max(peakRss, process.memoryUsage.rss())
  // untimed: does each pull client hold v2 whole? (offline, on its raw store)
  for (const result of results) {
    const client = clients.find(c => c.spec.index === result.index)
    if (client == null || result.role !== 'pull') {
      continue
    }
    let missing = 0
    for await (const block of walkDag(client.store, [client.v2Root], { readAhead: 8, onMissing: () => { missing++ } })) {
      void block
    }
    result.complete = missing === 0
  }
  return { results, cpuMs: (used.user + used.system) / 1000, baselineRss, peakRss, wallMs }
}

serve({ setup, run }, async () => {
  const all = clients
  clients = []
  await Promise.all(all.map(async c => c.node.stop()))
})
