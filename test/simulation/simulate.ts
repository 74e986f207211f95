/**
 * Runs one seeded scenario: a SenderSession and a ReceiverSession (wired as
 * src/car-mirror.ts wires them for a pull or a push) talk through the
 * simulated duplex, every message going through the wire codec; then the
 * outcome is checked against an oracle computed from the scenario alone.
 * A run with a reset or a corrupted frame is followed by a clean retry.
 */

import { MemoryBlockstore } from 'blockstore-core/memory'
import { concat } from 'uint8arrays/concat'
import { equals } from 'uint8arrays/equals'
import { DEFAULT_SMALL_STORE_BLOCKS } from '../../src/constants.ts'
import { BloomFilter } from '../../src/core/bloom/bloom-filter.ts'
import { Budget } from '../../src/core/budget.ts'
import { bloomItem, bloomOf, decodeMessage, encodeMessage } from '../../src/core/messages.ts'
import { ReceiverSession, isRemoteError, remoteError } from '../../src/core/receiver.ts'
import { SenderSession } from '../../src/core/sender.ts'
import { walkHeldCids } from '../../src/core/walk.ts'
import * as errors from '../../src/errors.ts'
import { BlocksNotAvailableError, ProtocolError, SessionClosedError } from '../../src/errors.ts'
import { randomSource } from '../fixtures/random.ts'
import { isIdentity, mhKey } from './dags.ts'
import { StreamResetError, duplex, frame } from './net.ts'
import { describeScenario, scenario } from './scenario.ts'
import { Scheduler } from './scheduler.ts'
import type { End } from './net.ts'
import type { Faults, Scenario } from './scenario.ts'
import type { RunResult } from './scheduler.ts'
import type { ErrorCode, Message } from '../../src/core/messages.ts'
import type { Block } from '../fixtures/dag.ts'
import type { AbortOptions } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'

/** Virtual time (run-session.ts: ms) a receiver that said done waits for the sender's close before it resets the stream */
const DONE_GRACE = 5_000
/** Virtual time a failing side waits to write its error frame, then for the peer's close */
const ERROR_WRITE_TIMEOUT = 1_000
const ERROR_GRACE = 250
/** Events after which a session counts as livelocked */
const MAX_EVENTS = 200_000
/** Error names a session may end with: the project's typed errors and a stream reset */
const TYPED_ERRORS = new Set([...Object.values(errors).map(type => type.name), StreamResetError.name])

/** A MemoryBlockstore whose calls take a seeded virtual time (or none: then they complete synchronously) */
class SlowStore {
  readonly inner = new MemoryBlockstore()
  /** What the store holds, by multihash: the blocks put at the start and every later `put` */
  readonly contents = new Map<string, Uint8Array>()
  /** The multihashes of what it holds (Bloom items) */
  readonly multihashes = new Map<string, Uint8Array>()
  private readonly scheduler: Scheduler
  private readonly random: () => number
  private readonly maxDelay: number

  constructor (scheduler: Scheduler, random: () => number, maxDelay: number) {
    this.scheduler = scheduler
    this.random = random
    this.maxDelay = maxDelay
  }

  get (cid: CID, options?: AbortOptions): Generator<Uint8Array> | AsyncGenerator<Uint8Array> {
    if (this.maxDelay === 0) {
      return this.inner.get(cid, options)
    }
    const slow = async function * (store: SlowStore): AsyncGenerator<Uint8Array> {
      await store.delay()
      yield * store.inner.get(cid, options)
    }
    return slow(this)
  }

  has (cid: CID, options?: AbortOptions): boolean | Promise<boolean> {
    return this.maxDelay === 0 ? this.inner.has(cid, options) : this.delay().then(() => this.inner.has(cid, options))
  }

  put (cid: CID, bytes: Uint8Array, options?: AbortOptions): CID | Promise<CID> {
    if (this.maxDelay === 0) {
      return this.putNow(cid, bytes, options)
    }
    return this.delay().then(() => this.putNow(cid, bytes, options))
  }

  /** Puts a block at once (setting up a scenario, or a put whose delay is over) */
  putNow (cid: CID, bytes: Uint8Array, options?: AbortOptions): CID {
    // a copy: the caller may reuse its buffer
    this.contents.set(mhKey(cid), bytes.slice())
    this.multihashes.set(mhKey(cid), cid.multihash.bytes)
    return this.inner.put(cid, bytes, options) as CID
  }

  getAll (options?: AbortOptions): ReturnType<MemoryBlockstore['getAll']> {
    return this.inner.getAll(options)
  }

