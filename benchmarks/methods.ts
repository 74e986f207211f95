/**
 * The benchmark's nodes and the transfer methods they run: CAR Mirror
 * streaming pull and push (`helia.carMirror.pull/push`); Bitswap as a Helia
 * user gets it, `helia.pins.add(root)` on the receiver (Helia's depth-first
 * walker, one block at a time); a tuned Bitswap client, a breadth-first walk
 * keeping 32 `helia.blockstore.get` calls in flight with links read by
 * `LinkReader`; and a one-shot CAR of the whole DAG over one stream
 * (./one-shot-car.ts). With CAR Mirror's block broker (`withCarMirror`'s
 * `broker`) on a client that has no Bitswap, ordinary Helia calls fetch over
 * CAR Mirror: `helia.pins.add(root)` (one pull of the whole DAG from the
 * connected peer, then a local walk) and `unixfs(helia).cat(root, { path })`
 * of one file by path (or of a whole file by its CID), which the Bitswap-only
 * client runs too. The `both-*` methods run the same calls on a client that
 * has both brokers, Bitswap and CAR Mirror's, which Helia races for every
 * block it lacks: the blocks Bitswap moves besides CAR Mirror's are the
 * duplicates that costs ({@link bitswapCounter} counts what Bitswap received).
 *
 * Every node is Helia light with libp2p over WebSockets (noise, yamux),
 * identify and CAR Mirror (pushes allowed), offline otherwise; by default it
 * has Bitswap and CAR Mirror's broker is off, so Bitswap is its only block
 * broker (see {@link BenchNodeOptions}).
 */

import { createHash } from 'node:crypto'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { unixfs } from '@helia/unixfs'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { MemoryDatastore } from 'datastore-core/memory'
import { createHeliaLight } from 'helia'
import { CID } from 'multiformats/cid'
import { LinkReader, readBlock } from '../src/core/index.ts'
import { withCarMirror } from '../src/index.ts'
import { handleOneShotCar, pullCar, pushCar } from './one-shot-car.ts'
import type { BrokerStats, HeliaWithCarMirror, TransferStats } from '../src/index.ts'
import type { Helia } from '@helia/interface'
import type { HeliaWithLibp2p } from '@helia/libp2p'
import type { Identify } from '@libp2p/identify'
import type { Blockstore } from 'interface-blockstore'

export type BenchNode = Helia & HeliaWithLibp2p<{ identify: Identify }> & HeliaWithCarMirror

export const BITSWAP_PROTOCOL = '/ipfs/bitswap/1.2.0'

/** The methods compared, in table order */
export type MethodName = 'car-mirror' | 'car-mirror-no-hint' | 'one-shot-car' | 'bitswap-tuned' | 'bitswap-pins' | 'broker-pins' | 'both-pins' | 'broker-cat' | 'bitswap-cat' | 'both-cat'
export const METHOD_NAMES: MethodName[] = ['car-mirror', 'car-mirror-no-hint', 'one-shot-car', 'bitswap-tuned', 'bitswap-pins', 'broker-pins', 'both-pins', 'broker-cat', 'bitswap-cat', 'both-cat']

export const METHOD_LABELS: Record<MethodName, string> = {
  'car-mirror': 'CAR Mirror',
  'car-mirror-no-hint': 'CAR Mirror, no hint',
  'one-shot-car': 'one-shot CAR',
  'bitswap-tuned': 'Bitswap, tuned (32 gets)',
  'bitswap-pins': 'Bitswap, pins.add',
  'broker-pins': 'CAR Mirror broker, pins.add',
  'both-pins': 'Bitswap + CAR Mirror broker, pins.add',
  'broker-cat': 'CAR Mirror broker, cat',
  'bitswap-cat': 'Bitswap, cat',
  'both-cat': 'Bitswap + CAR Mirror broker, cat'
}

/** Methods whose receiver fetches through CAR Mirror's block broker alone (no Bitswap) */
export const BROKER_METHODS: MethodName[] = ['broker-pins', 'broker-cat']

/** Methods whose receiver has both block brokers, Bitswap and CAR Mirror's, raced by Helia for every block */
export const BOTH_METHODS: MethodName[] = ['both-pins', 'both-cat']

/** One transfer, run on the node that drives it */
export type Action =
  | { kind: 'cm-pull' | 'cm-push', addr: string, root: string, hints: string[] }
  | { kind: 'car-pull' | 'car-push', addr: string, root: string }
  | { kind: 'bitswap-pins', root: string }
  | { kind: 'bitswap-tuned', root: string, concurrency: number }
  /** `helia.pins.add(root)` on a node with CAR Mirror's broker (alone or next to Bitswap's) */
  | { kind: 'broker-pins', root: string }
  /** `unixfs(helia).cat(root, { path })` (no path: the root is the file), read to the end */
  | { kind: 'cat', root: string, path?: string }

