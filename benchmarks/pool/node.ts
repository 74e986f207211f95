/**
 * A child process of the CAR Pool benchmark (./index.ts): one Helia node at
 * a time (`createBenchNode` from ../methods.ts: Helia light, libp2p
 * WebSockets + noise + yamux + identify, CAR Mirror; no Bitswap, no block
 * broker), driven over IPC (../rpc.ts). The same script is a provider (it
 * listens on 127.0.0.1 and holds the dataset) or the client (it listens
 * nowhere, dials each provider through its shaper and runs the timed pull).
 *
 * The client's `pull` names one provider (`carMirror.pull(addrs, root)`, the
 * baseline) or several (`carMirror.pull(root, { providers, pool })`). For the
 * kill case it SIGKILLs the victim provider's process itself from
 * `onProgress`, once the block bytes received reach `kill.atBytes`: the
 * runner would see the count a round of IPC later. After the pull (untimed)
 * it walks the DAG offline on its raw store.
 */

import { mkdir, rm } from 'node:fs/promises'
import { multiaddr } from '@multiformats/multiaddr'
import { FsBlockstore } from 'blockstore-fs'
import { CID } from 'multiformats/cid'
import { walkDag } from '../../src/core/index.ts'
import { PROTOCOL_ID } from '../../src/index.ts'
import { createBenchNode, stopBenchNode } from '../methods.ts'
import { serve } from '../rpc.ts'
import { memoryStoreOf } from '../stores.ts'
import type { TransferStats } from '../../src/index.ts'
import type { BenchNode } from '../methods.ts'
import type { Blockstore } from 'interface-blockstore'

/** Where a node's blocks come from */
export type PoolStoreSpec =
  /** In memory, filled with the blocks of an on-disk store (loaded once per process) */
  | { kind: 'memory', from?: string }
  /** On disk: `shared` is a dataset's store, used as it is and never deleted; otherwise a fresh folder, deleted at teardown */
  | { kind: 'fs', path: string, shared?: boolean }

export interface NodeSetupResult {
  peerId: string
  /** TCP port of the WebSocket listener (providers) */
  port?: number
  storeBlocks: number
}

export interface PullArgs {
  root: string
  /** One entry per provider: its addresses (through its shaper, with /p2p/) */
  providers: string[][]
  pool?: { stallTimeout?: number, buckets?: number }
  /** SIGKILL process `pid` once this many block bytes have been received */
  kill?: { pid: number, atBytes: number }
  /** The DAG's size, for the check after the pull */
  expect: { blocks: number, bytes: number }
  budgetMs: number
}

/** A provider's figures from `stats.providers`, JSON-safe */
export interface ProviderResult {
  peer: string
  blocksReceived: number
  blockBytesReceived: number
  duplicateBlocks: number
  buckets: number
  error?: { name: string, message: string }
}

export interface PullResult {
  ok: boolean
  /** Thrown by the pull: `name: message` */
  error?: string
  /** From the call until it resolved, ms (in the client) */
  ms: number
  stats?: Omit<TransferStats, 'roots' | 'providers'> & { providers?: ProviderResult[] }
  /** Block bytes received (progress events) when the victim was killed, and when (ms into the pull) */
  killed?: { atBytes: number, atMs: number, error?: string }
  /** The client's CPU time during the pull, ms */
  cpuMs: number
  /** The offline walk of the DAG on the client's raw store after the pull */
  verify: { complete: boolean, blocks: number, bytes: number, missing: number }
}

let node: BenchNode | undefined
let store: Blockstore | undefined
let runDir: string | undefined

function current (): BenchNode {
  if (node == null) {
    throw new Error('no node: call setup first')
  }
  return node
}

/**
 * libp2p's connection monitor pings every connection every 10 s and aborts
 * it when the ping takes over 5 s (at first; the timeout adapts). On a link
 * a pull keeps full, the ping's stream waits behind the sender's buffered
 * blocks for longer than that, so a pull of the 200 MiB file at 50 Mbit/s
 * died after ~15 s. Unless `pingAbort` is set, this node keeps pinging but
 * never aborts a connection for it: `abortConnectionOnPingFailure`, set on
 * the running monitor, an internal of libp2p (createBenchNode takes no
 * libp2p options), checked so that a libp2p upgrade cannot skip it silently.
 */
function keepConnectionsOnPingFailure (n: BenchNode): void {
  const monitor = (n.libp2p as unknown as { components?: { connectionMonitor?: { abortConnectionOnPingFailure?: boolean } } }).components?.connectionMonitor
  if (monitor == null || typeof monitor.abortConnectionOnPingFailure !== 'boolean') {
    throw new Error('libp2p\'s connection monitor was not found where expected (components.connectionMonitor.abortConnectionOnPingFailure)')
  }
  monitor.abortConnectionOnPingFailure = false
}