  private async delay (): Promise<void> {
    await this.scheduler.sleep(Math.floor(this.random() * (this.maxDelay + 1)))
  }
}

/** One side of the session */
interface Side {
  name: 'sender' | 'receiver'
  end: End
}

/** What a session did on the wire, as seen by the simulation */
export interface SessionRecord {
  result: RunResult
  /** For a session that did not end: what each side was doing */
  hung?: string
  /** The receiver held everything at the start and opened no stream (pull) */
  noStream: boolean
  sender: PromiseSettledResult<void>
  receiver: PromiseSettledResult<void>
  senderSession?: SenderSession
  receiverSession?: ReceiverSession
  frames: number
  wireBytes: { toReceiver: number, toSender: number }
  blockBytes: number
  bloomBytes: number
  /** The largest Bloom the receiver wrote */
  maxBloom: number
  /** CIDs of the blocks the sender wrote */
  sentBlocks: CID[]
  /** Bytes of blocks a pushing sender wrote before it read the status with `rh`, roots and asked-for blocks excepted */
  coldCallBytes: number
  events: number
  time: number
}

/** Carries messages between the sides through the wire codec and applies the scenario's faults */
class Wire {
  readonly record: Omit<SessionRecord, 'result' | 'hung' | 'noStream' | 'sender' | 'receiver' | 'events' | 'time'>
  /** The sender has read a status with `rh` */
  rootsHeld = false
  readonly exempt = new Set<string>()
  private readonly s: Scenario
  private readonly faults: Faults
  private readonly scheduler: Scheduler
  private readonly random: () => number
  private readonly log?: (line: string) => void
  private readonly held: () => Iterable<Uint8Array>
  private blockIndex = 0
  private nosyDone = false

  constructor (s: Scenario, faults: Faults, scheduler: Scheduler, random: () => number, held: () => Iterable<Uint8Array>, log?: (line: string) => void) {
    this.s = s
    this.held = held
    this.faults = faults
    this.scheduler = scheduler
    this.random = random
    this.log = log
    this.record = { frames: 0, wireBytes: { toReceiver: 0, toSender: 0 }, blockBytes: 0, bloomBytes: 0, maxBloom: 0, sentBlocks: [], coldCallBytes: 0 }
    for (const root of s.roots) {
      this.exempt.add(root.toString())
    }
  }

  async send (side: Side, original: Message): Promise<void> {
    const message = side.name === 'receiver' ? this.tamper(original) : original
    let body = concat(encodeMessage(message))
    if (message.type === 'block') {
      this.blockIndex++
      if (this.faults.corruptBlock === this.blockIndex && message.bytes.byteLength > 0) {
        body = body.slice()
        body[message.cid.bytes.byteLength + Math.floor(this.random() * message.bytes.byteLength)] ^= 0x01
        this.log?.('   (the simulation corrupts this block on the wire)')
      }
    }
    if (this.faults.resetAtFrame === ++this.record.frames) {
      this.log?.(`${this.scheduler.now} ${side.name}: the simulation resets the stream`)
      side.end.abort()
      throw new StreamResetError('the simulation reset the stream')
    }
    if (message.type === 'block') {
      this.record.sentBlocks.push(message.cid)
      this.record.blockBytes += message.bytes.byteLength
      if (this.s.mode === 'push' && !this.rootsHeld && !this.exempt.has(message.cid.toString())) {
        this.record.coldCallBytes += message.bytes.byteLength
      }
    }
    if ((message.type === 'status' || message.type === 'pull') && message.bloom != null) {
      this.record.bloomBytes += message.bloom.bytes.byteLength
      this.record.maxBloom = Math.max(this.record.maxBloom, message.bloom.bytes.byteLength)
    }
    const bytes = frame(body)
    this.record.wireBytes[side.name === 'sender' ? 'toReceiver' : 'toSender'] += bytes.byteLength
    this.log?.(`${this.scheduler.now} ${side.name} writes ${describe(message)}`)
    await side.end.write(bytes)
  }

  async receive (side: Side): Promise<Message | undefined> {
    const body = await side.end.read()
    if (body == null) {
      this.log?.(`${this.scheduler.now} ${side.name} reads the end of the stream`)
      return undefined
    }
    const message = decodeMessage(body)
    this.log?.(`${this.scheduler.now} ${side.name} reads ${describe(message)}`)
    return message
  }

