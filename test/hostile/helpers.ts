/**
 * Helpers for the hostile-peer, fault and load suites (Node only): scripted
 * malicious peers speaking raw frames, store snapshots that check nothing
 * unverified or unrequested was written, and checks that no session is left
 * running.
 */

import v8 from 'node:v8'
import vm from 'node:vm'
import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import * as api from '../../src/index.ts'
import { PROTOCOL_ID, PUSH_PROTOCOL_SUFFIX } from '../../src/index.ts'
import { FramedStream, encodeLength } from '../../src/transport/framed-stream.ts'
import { cborBlock, rawBlock } from '../fixtures/dag.ts'
import { allBlocks, pseudoRandomBytes, seedOf, verifiesSha256 } from '../fixtures/dags.ts'
import type { Message } from '../../src/core/index.ts'
import type { Block } from '../fixtures/dag.ts'
import type { TestNode } from '../fixtures/nodes.ts'
import type { AbortOptions, Stream } from '@libp2p/interface'
import type { Blockstore } from 'interface-blockstore'
import type { CID } from 'multiformats/cid'

export const KiB = 1024
export const MiB = 1024 * KiB

/** Test nodes; createTestNode lifts libp2p's per-host inbound connection rate limit, which these suites exceed on purpose */
export { createTestNode as createNode } from '../fixtures/nodes.ts'

/** Names of every error class that src/index.ts exports: the typed errors a session may end with */
export const TYPED_ERRORS: ReadonlySet<string> = new Set(
  (Object.values(api) as unknown[])
    .filter((value): value is (abstract new (...args: any[]) => Error) => typeof value === 'function' && value.prototype instanceof Error)
    .map(value => value.name)
)

export { rejection } from '../fixtures/rejection.ts'

/** Checks that an error is one of helia-car-mirror's typed errors, and one of `names` when given */
export function expectTyped (err: Error, ...names: string[]): void {
  expect(TYPED_ERRORS.has(err.name), `${err.name} (${err.message}) is one of ${[...TYPED_ERRORS].join(', ')}`).to.be.true()
  if (names.length > 0) {
    expect(names, `${err.name}: ${err.message}`).to.include(err.name)
  }
}

/**
 * Installs, for the enclosing mocha suite, a process listener that records
 * unhandled rejections, and fails the test during which one fired.
 */
export function failOnUnhandledRejections (): void {
  const seen: unknown[] = []
  const listener = (reason: unknown): void => { seen.push(reason) }
  before(() => {
    process.on('unhandledRejection', listener)
  })
  after(() => {
    process.off('unhandledRejection', listener)
  })
  afterEach(async () => {
    // rejections surface after a turn or two of the event loop
    await new Promise(resolve => setTimeout(resolve, 20))
    const reasons = seen.splice(0)
    expect(reasons.map(reason => `${(reason as Error)?.name}: ${(reason as Error)?.message}`), 'unhandled rejections').to.deep.equal([])
  })
}

let gc: (() => void) | undefined

/** Memory use after V8's gc (exposed at run time: mocha is not started with --expose-gc) */
export async function settledMemory (): Promise<NodeJS.MemoryUsage> {
  if (gc == null) {
    v8.setFlagsFromString('--expose-gc')
    gc = vm.runInNewContext('gc') as () => void
  }
  for (let i = 0; i < 3; i++) {
    gc()
    await sleep(30)
  }
  return process.memoryUsage()
}

/** Resolves after `ms` */
export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

/** Polls `check` until it returns true or `ms` pass; returns its last answer */
export async function eventually (check: () => boolean | Promise<boolean>, ms: number = 5000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) {
      return true
    }
    await sleep(25)
  }
  return check()
}

// ---- stores ------------------------------------------------------------------

/** Every block in a store, by CID string */
export async function snapshot (store: Blockstore): Promise<Map<string, Block>> {
  return new Map((await allBlocks(store)).map(block => [block.cid.toString(), block]))
}

/**
 * Checks that every block in `store` hashes to its CID, and that the blocks
 * added since `before` all belong to `allowed` (the requested DAG). Returns
 * how many were added.
 */
