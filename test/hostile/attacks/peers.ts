/**
 * The test process's side of an attack: attacker peers that speak raw CAR
 * Mirror frames (each a libp2p node with its own peer id), a tally of what
 * they sent, and honest clients that pull small DAGs through the public API
 * the whole time.
 */

import { MemoryBlockstore } from 'blockstore-core/memory'
import { PROTOCOL_ID } from '../../../src/index.ts'
import { FramedStream } from '../../../src/transport/framed-stream.ts'
import { createTestNode } from '../../fixtures/nodes.ts'
import { MiB, rawFrame, sendRaw } from '../helpers.ts'
import type { Message } from '../../../src/core/index.ts'
import type { Block } from '../../fixtures/dag.ts'
import type { TestNode } from '../../fixtures/nodes.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * Most bytes a second all attacker sessions together write. Unpaced, four
 * sessions flooding 1 MiB frames at a server that kept reading them grew
 * the attacker's own process by gigabytes within a minute (the streams
 * kept taking bytes faster than the connection carried them); and the
 * honest client shares the attacker's process, whose event loop must stay
 * free enough to run it.
 */
export const ATTACKER_BYTES_PER_SECOND = 64 * MiB
/** Bytes the attacker may write at once, beyond its pace */
const ATTACKER_BURST_MS = 100

/** What the attacker did: bytes it wrote (frames and raw bytes, as libp2p payload) and sessions it opened */
export class Tally {
  bytesSent = 0
  sessions = 0
  /** When the bytes written so far will have gone out at ATTACKER_BYTES_PER_SECOND */
  private paceClock = 0
  /** How sessions ended, by what the attacker saw first (an error code, a reset, ...) */
  readonly endings = new Map<string, number>()
  /** Free-form figures an attack reports (e.g. the size of a frame) */
  readonly notes: Record<string, string | number> = {}

  ended (how: string): void {
    this.endings.set(how, (this.endings.get(how) ?? 0) + 1)
  }

  /** Waits while the attacker is ahead of its pace, counting `bytes` as due to go out; throws if `signal` aborts meanwhile */
  async pace (bytes: number, signal?: AbortSignal): Promise<void> {
    const now = Date.now()
    this.paceClock = Math.max(this.paceClock, now) + bytes * 1000 / ATTACKER_BYTES_PER_SECOND
    const ahead = this.paceClock - now - ATTACKER_BURST_MS
    if (ahead > 0) {
      await pause(ahead, signal)
    }
    signal?.throwIfAborted()
  }
}

/**
 * An attacker's session: a raw CAR Mirror stream with generous decoding
 * limits, whose writes are counted in the tally
 */
export class AttackSession {
  readonly framed: FramedStream
  private readonly tally: Tally
  private counted = 0

  constructor (framed: FramedStream, tally: Tally) {
    this.framed = framed
    this.tally = tally
  }

  get open (): boolean {
    return this.framed.stream.status === 'open' && this.framed.stream.writeStatus === 'writable'
  }

  /** Writes one message */
  async write (message: Message, signal?: AbortSignal): Promise<void> {
    try {
      await this.framed.write(message, { signal })
      await this.framed.flush({ signal })
    } finally {
      await this.count(signal)
    }
  }

  /** Writes an already encoded frame body (length prefix added) or raw bytes */
  async writeFrame (body: Uint8Array, signal?: AbortSignal): Promise<void> {
    await this.writeRaw(rawFrame(body), signal)
  }

  async writeRaw (bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
    await this.tally.pace(bytes.byteLength, signal)
    // the stream takes the bytes at once (then perhaps asks to wait for a drain)
    this.tally.bytesSent += bytes.byteLength
    await sendRaw(this.framed.stream, bytes, { signal })
  }

  /**
   * Reads messages until `stop` says so, the stream ends, or `signal` aborts.
   * Returns the messages and how the reading ended.
   */
  async read (signal: AbortSignal, stop: (message: Message) => boolean = () => false): Promise<{ messages: Message[], end: string }> {
    const messages: Message[] = []
    try {
      for await (const message of this.framed.messages({ signal })) {
        messages.push(message)
        if (message.type === 'error') {
          return { messages, end: `error/${message.code}` }
        }
        if (stop(message)) {
          return { messages, end: message.type }
        }
      }
      return { messages, end: 'closed' }
    } catch (err) {
      return { messages, end: signal.aborted ? 'aborted' : (err as Error).name }
    }
  }

  /** Resets the stream */
  abort (): void {
    this.framed.stream.abort(new Error('attack over'))
  }

  private async count (signal?: AbortSignal): Promise<void> {
    const bytes = this.framed.bytesWritten - this.counted
    this.counted = this.framed.bytesWritten
    this.tally.bytesSent += bytes
    await this.tally.pace(bytes, signal)
  }
}

/** Attacker peers: separate libp2p nodes (their own peer ids), connected to the server */
export class Attackers {
  readonly nodes: TestNode[] = []
  readonly tally = new Tally()
  private readonly target: Multiaddr[]
  private stopped = false

  constructor (target: Multiaddr[]) {
    this.target = target
  }