  /** The receiver's lies: a wrong Bloom, wants outside the DAG */
  private tamper (message: Message): Message {
    if (message.type !== 'pull' && message.type !== 'status') {
      return message
    }
    let out = message
    const bloom = message.bloom
    if (this.faults.bloom != null && bloom != null && bloom.bytes.byteLength > 0) {
      let lie: BloomFilter
      if (this.faults.bloom === 'saturate') {
        lie = new BloomFilter(new Uint8Array(bloom.bytes.byteLength).fill(0xff), bloom.hashCount)
      } else if (this.faults.bloom === 'extra') {
        lie = new BloomFilter(bloom.bytes.slice(), bloom.hashCount)
        this.faults.extraItems.forEach(cid => { lie.add(bloomItem(cid)) })
      } else {
        // everything the receiver's store holds, in a Bloom far too small for it
        lie = new BloomFilter(new Uint8Array(1 + Math.floor(this.random() * 4)), 1 + Math.floor(this.random() * 3))
        for (const item of this.held()) {
          lie.add(item)
        }
      }
      out = { ...out, bloom: lie }
    }
    if (this.faults.nosy.length > 0 && !this.nosyDone) {
      this.nosyDone = true
      out = { ...out, wants: [...out.wants, ...this.faults.nosy] }
    }
    return out
  }
}

function bloomText (bloom?: BloomFilter | null): string {
  if (bloom === undefined) {
    return 'unchanged'
  }
  return bloom === null ? 'clear' : `${bloom.bytes.byteLength}B`
}

function describe (m: Message): string {
  const cids = (list: CID[]): string => `[${list.map(String).join(' ')}]`
  switch (m.type) {
    case 'block': return `block ${m.cid} (${m.bytes.byteLength} B)`
    case 'pull': return `pull rs=${cids(m.roots)} sr=${cids(m.wants)} bloom=${m.bloom?.bytes.byteLength ?? 0}B`
    case 'push': return `push rs=${cids(m.roots)} hs=${cids(m.hints)}`
    case 'status': return `status sr=${cids(m.wants)} bloom=${bloomText(m.bloom)}${m.rootsHeld === true ? ' rh' : ''}`
    case 'error': return `error ${m.code} "${m.message}" cs=${cids(m.cids)}`
    default: {
      const { type, ...rest } = m as { type: string, cids?: CID[] }
      return `${type} ${JSON.stringify(rest, (_, v: unknown) => typeof v === 'object' && v != null && 'multihash' in v ? String(v) : v)}`
    }
  }
}

/** The code of the error frame a side writes when it fails, as src/transport/run-session.ts chooses it */
function errorCode (err: Error, role: Side['name']): ErrorCode | undefined {
  if (isRemoteError(err)) {
    return undefined
  }
  switch (err.name) {
    case 'UnknownCodecError': case 'InvalidBlockError':
      return role === 'sender' ? 'internal' : 'verification'
    case 'HashMismatchError': case 'UnsupportedHashError':
      return 'verification'
    case 'LimitExceededError': return 'limit'
    case 'ProtocolError': return 'protocol'
    case 'BlocksNotAvailableError': return 'not-found'
    case 'SessionRefusedError': case 'SessionClosedError': case 'SessionTimeoutError': case 'RemoteError': case 'AbortError': case 'StreamResetError':
      return undefined
    default: return 'internal'
  }
}

export interface Stores {
  sender: SlowStore
  receiver: SlowStore
}