async function setup (args: { listen: boolean, store: PoolStoreSpec, pingAbort?: boolean }): Promise<NodeSetupResult> {
  await teardown()
  let storeBlocks = 0
  if (args.store.kind === 'memory') {
    const memory = await memoryStoreOf(args.store.from)
    storeBlocks = memory.blocks
    store = memory.store
  } else {
    if (args.store.shared !== true) {
      await rm(args.store.path, { recursive: true, force: true })
      await mkdir(args.store.path, { recursive: true })
      runDir = args.store.path
    }
    const fs = new FsBlockstore(args.store.path)
    await fs.open()
    store = fs
  }
  node = await createBenchNode({ blockstore: store, listen: args.listen, bitswap: false, broker: false })
  if (args.pingAbort !== true) {
    keepConnectionsOnPingFailure(node)
  }
  const port = node.libp2p.getMultiaddrs().map(ma => Number(/\/tcp\/(\d+)/.exec(ma.toString())?.[1] ?? 0)).find(p => p > 0)
  return { peerId: node.libp2p.peerId.toString(), port, storeBlocks }
}

/** Dials each address and waits until identify says the peer speaks CAR Mirror */
async function connect (args: { addrs: string[] }): Promise<void> {
  const n = current()
  await Promise.all(args.addrs.map(async (addr) => {
    // not AbortSignal.timeout(): libp2p keeps a dial's signal on the
    // connection, which dies when it fires (15 s later, in the middle of a pull)
    const dialing = new AbortController()
    const timer = setTimeout(() => { dialing.abort(new Error(`dialling ${addr} took over 15 s`)) }, 15_000)
    const connection = await n.libp2p.dial(multiaddr(addr), { signal: dialing.signal }).finally(() => { clearTimeout(timer) })
    const deadline = Date.now() + 10_000
    while (true) {
      try {
        const peer = await n.libp2p.peerStore.get(connection.remotePeer)
        if (peer.protocols.includes(PROTOCOL_ID)) {
          return
        }
      } catch {
        // not in the peer store yet
      }
      if (Date.now() > deadline) {
        throw new Error(`${addr} did not identify within 10 s`)
      }
      await new Promise(resolve => setTimeout(resolve, 5))
    }
  }))
}

function errorText (err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
}

async function pull (args: PullArgs): Promise<PullResult> {
  const n = current()
  const root = CID.parse(args.root)
  const signal = AbortSignal.timeout(args.budgetMs)
  let received = 0
  let killed: PullResult['killed']
  const started = performance.now()
  const onProgress = (event: { type: string, detail?: unknown }): void => {
    if (event.type !== 'car-mirror:block:received') {
      return
    }
    received += (event.detail as { bytes: number }).bytes
    if (args.kill != null && killed == null && received >= args.kill.atBytes) {
      killed = { atBytes: received, atMs: performance.now() - started }
      try {
        process.kill(args.kill.pid, 'SIGKILL')
      } catch (err) {
        killed.error = errorText(err)
      }
    }
  }
  const cpu = process.cpuUsage()
  let stats: TransferStats | undefined
  let error: string | undefined
  try {
    const targets = args.providers.map(addrs => addrs.map(a => multiaddr(a)))
    stats = targets.length === 1
      ? await n.carMirror.pull(targets[0], root, { signal, onProgress })
      : await n.carMirror.pull(root, { providers: targets, pool: args.pool ?? {}, signal, onProgress })
  } catch (err) {
    error = errorText(err)
  }
  const ms = performance.now() - started
  const used = process.cpuUsage(cpu)

  // offline, on the raw store: nothing may be fetched now
  let blocks = 0
  let bytes = 0
  let missing = 0
  for await (const block of walkDag(store as Blockstore, [root], { readAhead: 8, onMissing: () => { missing++ } })) {
    blocks++
    bytes += block.bytes.byteLength
  }
  const complete = missing === 0 && blocks === args.expect.blocks && bytes === args.expect.bytes
  let result: PullResult['stats']
  if (stats != null) {
    const { roots, providers, ...rest } = stats
    result = {
      ...rest,
      providers: providers?.map(p => ({
        peer: p.peer,
        blocksReceived: p.blocksReceived,
        blockBytesReceived: p.blockBytesReceived,
        duplicateBlocks: p.duplicateBlocks,
        buckets: p.buckets.length,
        ...(p.error != null ? { error: { name: p.error.name, message: p.error.message } } : {})
      }))
    }
  }
  return {
    ok: error == null && complete,
    error,
    ms,
    stats: result,
    killed,
    cpuMs: (used.user + used.system) / 1000,
    verify: { complete, blocks, bytes, missing }
  }
}

async function teardown (): Promise<void> {
  const n = node
  node = undefined
  store = undefined
  if (n != null) {
    await stopBenchNode(n)
  }
  if (runDir != null) {
    await rm(runDir, { recursive: true, force: true })
    runDir = undefined
  }
}

serve({ setup, connect, pull, teardown }, teardown, 'pool-node')