/** What the driving node saw (JSON-safe) */
export interface ActionResult {
  ms: number
  /** Blocks that crossed the wire, when the method knows */
  blocks?: number
  blockBytes?: number
  /** Blocks that reached the receiver although it held them, when the method knows */
  duplicates?: number
  /** CAR Mirror: the client's round trips */
  roundTrips?: number
  /** CAR Mirror: Bloom bytes in status frames */
  bloomBytes?: number
  /** CAR Mirror: its own count of bytes written and read on its stream */
  streamBytesSent?: number
  streamBytesReceived?: number
  /** pins.add: ms until it yielded its first pinned CID (with CAR Mirror's broker: the pull of the whole DAG; the rest is Helia's local pinning walk) */
  firstMs?: number
  /** cat: the file's length and SHA-256 (hex), checked against the dataset's */
  catBytes?: number
  catSha256?: string
  /** What CAR Mirror's block broker did during the call (`carMirror.stats().broker`), when it did anything */
  broker?: BrokerStats
}

/** What a node's Bitswap received: messages, and the blocks in them (wanted or not) */
export interface BitswapCounts {
  messages: number
  blocks: number
  /** Block data bytes, without Bitswap's framing */
  blockBytes: number
}

interface BitswapNetwork {
  addEventListener(type: 'bitswap:message', listener: (evt: CustomEvent<{ message: { blocks?: Array<{ data: Uint8Array }> } }>) => void): void
}

/**
 * Counts what a started node's Bitswap receives, by listening to the
 * messages its network decodes (the event Bitswap's own want list listens
 * to); undefined when the node has no Bitswap, or @helia/bitswap's internals
 * changed shape. Reaches into `helia.blockBrokers` and the broker's
 * `bitswap.network`, neither public API: a benchmark's instrument only.
 */
export function bitswapCounter (node: BenchNode): BitswapCounts | undefined {
  const brokers = (node as unknown as { blockBrokers?: Array<{ name?: string, bitswap?: { network?: BitswapNetwork } }> }).blockBrokers
  const network = brokers?.find(b => b.name === 'bitswap')?.bitswap?.network
  if (typeof network?.addEventListener !== 'function') {
    return undefined
  }
  const counts: BitswapCounts = { messages: 0, blocks: 0, blockBytes: 0 }
  network.addEventListener('bitswap:message', (evt) => {
    counts.messages++
    for (const block of evt.detail?.message?.blocks ?? []) {
      counts.blocks++
      counts.blockBytes += block.data.byteLength
    }
  })
  return counts
}

export interface BenchNodeOptions {
  blockstore: Blockstore
  /** Listen on 127.0.0.1 (the server); a client does not listen, so nothing dials it except through the shaper */
  listen: boolean
  /** Add Bitswap (its protocol and its block broker); default true */
  bitswap?: boolean
  /** Add CAR Mirror's block broker (`withCarMirror`'s `broker`); default false, so Bitswap methods run on Bitswap alone */
  broker?: boolean
}