/** Runs one session between the stores, with `faults` (none: a clean run) */
async function runSession (s: Scenario, stores: Stores, scheduler: Scheduler, random: () => number, faults: Faults, resuming: boolean, log?: (line: string) => void): Promise<SessionRecord> {
  const [senderEnd, receiverEnd] = duplex(scheduler, random, s.toReceiver, s.toSender)
  const wire = new Wire(s, faults, scheduler, random, () => stores.receiver.multihashes.values(), log)
  const sender: Side = { name: 'sender', end: senderEnd }
  const receiver: Side = { name: 'receiver', end: receiverEnd }
  const senderAbort = new AbortController()
  const receiverAbort = new AbortController()
  let senderSession: SenderSession | undefined
  let receiverSession: ReceiverSession | undefined
  let noStream = false
  const readAhead = 1 + Math.floor(random() * 16)
  // as src/car-mirror.ts builds them, with the scenario's throttling budgets (a walk budget of 1 on each node)
  const t = s.throttle
  const senderInit = {
    blockstore: stores.sender,
    readAhead,
    maxCidsPerMessage: s.maxCidsPerMessage,
    maxReadAheadBytes: t?.maxReadAheadBytes,
    budgets: t == null ? undefined : { readAheadBytes: new Budget('readAheadBytes', t.readAheadBytes), queuedWants: new Budget('queuedWants', t.queuedWants), localWalks: new Budget('localWalks', 1) }
  }
  const receiverInit = { blockstore: stores.receiver, maxCidsPerMessage: s.maxCidsPerMessage, maxStragglerRounds: 1000, walkBudget: t == null ? undefined : new Budget('localWalks', 1) }

  /** Like failSession: an error frame (unless the peer caused the failure), close, a short grace, then a reset */
  const fail = async (side: Side, err: Error): Promise<void> => {
    const code = errorCode(err, side.name)
    if (code != null && side.end.writable) {
      const cids = err instanceof BlocksNotAvailableError ? err.cids.slice(0, s.maxCidsPerMessage ?? 10_000) : []
      await Promise.race([wire.send(side, { type: 'error', code, message: err.message.slice(0, 512), cids }).catch(() => {}), scheduler.sleep(ERROR_WRITE_TIMEOUT)])
      side.end.closeWrite()
      await Promise.race([side.end.remoteEnd(), scheduler.sleep(ERROR_GRACE)])
    }
    side.end.abort()
  }
  const guarded = async (side: Side, abort: AbortController, run: () => Promise<void>): Promise<void> => {
    try {
      await run()
    } catch (err) {
      log?.(`${scheduler.now} ${side.name} fails: ${(err as Error).name}: ${(err as Error).message}`)
      abort.abort(err)
      await fail(side, err as Error)
      throw err
    }
  }

  /** Like runSender in src/transport/run-session.ts */
  const runSender = async (session: SenderSession, first: Message[]): Promise<void> => {
    senderSession = session
    const writing = (async () => {
      for (const message of first) {
        await wire.send(sender, message)
      }
      for await (const message of session.messages({ signal: senderAbort.signal })) {
        await wire.send(sender, message)
      }
      sender.end.closeWrite()
    })()
    const writeFailed = new AbortController()
    writing.catch(err => {
      writeFailed.abort(err)
      sender.end.interrupt(err)
    })
    const roomSignal = AbortSignal.any([senderAbort.signal, writeFailed.signal])
    const room = async (): Promise<void> => {
      if (session.takeRoomForWants()) {
        return
      }
      await Promise.race([session.roomForWants(roomSignal).catch(() => {}), sender.end.remoteEnd()])
    }
    try {
      let message: Message | undefined
      await room()
      while ((message = await wire.receive(sender)) != null) {
        if (message.type === 'error') {
          throw remoteError(message.code, message.message, message.cids)
        }
        await session.receive(message, { signal: senderAbort.signal })
        if (message.type === 'status') {
          message.wants.forEach(cid => wire.exempt.add(cid.toString()))
          wire.rootsHeld ||= message.rootsHeld === true
        }
        if (session.done) {
          break
        }
        await room()
      }
      if (!session.done) {
        throw new SessionClosedError('The receiver closed the stream before it said it was done')
      }
      // the receiver holds everything: a write cut off now changes nothing
      await writing.catch(() => {})
    } catch (err) {
      writing.catch(() => {})
      throw err
    } finally {
      session.close()
    }
  }

  /**
   * Like runReceiver in src/transport/run-session.ts: replies are written by
   * a task of their own (reading never waits for them); after done it drops
   * what it reads, and resets the stream after a grace
   */
  const runReceiver = async (session: ReceiverSession, first: Message[]): Promise<void> => {
    receiverSession = session
    // the outbox: replies written in order while reading goes on
    let writing: Promise<void> = Promise.resolve()
    let writeError: Error | undefined
    const send = (message: Message): void => {
      if (writeError != null) {
        throw writeError
      }
      writing = writing.then(async () => { await wire.send(receiver, message) }).catch(err => {
        writeError ??= err
        receiver.end.interrupt(err)
      })
    }
    try {
      for (const message of first) {
        send(message)
      }
      let message: Message | undefined
      while (!session.complete && (message = await wire.receive(receiver)) != null) {
        const step = await session.receive(message, { signal: receiverAbort.signal })
        for (const reply of step.replies) {
          send(reply)
        }
      }
      if (!session.complete) {
        throw new SessionClosedError(`The sender closed the stream with ${session.frontier.wantCount} subgraph(s) still missing`)
      }
      for (const done of session.doneOnce()) {
        send(done)
      }
      // like FramedStream.discardIncoming: what the sender still sends is read and dropped
      void (async () => { while (await receiver.end.read() != null) { /* dropped */ } })().catch(() => {})
      await writing
      if (writeError != null) {
        throw writeError
      }
      receiver.end.closeWrite()
      void Promise.race([receiver.end.remoteEnd(), scheduler.sleep(DONE_GRACE)]).then(() => { receiver.end.abort() })
    } finally {
      session.close()
    }
  }

  const expectFirst = async <T extends Message['type']>(side: Side, type: T): Promise<Extract<Message, { type: T }>> => {
    const first = await wire.receive(side)
    if (first?.type !== type) {
      throw new ProtocolError(`expected a ${type} message first, got ${first?.type ?? 'the end of the stream'}`)
    }
    return first as Extract<Message, { type: T }>
  }

  let senderRun: Promise<void>
  let receiverRun: Promise<void>
  if (s.mode === 'pull') {
    receiverRun = guarded(receiver, receiverAbort, async () => {
      const session = await ReceiverSession.create({ ...receiverInit, roots: s.roots, hints: s.hints, smallStoreBlocks: s.smallStoreBlocks }, { signal: receiverAbort.signal })
      if (session.complete) {
        // the service opens no stream for a pull it does not need
        noStream = true
        receiverSession = session
        session.close()
        receiver.end.abort()
        return
      }
      await runReceiver(session, [await session.pullRequest({ signal: receiverAbort.signal })])
    })
    senderRun = guarded(sender, senderAbort, async () => {
      const request = await expectFirst(sender, 'pull')
      await runSender(new SenderSession({ ...senderInit, roots: request.roots, request }), [])
    })
  } else {
    senderRun = guarded(sender, senderAbort, async () => {
      // the client's belief: the server holds what this node holds under the hints
      const held: CID[] = []
      for await (const cid of walkHeldCids(stores.sender, s.hints, { offline: true, onMissing: () => {}, signal: senderAbort.signal })) {
        held.push(cid)
      }
      const bloom = held.length === 0 ? undefined : bloomOf(held)
      // a push that broke off after the server accepted it resumes: nothing goes out before the server's first status
      const session = new SenderSession({ ...senderInit, roots: s.roots, bloom, coldCallBytes: s.coldCallBytes, awaitFirstStatus: resuming })
      await runSender(session, [{ type: 'push', roots: s.roots, hints: s.hints }])
    })
    receiverRun = guarded(receiver, receiverAbort, async () => {
      const push = await expectFirst(receiver, 'push')
      const session = await ReceiverSession.create({ ...receiverInit, roots: push.roots, hints: push.hints, smallStoreBlocks: 0, announceRoots: true }, { signal: receiverAbort.signal })
      await runReceiver(session, [await session.pushGreeting({ signal: receiverAbort.signal })])
    })
  }

  let settled = 0
  const results = Promise.allSettled([senderRun, receiverRun].map(async run => { try { await run } finally { settled++ } }))
  const result = await scheduler.run(() => settled === 2, scheduler.events + MAX_EVENTS)
  let hung: string | undefined
  if (result !== 'done') {
    hung = `sender: ${describeSender(senderSession)}; receiver: ${describeReceiver(receiverSession)}`
    log?.(`${scheduler.now} the session is ${result}: ${hung}; the simulation resets it`)
    // unwind a hung session so it does not leak into the next one
    senderAbort.abort(new Error('the simulation gave up'))
    receiverAbort.abort(new Error('the simulation gave up'))
    senderEnd.abort()
    await scheduler.run(() => settled === 2, scheduler.events + 10_000)
  }
  const [senderResult, receiverResult] = settled === 2 ? await results : [{ status: 'rejected', reason: new Error('hung') }, { status: 'rejected', reason: new Error('hung') }] as const
  return { ...wire.record, result, hung, noStream, sender: senderResult, receiver: receiverResult, senderSession, receiverSession, events: scheduler.events, time: scheduler.now }
}