export async function expectOnlyVerifiedDagBlocks (store: Blockstore, before: Map<string, Block>, allowed: Iterable<Block>): Promise<number> {
  const allowedKeys = new Set([...allowed].map(block => block.cid.multihash.bytes.join(',')))
  let added = 0
  for (const block of await allBlocks(store)) {
    expect(await verifiesSha256(block), `${block.cid} in the store hashes to its CID`).to.be.true()
    const previously = [...before.values()].some(held => held.cid.multihash.bytes.join(',') === block.cid.multihash.bytes.join(','))
    if (!previously) {
      added++
      expect(allowedKeys.has(block.cid.multihash.bytes.join(',')), `${block.cid} was written but is not in the requested DAG`).to.be.true()
    }
  }
  return added
}

// ---- DAGs --------------------------------------------------------------------

export interface BuiltDag {
  root: CID
  /** Every block, root first (breadth first) */
  blocks: Block[]
  bytes: number
}

/**
 * A dag-cbor tree with `leaves` raw leaves of `leafSize` pseudo-random bytes,
 * `fanout` links per interior node: e.g. 256 × 16 KiB is a 4 MiB DAG of 273
 * blocks.
 */
export async function bigTree (leaves: number, leafSize: number, fanout: number, salt: string): Promise<BuiltDag> {
  let level: Block[] = []
  for (let i = 0; i < leaves; i++) {
    level.push(await rawBlock(pseudoRandomBytes(leafSize, seedOf(`${salt}/leaf/${i}`))))
  }
  const levels: Block[][] = [level]
  let depth = 0
  while (level.length > 1) {
    const next: Block[] = []
    for (let i = 0; i < level.length; i += fanout) {
      next.push(await cborBlock({ salt, depth, i, links: level.slice(i, i + fanout).map(block => block.cid) }))
    }
    level = next
    levels.unshift(level)
    depth++
  }
  const blocks = levels.flat()
  return { root: blocks[0].cid, blocks, bytes: blocks.reduce((n, b) => n + b.bytes.byteLength, 0) }
}

/** `count` raw blocks that belong to no DAG */
export async function strayBlocks (count: number, salt: string): Promise<Block[]> {
  const blocks: Block[] = []
  for (let i = 0; i < count; i++) {
    blocks.push(await rawBlock(pseudoRandomBytes(100, seedOf(`${salt}/stray/${i}`))))
  }
  return blocks
}

// ---- raw protocol ------------------------------------------------------------

/** A frame: varint length prefix, then the body */
export function rawFrame (body: Uint8Array): Uint8Array {
  const prefix = encodeLength(body.byteLength)
  const out = new Uint8Array(prefix.byteLength + body.byteLength)
  out.set(prefix, 0)
  out.set(body, prefix.byteLength)
  return out
}

/** Sends bytes on a stream, waiting for it to drain */
export async function sendRaw (stream: Stream, bytes: Uint8Array, options: AbortOptions = {}): Promise<void> {
  if (!stream.send(bytes)) {
    await stream.onDrain(options)
  }
}

/** What a scripted peer read from the other side */
export interface Reading {
  messages: Message[]
  /** The error the stream or the decoder ended with, if any */
  error?: Error
  /** True when `ms` passed without the stream ending */
  timedOut: boolean
  /** How long the stream took to end, ms */
  ms: number
}

/** Reads messages until the stream ends, fails or `ms` pass, or `stop` says so */
export async function readUntilEnd (framed: FramedStream, ms: number, stop?: (message: Message, count: number) => boolean): Promise<Reading> {
  const started = Date.now()
  const messages: Message[] = []
  const signal = AbortSignal.timeout(ms)
  try {
    for await (const message of framed.messages({ signal })) {
      messages.push(message)
      if (stop?.(message, messages.length) === true) {
        return { messages, timedOut: false, ms: Date.now() - started }
      }
    }
    return { messages, timedOut: false, ms: Date.now() - started }
  } catch (err) {
    const timedOut = signal.aborted
    return { messages, error: timedOut ? undefined : err as Error, timedOut, ms: Date.now() - started }
  }
}