export async function createBenchNode (options: BenchNodeOptions): Promise<BenchNode> {
  const libp2pNode = withLibp2pLight(createHeliaLight({
    blockstore: options.blockstore,
    datastore: new MemoryDatastore()
  }), {
    addresses: { listen: options.listen ? ['/ip4/127.0.0.1/tcp/0/ws'] : [] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    connectionGater: { denyDialMultiaddr: () => false }
  })
  const helia = withCarMirror(options.bitswap === false ? libp2pNode : withBitswap(libp2pNode), {
    allowPush: () => true,
    broker: options.broker === true
  })
  await helia.start()
  await handleOneShotCar(helia)
  return helia as unknown as BenchNode
}

/** How long a benchmark process waits for its node to stop before it goes on without it */
const STOP_TIMEOUT_MS = 10_000

/** Stops `node`, giving up after STOP_TIMEOUT_MS (a node with stuck connections must not hold up the teardown) */
export async function stopBenchNode (node: BenchNode): Promise<void> {
  await Promise.race([node.stop(), new Promise(resolve => setTimeout(resolve, STOP_TIMEOUT_MS))])
}

function statsResult (stats: TransferStats, pushing: boolean): Omit<ActionResult, 'ms'> {
  return {
    blocks: pushing ? stats.blocksSent : stats.blocksReceived,
    blockBytes: pushing ? stats.blockBytesSent : stats.blockBytesReceived,
    duplicates: stats.duplicateBlocks,
    roundTrips: stats.roundTrips,
    bloomBytes: stats.bloomBytes,
    streamBytesSent: stats.bytesSent,
    streamBytesReceived: stats.bytesReceived
  }
}

/**
 * Fetches a DAG with Bitswap the fast way: a breadth-first walk that keeps
 * `concurrency` blockstore reads in flight (each a Bitswap want when the
 * block is missing), reading links with LinkReader.
 */
export async function tunedBitswapFetch (node: BenchNode, root: CID, concurrency: number, signal: AbortSignal): Promise<number> {
  const walk = new ConcurrentWalk(node, concurrency, signal)
  return walk.run(root)
}

/** A breadth-first walk with a fixed number of block reads in flight */
class ConcurrentWalk {
  private readonly node: BenchNode
  private readonly concurrency: number
  private readonly signal: AbortSignal
  private readonly linkReader: LinkReader
  private readonly seen = new Set<string>()
  private readonly queue: CID[] = []
  private head = 0
  private inFlight = 0
  private blocks = 0
  private failed = false
  private resolve: () => void = () => {}
  private reject: (err: Error) => void = () => {}

  constructor (node: BenchNode, concurrency: number, signal: AbortSignal) {
    this.node = node
    this.concurrency = concurrency
    this.signal = signal
    this.linkReader = new LinkReader({ loadCodec: node.getCodec })
  }

  async run (root: CID): Promise<number> {
    this.seen.add(root.toString())
    this.queue.push(root)
    await new Promise<void>((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
      this.pump()
    })
    return this.blocks
  }

  private pump (): void {
    while (!this.failed && this.inFlight < this.concurrency && this.head < this.queue.length) {
      this.start(this.queue[this.head++])
    }
  }

  private start (cid: CID): void {
    this.inFlight++
    this.fetch(cid).then(() => {
      this.inFlight--
      if (this.inFlight === 0 && this.head === this.queue.length) {
        this.resolve()
      } else {
        this.pump()
      }
    }, (err: Error) => {
      this.failed = true
      this.reject(err)
    })
  }

  private async fetch (cid: CID): Promise<void> {
    const bytes = await readBlock(this.node.blockstore, cid, { signal: this.signal })
    this.blocks++
    for (const link of await this.linkReader.links(cid, bytes)) {
      const key = link.toString()
      if (!this.seen.has(key)) {
        this.seen.add(key)
        this.queue.push(link)
      }
    }
  }
}

/** What the broker did between two readings of its counters; undefined when it did nothing */
function brokerDelta (before: BrokerStats, after: BrokerStats): BrokerStats | undefined {
  const delta = { ...after }
  for (const key of Object.keys(delta) as Array<keyof BrokerStats>) {
    delta[key] -= before[key]
  }
  return delta.retrieves === 0 && delta.pulls === 0 ? undefined : delta
}

/** Runs one transfer on the node that drives it; the signal ends it (a DNF) */
export async function runAction (node: BenchNode, action: Action, signal: AbortSignal): Promise<ActionResult> {
  const before = node.carMirror.stats().broker
  const result = await runTimed(node, action, signal)
  const broker = brokerDelta(before, node.carMirror.stats().broker)
  return broker == null ? result : { ...result, broker }
}

async function runTimed (node: BenchNode, action: Action, signal: AbortSignal): Promise<ActionResult> {
  const root = CID.parse(action.root)
  const started = performance.now()
  switch (action.kind) {
    case 'cm-pull': {
      const stats = await node.carMirror.pull(multiaddr(action.addr), root, { hints: action.hints.map(h => CID.parse(h)), signal })
      return { ms: performance.now() - started, ...statsResult(stats, false) }
    }
    case 'cm-push': {
      const stats = await node.carMirror.push(multiaddr(action.addr), root, { hints: action.hints.map(h => CID.parse(h)), signal })
      return { ms: performance.now() - started, ...statsResult(stats, true) }
    }
    case 'car-pull': {
      const car = await pullCar(node, multiaddr(action.addr), root, { signal })
      return { ms: performance.now() - started, blocks: car.blocks, blockBytes: car.blockBytes, duplicates: car.duplicates }
    }
    case 'car-push': {
      const car = await pushCar(node, multiaddr(action.addr), root, { signal })
      return { ms: performance.now() - started, blocks: car.blocks, blockBytes: car.blockBytes }
    }
    case 'bitswap-pins':
    case 'broker-pins': {
      let firstMs: number | undefined
      for await (const pinned of node.pins.add(root, { signal })) {
        void pinned
        firstMs ??= performance.now() - started
      }
      return { ms: performance.now() - started, firstMs }
    }
    case 'bitswap-tuned': {
      await tunedBitswapFetch(node, root, action.concurrency, signal)
      return { ms: performance.now() - started }
    }
    case 'cat': {
      const hash = createHash('sha256')
      let catBytes = 0
      for await (const chunk of unixfs(node).cat(root, { path: action.path === '' ? undefined : action.path, signal })) {
        hash.update(chunk)
        catBytes += chunk.byteLength
      }
      return { ms: performance.now() - started, catBytes, catSha256: hash.digest('hex') }
    }
    default:
      throw new Error(`unknown action ${JSON.stringify(action)}`)
  }
}