/** What a session must end with, computed from the stores alone */
interface Oracle {
  /** Non-identity blocks under the roots */
  dag: Map<string, Block>
  /** Blocks the receiver will hold at the end of a clean run */
  obtainable: Map<string, Block>
  /** What the receiver must name in BlocksNotAvailableError (by CID string) */
  missing: Set<string>
  /** Longest path under the roots (links) */
  depth: number
}

function oracle (s: Scenario, senderHas: Set<string>, receiverHas: Set<string>): Oracle {
  const u = s.universe
  const dag = new Map([...u.reachable(s.roots).values()].filter(cid => !isIdentity(cid)).map(cid => [cid.toString(), u.blocks.get(cid.toString()) as Block]))
  // the sender serves a block it holds that it can show lies under the roots: a root, or a link of a block it holds there
  const senderView = u.reachable(s.roots, cid => isIdentity(cid) || senderHas.has(mhKey(cid)))
  const missing = new Set<string>()
  const reached = u.reachable(s.roots, cid => {
    if (isIdentity(cid) || receiverHas.has(mhKey(cid)) || (senderView.has(cid.toString()) && senderHas.has(mhKey(cid)))) {
      return true
    }
    missing.add(cid.toString())
    return false
  })
  const obtainable = new Map([...reached.keys()].filter(key => dag.has(key) && !missing.has(key)).map(key => [key, dag.get(key) as Block]))
  const depths = new Map<string, number>()
  const depthOf = (cid: CID): number => {
    const key = cid.toString()
    let depth = depths.get(key)
    if (depth == null) {
      depth = 0
      for (const link of u.links.get(key) ?? []) {
        depth = Math.max(depth, 1 + depthOf(link))
      }
      depths.set(key, depth)
    }
    return depth
  }
  return { dag, obtainable, missing, depth: Math.max(0, ...s.roots.map(depthOf)) }
}