/** The error frames among messages */
export function errorFrames (messages: Message[]): Array<Extract<Message, { type: 'error' }>> {
  return messages.filter((m): m is Extract<Message, { type: 'error' }> => m.type === 'error')
}

/** Opens a CAR Mirror stream from `from` to `to`, framed with generous limits */
export async function openFramed (from: TestNode, to: TestNode): Promise<FramedStream> {
  const stream = await from.libp2p.dialProtocol(to.libp2p.getMultiaddrs(), PROTOCOL_ID)
  return new FramedStream(stream, { limits: { maxBlockSize: 16 * MiB, maxBloomBytes: 128 * MiB } })
}

/**
 * Replaces `node`'s CAR Mirror handler with `script`, which gets every
 * inbound stream framed. Errors of the script are kept in `errors` (the
 * scripts expect the honest side to reset them).
 */
export async function scriptServer (node: TestNode, script: (framed: FramedStream, stream: Stream) => Promise<void>): Promise<{ errors: Error[] }> {
  const errors: Error[] = []
  // both ids: pushes open their streams with the push id
  const protocols = [PROTOCOL_ID, `${PROTOCOL_ID}${PUSH_PROTOCOL_SUFFIX}`]
  await node.libp2p.unhandle(protocols)
  await node.libp2p.handle(protocols, async (stream) => {
    const framed = new FramedStream(stream, { limits: { maxBlockSize: 16 * MiB, maxBloomBytes: 128 * MiB } })
    try {
      await script(framed, stream)
    } catch (err) {
      errors.push(err as Error)
      stream.abort(err as Error)
    }
  }, { maxInboundStreams: 256 })
  return { errors }
}

/** The first message a scripted server reads */
export async function firstMessage (framed: FramedStream, ms: number = 5000): Promise<Message> {
  const next = await framed.messages({ signal: AbortSignal.timeout(ms) }).next()
  if (next.done === true) {
    throw new Error('the stream ended before the first message')
  }
  return next.value
}

// ---- session bookkeeping -----------------------------------------------------

/** CAR Mirror streams open on a node, both directions */
export function carMirrorStreams (node: TestNode): Stream[] {
  return node.libp2p.getConnections().flatMap(connection => connection.streams).filter(stream => stream.protocol.startsWith(PROTOCOL_ID))
}

/** Waits until `node` runs no session and has no CAR Mirror stream open */
export async function expectNoSessions (node: TestNode, ms: number = 5000): Promise<void> {
  const idle = (): boolean => node.carMirror.activeSessions.inbound === 0 && node.carMirror.activeSessions.outbound === 0
  await eventually(() => carMirrorStreams(node).length === 0 && idle(), ms)
  expect(carMirrorStreams(node).map(stream => `${stream.direction} ${stream.status}`), 'CAR Mirror streams left open').to.deep.equal([])
  expect(node.carMirror.activeSessions, 'sessions left running').to.deep.equal({ inbound: 0, outbound: 0 })
}

/** A MemoryBlockstore whose `put` fails from the (n+1)th call on */
export class FailingPutBlockstore extends MemoryBlockstore {
  puts = 0
  readonly failAfter: number

  constructor (failAfter: number) {
    super()
    this.failAfter = failAfter
  }

  put (key: CID, val: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>, options?: AbortOptions): ReturnType<MemoryBlockstore['put']> {
    if (++this.puts > this.failAfter) {
      return Promise.reject(new Error(`disk full (put ${this.puts})`)) as ReturnType<MemoryBlockstore['put']>
    }
    return super.put(key, val, options)
  }
}

/** A MemoryBlockstore whose `get` fails from the (n+1)th call on, once `armed` */
export class FailingGetBlockstore extends MemoryBlockstore {
  gets = 0
  armed = false
  readonly failAfter: number

  constructor (failAfter: number) {
    super()
    this.failAfter = failAfter
  }

  get (key: CID, options?: AbortOptions): ReturnType<MemoryBlockstore['get']> {
    if (this.armed && ++this.gets > this.failAfter) {
      // eslint-disable-next-line require-yield
      return (async function * () {
        throw new Error('I/O error reading the disk')
      })() as unknown as ReturnType<MemoryBlockstore['get']>
    }
    return super.get(key, options)
  }
}