  /** Makes sure at least `count` attacker peers exist and are connected */
  async ensure (count: number): Promise<TestNode[]> {
    while (this.nodes.length < count) {
      if (this.stopped) {
        throw new Error('the attackers have stopped')
      }
      // CAR Mirror limits outbound streams per connection; an attacker sets its own limit as high as it likes
      const node = await createTestNode({ listen: false, maxOutboundStreams: 1024 })
      if (this.stopped) {
        await node.stop()
        throw new Error('the attackers have stopped')
      }
      this.nodes.push(node)
      await node.libp2p.dial(this.target, { signal: AbortSignal.timeout(10_000) })
    }
    return this.nodes.slice(0, count)
  }

  /** Opens a CAR Mirror stream from attacker peer `peer` (with the protocol id, or another such as the push id) */
  async open (peer: number, signal?: AbortSignal, protocol: string = PROTOCOL_ID): Promise<AttackSession> {
    const [node] = (await this.ensure(peer + 1)).slice(peer)
    const stream = await node.libp2p.dialProtocol(this.target, protocol, { signal })
    this.tally.sessions++
    return new AttackSession(new FramedStream(stream, { limits: { maxBlockSize: 16 * MiB, maxBloomBytes: 128 * MiB } }), this.tally)
  }

  async stop (): Promise<void> {
    this.stopped = true
    await Promise.all(this.nodes.splice(0).map(async node => node.stop()))
  }
}

/**
 * Runs `session` over and over until `signal` aborts: one attacker slot
 * that re-opens its session whenever the server ends it. A session that
 * ended within a second (refused, cut off) waits a second before the next,
 * so a slot opens at most about one session a second while the server
 * refuses it.
 */
export async function slot (signal: AbortSignal, tally: Tally, session: () => Promise<string>): Promise<void> {
  while (!signal.aborted) {
    const started = Date.now()
    let how: string
    try {
      how = await session()
    } catch (err) {
      how = signal.aborted ? 'aborted' : err instanceof Event ? `event ${err.type}` : String((err as Error)?.name ?? err)
    }
    tally.ended(how)
    if (Date.now() - started < 1000) {
      await pause(1000, signal)
    }
  }
}

/** Resolves after `ms`, or at once when `signal` aborts */
export async function pause (ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) {
    return
  }
  await new Promise<void>(resolve => {
    const timer = setTimeout(done, ms)
    function done (): void {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done)
  })
}

/** One honest pull: when it started, how long it took, how it ended */
export interface HonestPull {
  startedAt: number
  ms: number
  ok: boolean
  error?: string
}

/**
 * An honest client: a separate Helia node that pulls a small DAG from the
 * server every `intervalMs` with the public API (`carMirror.pull`), each
 * with a deadline of `timeoutMs`, and forgets the DAG afterwards so the next
 * pull of it transfers everything again.
 */
export class HonestClient {
  readonly node: TestNode
  readonly pulls: HonestPull[] = []
  /** The server's addresses */
  target: Multiaddr[] = []
  private readonly dags: Block[][]
  private timer?: ReturnType<typeof setInterval>
  private readonly inFlight = new Set<Promise<void>>()
  private next = 0

  /** The node's own store, under Helia's (whose delete also asks routers to stop providing, which an offline node has none of) */
  private readonly store: MemoryBlockstore

  private constructor (node: TestNode, store: MemoryBlockstore, dags: Block[][]) {
    this.node = node
    this.store = store
    this.dags = dags
  }

  /** A client of the given DAGs; set `target` before it pulls */
  static async create (dags: Block[][]): Promise<HonestClient> {
    const store = new MemoryBlockstore()
    return new HonestClient(await createTestNode({ listen: false, blockstore: store }), store, dags)
  }

  /** One pull, recorded */
  async pull (timeoutMs: number): Promise<HonestPull> {
    const dag = this.dags[this.next++ % this.dags.length]
    const startedAt = Date.now()
    let record: HonestPull
    try {
      await this.node.carMirror.pull(this.target, dag[0].cid, { signal: AbortSignal.timeout(timeoutMs) })
      const held = await Promise.all(dag.map(async block => this.node.blockstore.has(block.cid)))
      record = held.every(Boolean)
        ? { startedAt, ms: Date.now() - startedAt, ok: true }
        : { startedAt, ms: Date.now() - startedAt, ok: false, error: 'the pull resolved without every block' }
    } catch (err) {
      record = { startedAt, ms: Date.now() - startedAt, ok: false, error: `${(err as Error).name}: ${(err as Error).message}`.slice(0, 200) }
    }
    for (const block of dag) {
      await this.store.delete(block.cid)
    }
    this.pulls.push(record)
    return record
  }

  /**
   * Starts a pull every `intervalMs`, each with a deadline of `timeoutMs`.
   * The schedule follows the clock: when the process was too busy to start
   * a pull on time, it starts the missed ones at once.
   */
  start (intervalMs: number, timeoutMs: number): void {
    const startedAt = Date.now()
    let launched = 0
    const launch = (): void => {
      while (launched <= (Date.now() - startedAt) / intervalMs) {
        launched++
        const pull = this.pull(timeoutMs).then(() => {})
        this.inFlight.add(pull)
        void pull.finally(() => this.inFlight.delete(pull))
      }
    }
    launch()
    this.timer = setInterval(launch, Math.min(intervalMs, 100))
  }

  /** Starts no more pulls and waits for those under way */
  async stop (): Promise<void> {
    clearInterval(this.timer)
    await Promise.all([...this.inFlight])
  }

  async close (): Promise<void> {
    await this.stop()
    await this.node.stop()
  }
}