const errorName = (result: PromiseSettledResult<void>): string => result.status === 'fulfilled' ? 'ok' : `${(result.reason as Error).name}: ${(result.reason as Error).message}`

/** Checks one session's record; returns the broken invariants */
function check (s: Scenario, stores: Stores, before: Map<string, Uint8Array>, o: Oracle, run: SessionRecord, faults: Faults): string[] {
  if (run.result !== 'done') {
    return [`the session did not end: ${run.result} after ${run.events} events at virtual time ${run.time} (${run.hung ?? ''})`]
  }
  const clean = faults.resetAtFrame == null && faults.corruptBlock == null
  const after = stores.receiver.contents
  const problems = [...storeProblems(o, before, after), ...protocolProblems(s, o, run)]
  if (clean) {
    problems.push(...wireProblems(s, before, run))
  }

  const missingNow = [...o.obtainable.values()].filter(b => !after.has(mhKey(b.cid)))
  const receiverError = run.receiver.status === 'rejected' ? run.receiver.reason as Error : undefined
  for (const [side, result] of [['receiver', run.receiver], ['sender', run.sender]] as const) {
    if (result.status === 'rejected' && !TYPED_ERRORS.has((result.reason as Error).name)) {
      problems.push(`the ${side} failed with an untyped error: ${errorName(result)}`)
    }
  }
  if (clean) {
    problems.push(...outcomeProblems(o, run, receiverError))
    if (missingNow.length > 0) {
      problems.push(`the receiver lacks ${missingNow.length} available block(s) at the end, e.g. ${missingNow[0].cid}`)
    }
  } else if (receiverError == null && missingNow.length > 0) {
    problems.push(`the receiver succeeded without ${missingNow.length} block(s), e.g. ${missingNow[0].cid}`)
  } else if (faults.resetAtFrame == null && receiverError != null && !['HashMismatchError', 'BlocksNotAvailableError'].includes(receiverError.name)) {
    problems.push(`a corrupted block should fail the session with HashMismatchError, got ${errorName(run.receiver)}`)
  }
  return problems
}

/** The receiver's store holds what it held, plus verified blocks of the DAG, and nothing else */
function storeProblems (o: Oracle, before: Map<string, Uint8Array>, after: Map<string, Uint8Array>): string[] {
  const problems: string[] = []
  const dagByMh = new Map([...o.dag.values()].map(b => [mhKey(b.cid), b]))
  for (const [key, bytes] of after) {
    const old = before.get(key)
    const block = dagByMh.get(key)
    if (old != null && !equals(old, bytes)) {
      problems.push(`a block the receiver held was overwritten: ${key}`)
    } else if (old == null && block == null) {
      problems.push(`the receiver stored a block outside the roots' DAG: multihash ${key}`)
    } else if (old == null && block != null && !equals(block.bytes, bytes)) {
      problems.push(`the receiver stored wrong bytes for ${block.cid}`)
    }
  }
  return problems
}

/** Nothing outside the DAG is served, nothing unrequested arrives, rounds and the cold call stay bounded */
function protocolProblems (s: Scenario, o: Oracle, run: SessionRecord): string[] {
  const problems: string[] = []
  for (const cid of run.sentBlocks) {
    if (!o.dag.has(cid.toString())) {
      problems.push(`the sender sent ${cid}, which is not under the roots`)
    }
  }
  const unrequested = run.receiverSession?.counters.unrequestedBlocks ?? 0
  if (unrequested > 0) {
    problems.push(`the receiver got ${unrequested} unrequested block(s)`)
  }
  // each straggler round brings at least one more level, or one more message's worth of wants
  const rounds = run.receiverSession?.counters.stragglerRounds ?? 0
  const maxRounds = o.depth + 3 + Math.ceil(o.dag.size / (s.maxCidsPerMessage ?? 10_000))
  if (rounds > maxRounds) {
    problems.push(`${rounds} straggler rounds, more than the bound ${maxRounds} (DAG depth ${o.depth})`)
  }
  if (s.mode === 'push' && s.coldCallBytes != null && run.coldCallBytes > s.coldCallBytes) {
    problems.push(`the push sent ${run.coldCallBytes} bytes of blocks before the rh status, over its cold call of ${s.coldCallBytes} (D4)`)
  }
  return problems
}

/** A clean session completes, or fails with BlocksNotAvailableError naming exactly the unavailable blocks (D2) */
function outcomeProblems (o: Oracle, run: SessionRecord, receiverError?: Error): string[] {
  if (o.missing.size === 0) {
    const problems: string[] = []
    if (receiverError != null) {
      problems.push(`the receiver failed although every block is available: ${errorName(run.receiver)}`)
    }
    if (run.sender.status === 'rejected' && !run.noStream) {
      problems.push(`the sender failed in a session that completed: ${errorName(run.sender)}`)
    }
    return problems
  }
  if (receiverError?.name !== BlocksNotAvailableError.name) {
    return [`the receiver should have failed with BlocksNotAvailableError naming ${[...o.missing].join(' ')}, got ${errorName(run.receiver)}`]
  }
  const named = new Set((receiverError as BlocksNotAvailableError).cids.map(String))
  const extra = [...named].filter(key => !o.missing.has(key))
  const absent = [...o.missing].filter(key => !named.has(key))
  if (extra.length > 0 || absent.length > 0) {
    return [`BlocksNotAvailableError names the wrong blocks: not missing ${extra.join(' ') || '-'}; missing but not named ${absent.join(' ') || '-'}`]
  }
  return []
}

/**
 * The wire bounds of a clean session (see README.md in this folder):
 * no block goes out twice; a pull whose Bloom covers the receiver's whole
 * store resends nothing it holds but the roots (sent when its wants did not
 * fit in the request); Bloom bytes stay under (syncs + 5) times the largest.
 */
function wireProblems (s: Scenario, before: Map<string, Uint8Array>, run: SessionRecord): string[] {
  const problems: string[] = []
  const seen = new Set<string>()
  for (const cid of run.sentBlocks) {
    if (seen.has(cid.toString())) {
      problems.push(`the sender sent ${cid} twice`)
    }
    seen.add(cid.toString())
  }
  const smallStore = s.mode === 'pull' && s.smallStoreBlocks !== 0 && before.size <= (s.smallStoreBlocks ?? DEFAULT_SMALL_STORE_BLOCKS)
  if (smallStore && !run.noStream) {
    const roots = new Set(s.roots.map(String))
    const resent = run.sentBlocks.filter(cid => before.has(mhKey(cid)) && !roots.has(cid.toString()))
    if (resent.length > 0) {
      problems.push(`the pull Bloom covered the receiver's whole store, yet ${resent.length} block(s) it held were sent, e.g. ${resent[0]}`)
    }
  }
  const syncs = run.senderSession?.counters.syncs ?? 0
  if (s.faults.bloom == null && run.bloomBytes > (syncs + 5) * run.maxBloom) {
    problems.push(`the receiver sent ${run.bloomBytes} bytes of Blooms, more than (${syncs} syncs + 5) x its largest Bloom of ${run.maxBloom}`)
  }
  return problems
}

function describeSender (session?: SenderSession): string {
  const c = session?.counters
  return c == null ? 'not started' : `${c.blocksSent} blocks sent, ${c.statusesReceived} statuses read, ${c.idles} idles, ${c.syncs} syncs, done ${String(session?.done)}`
}

function describeReceiver (session?: ReceiverSession): string {
  if (session == null) {
    return 'not started'
  }
  const wants = session.frontier.wants()
  return `${session.counters.blocksReceived} blocks received, ${session.counters.statusesSent} statuses sent, ${wants.length} wants (${wants.slice(0, 2).map(String).join(' ')}${wants.length > 2 ? ' ...' : ''})`
}

export interface SeedReport {
  seed: number
  problems: string[]
  /** Sessions run over a stream (a faulty one is followed by a clean retry; a pull complete at the start opens none) */
  sessions: number
  events: number
  /** Block bytes the sender sent minus the new bytes stored, in clean sessions */
  waste: number
  newBytes: number
  /** Blocks under the roots: a smaller failing scenario is an easier one to read */
  size: number
  /** How the first session ended for the receiver: ok, an error name, or no-stream */
  outcome: string
  /** Wire figures of each clean session that ended */
  metrics: SessionMetrics[]
}

export interface SessionMetrics {
  mode: Scenario['mode']
  /** The receiver's pull Bloom covered its whole store */
  smallStore: boolean
  newBytes: number
  /** Bytes of blocks sent that the receiver already held */
  waste: number
  blockBytes: number
  bloomBytes: number
  maxBloom: number
  syncs: number
  /** Blocks sent more than once */
  resent: number
}

/**
 * Runs the scenario of `seed` and checks it. With `log`, prints every
 * message and the scenario.
 */
export async function simulate (seed: number, log?: (line: string) => void): Promise<SeedReport> {
  const scheduler = new Scheduler()
  // the sessions' walks give the event loop a turn every 10 ms (src/core/budget.ts Yielder): on
  // the virtual clock those turns come at the same points in every replay of a seed
  const realNow = performance.now
  performance.now = () => scheduler.now
  try {
    return await simulateOn(scheduler, seed, log)
  } finally {
    performance.now = realNow
  }
}

async function simulateOn (scheduler: Scheduler, seed: number, log?: (line: string) => void): Promise<SeedReport> {
  const s = scenario(seed)
  log?.(describeScenario(s))
  const random = randomSource(~seed)
  const stores: Stores = {
    sender: new SlowStore(scheduler, random, s.senderDelay),
    receiver: new SlowStore(scheduler, random, s.receiverDelay)
  }
  s.senderBlocks.forEach(block => stores.sender.putNow(block.cid, block.bytes))
  s.receiverBlocks.forEach(block => stores.receiver.putNow(block.cid, block.bytes))
  const senderHas = new Set(s.senderBlocks.map(b => mhKey(b.cid)))
  const report: SeedReport = { seed, problems: [], sessions: 0, events: 0, waste: 0, newBytes: 0, size: 0, outcome: '', metrics: [] }

  const faulty = s.faults.resetAtFrame != null || s.faults.corruptBlock != null
  let resuming = false
  let attempt = 0
  for (const faults of faulty ? [s.faults, { ...s.faults, resetAtFrame: undefined, corruptBlock: undefined }] : [s.faults]) {
    const before = new Map(stores.receiver.contents)
    const o = oracle(s, senderHas, new Set(before.keys()))
    const run = await runSession(s, stores, scheduler, random, faults, resuming, log)
    resuming = (run.senderSession?.counters.statusesReceived ?? 0) > 0
    attempt++
    report.sessions += run.noStream ? 0 : 1
    report.events = run.events
    report.size = o.dag.size
    if (attempt === 1) {
      report.outcome = run.noStream ? 'no-stream' : errorName(run.receiver).split(':')[0]
    }
    const label = attempt > 1 ? 'the retry: ' : ''
    report.problems.push(...check(s, stores, before, o, run, faults).map(p => label + p))
    log?.(`session ${attempt}: sender ${errorName(run.sender)}, receiver ${errorName(run.receiver)}; ${run.frames} frames, ${run.wireBytes.toReceiver} B to the receiver (${run.blockBytes} B of blocks), ${run.wireBytes.toSender} B to the sender (${run.bloomBytes} B of Blooms); ${run.events} events, virtual time ${run.time}`)
    if (faults.resetAtFrame == null && faults.corruptBlock == null && run.result === 'done') {
      const after = stores.receiver.contents
      const stored = [...after.entries()].filter(([key]) => !before.has(key)).reduce((n, [, bytes]) => n + bytes.byteLength, 0)
      report.newBytes += stored
      report.waste += run.blockBytes - stored
      const keys = run.sentBlocks.map(String)
      report.metrics.push({
        mode: s.mode,
        smallStore: s.mode === 'pull' && before.size <= (s.smallStoreBlocks ?? DEFAULT_SMALL_STORE_BLOCKS) && s.smallStoreBlocks !== 0,
        newBytes: stored,
        waste: run.blockBytes - stored,
        blockBytes: run.blockBytes,
        bloomBytes: run.bloomBytes,
        maxBloom: run.maxBloom,
        syncs: run.senderSession?.counters.syncs ?? 0,
        resent: keys.length - new Set(keys).size
      })
    }
  }
  return report
}
