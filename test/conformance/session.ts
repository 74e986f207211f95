/**
 * Session helpers for transcripts: what a conformant sender sends in a pass,
 * reading and checking a pass, the kit as an honest push client, and the
 * shared expectations (an error then the end, a quiet peer, ...).
 */

import { CID } from 'multiformats/cid'
import * as rawCodec from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { equals } from 'uint8arrays/equals'
import { KitBloom } from './bloom.ts'
import { Violation, check } from './conn.ts'
import { seededBytes } from './fixture.ts'
import { cidsOf, isIdentity, uintOf } from './wire.ts'
import type { BlockFrame, Conn, ControlFrame, End, Event } from './conn.ts'
import type { Block, Fixture, Graph, PushDag } from './fixture.ts'

/** What a transcript can use */
export interface Ctx {
  fx: Fixture
  /** How long to wait for an expected frame, ms */
  timeout: number
  /** Silence (ms) that counts as "the peer wrote nothing more" */
  quiet: number
  /** How long keepalive transcripts keep a session busy with keepalives only, ms */
  keepaliveMs: number
  /** Opens a stream to the peer under test, which plays `peer` in it; `graph` names CIDs in the log */
  open(peer: 'sender' | 'receiver', graph?: Graph): Promise<Conn>
  /** Records something the peer did that a local-policy check may look for */
  note(text: string): void
}

/** `count` CIDs of blocks nobody holds */
export function unknownCids (count: number, salt: number): CID[] {
  return Array.from({ length: count }, (_, i) => CID.createV1(rawCodec.code, Digest.create(0x12, seededBytes(32, salt * 100_003 + i))))
}

export function names (conn: Conn, cids: Iterable<CID>): string {
  return `[${[...cids].map(cid => conn.name(cid)).join(' ')}]`
}

const keysOf = (cids: Iterable<CID>): Set<string> => new Set([...cids].map(cid => cid.toString()))

/**
 * The blocks (breadth first) and the unavailable CIDs of one pass of a
 * conformant sender (S-2, S-3, S-5, S-6, A-1): every want, and below the
 * wants every block that was not sent before and that the Bloom does not hold
 */
export function planPass (graph: Graph, roots: CID[], wants: CID[], bloom: KitBloom | null | undefined, sent: Set<string>): { blocks: Block[], missing: CID[] } {
  const dag = graph.reach(roots)
  const blocks: Block[] = []
  const missing: CID[] = []
  const seen = new Set<string>()
  const missingKeys = new Set<string>()
  const miss = (cid: CID): void => {
    if (!missingKeys.has(cid.toString())) {
      missingKeys.add(cid.toString())
      missing.push(cid)
    }
  }
  const queue: CID[] = []
  for (const want of wants) {
    const key = want.toString()
    if (seen.has(key) || isIdentity(want)) {
      continue
    }
    const block = graph.get(want)
    if (!dag.has(key) || block == null) {
      miss(want)
      continue
    }
    seen.add(key)
    blocks.push(block)
    queue.push(want)
  }
  while (queue.length > 0) {
    const cid = queue.shift() as CID
    for (const link of graph.sendableLinks(cid)) {
      const key = link.toString()
      if (seen.has(key) || sent.has(key) || bloom?.holds(link) === true) {
        continue
      }
      const block = graph.get(link)
      if (block == null) {
        miss(link)
        continue
      }
      seen.add(key)
      blocks.push(block)
      queue.push(link)
    }
  }
  return { blocks, missing }
}

// ---- the kit as receiver (pull client) ------------------------------------------

/** A pull the kit runs: what was sent so far, what blocks link to, what was asked for */
export interface PullSession {
  conn: Conn
  graph: Graph
  roots: CID[]
  /** Blocks received in the session */
  sent: Set<string>
  /** CIDs linked from received blocks (identity blocks see-through), and the roots */
  linked: Set<string>
  /** Every want the kit has asked for */
  asked: Set<string>
}

/** Opens a stream and writes a pull */
export async function openPull (ctx: Ctx, roots: CID[], sr: CID[] = [], bloom?: KitBloom | null, graph: Graph = ctx.fx.graph): Promise<PullSession> {
  const conn = await ctx.open('sender', graph)
  await conn.pull(roots, sr, bloom)
  return { conn, graph, roots, sent: new Set(), linked: keysOf(roots), asked: keysOf(sr.length > 0 ? sr : roots) }
}

/** Reads the sender's first frame: the CAR header listing exactly `roots` (S-1) */
export async function expectHeader (conn: Conn, roots: CID[], rule: string = 'S-1'): Promise<void> {
  const event = await conn.read('the CAR header', rule)
  check(event.kind === 'control' && event.type === 'header', rule, `the sender's first frame is ${conn.describe(event)}, not the CAR header`)
  const listed = cidsOf(event.map, 'roots') ?? []
  check(event.map.version === 1, rule, `header version ${String(event.map.version)}`)
  check(listed.length === roots.length && listed.every((cid, i) => cid.equals(roots[i])), rule,
    `header lists ${names(conn, listed.slice(0, 8))} (${listed.length}), not the ${roots.length} roots ${names(conn, roots.slice(0, 8))} in order`)
}

/** Writes a status on a pull and records its wants */
export async function status (s: PullSession, sr: CID[], bloom?: KitBloom | null): Promise<void> {
  for (const want of sr) {
    s.asked.add(want.toString())
  }
  await s.conn.status(sr, bloom)
}

/** Checks one block of a pass (S-2, S-3, S-4, S-6, A-1) and records its links */
function takeBlock (s: PullSession, dag: Set<string>, event: BlockFrame, gotKeys: Set<string>, missingSeen: boolean): void {
  const key = event.cid.toString()
  const name = s.conn.name(event.cid)
  const known = s.graph.get(event.cid)
  check(known != null && dag.has(key), 'S-3', `block ${name} is not in the session's DAG`)
  check(equals(known.bytes, event.bytes), 'S-2', `block ${name} does not carry its own bytes`)
  check(s.asked.has(key) || s.linked.has(key), 'S-4', `block ${name} was sent before any block linking to it`)
  check(!gotKeys.has(key), 'S-6', `block ${name} was sent twice in one pass`)
  check(!missingSeen, 'A-1', `block ${name} came after a missing frame of the same pass`)
  gotKeys.add(key)
  for (const link of s.graph.sendableLinks(event.cid)) {
    s.linked.add(link.toString())
  }
}

/**
 * Reads one pass up to its idle and checks it: each block in the session's
 * DAG with its own bytes, after a block linking to it (S-4), once (S-6);
 * `missing` after the blocks; idle acknowledging every status (S-8);
 * and (when `exact`) exactly the blocks and missing CIDs planPass predicts.
 * Returns the blocks in the order they came.
 */
export async function expectPass (s: PullSession, wants: CID[], exact: boolean = true): Promise<BlockFrame[]> {
  const bloom = s.conn.bloom instanceof KitBloom ? s.conn.bloom : undefined
  const plan = planPass(s.graph, s.roots, wants, bloom, s.sent)
  const dag = s.graph.reach(s.roots)
  const got: BlockFrame[] = []
  const gotKeys = new Set<string>()
  const missing: CID[] = []
  while (true) {
    const event = await s.conn.read(`the blocks, missing and idle of a pass for ${names(s.conn, wants.slice(0, 8))}`, 'S-8')
    if (event.kind === 'block') {
      takeBlock(s, dag, event, gotKeys, missing.length > 0)
      got.push(event)
      continue
    }
    if (event.kind === 'control' && event.type === 'missing') {
      missing.push(...(cidsOf(event.map, 'cs') ?? []))
      continue
    }
    if (event.kind === 'control' && event.type === 'idle') {
      const n = uintOf(event.map, 'n') ?? -1
      check(n >= 0 && n <= s.conn.statusesWritten, 'S-8', `idle n=${String(event.map.n)}, but the kit has written only ${s.conn.statusesWritten} status-bearing messages`)
      if (n === s.conn.statusesWritten) {
        break
      }
      // the sender had not read the kit's latest status yet: a later idle acknowledges it
      continue
    }
    throw new Violation(event.kind === 'control' && event.type === 'error' ? 'A-1' : 'S-8', `expected the pass's blocks, missing or idle; got ${s.conn.describe(event)}`)
  }
  for (const block of got) {
    s.sent.add(block.cid.toString())
  }
  if (!exact) {
    return got
  }
  const expected = keysOf(plan.blocks.map(b => b.cid))
  const extra = got.filter(b => !expected.has(b.cid.toString())).map(b => b.cid)
  const lacking = plan.blocks.filter(b => !gotKeys.has(b.cid.toString())).map(b => b.cid)
  const viaBloom = bloom != null ? ' (with the Bloom of B-1 to B-4 in effect)' : ''
  check(extra.length === 0, 'S-6', `sent ${names(s.conn, extra)}, which were sent before, lie below a skipped block or are held by the Bloom${viaBloom}; expected ${names(s.conn, plan.blocks.map(b => b.cid))}`)
  check(lacking.length === 0, 'S-6', `did not send ${names(s.conn, lacking)}${viaBloom}`)
  const expectedMissing = keysOf(plan.missing)
  const gotMissing = keysOf(missing)
  check(gotMissing.size === expectedMissing.size && [...gotMissing].every(key => expectedMissing.has(key)), 'A-1',
    `missing listed ${names(s.conn, missing.slice(0, 8))} (${gotMissing.size}), expected ${names(s.conn, plan.missing.slice(0, 8))} (${expectedMissing.size})`)
  return got
}

/** Pulls `root` on a new stream and checks that the peer serves exactly what `graph` says it holds */
export async function pullBack (ctx: Ctx, graph: Graph, root: CID): Promise<void> {
  const s = await openPull(ctx, [root], [], undefined, graph)
  await expectHeader(s.conn, [root])
  await expectPass(s, [root])
  s.conn.abort()
}

/** Pulls `root` on a new stream and checks that the peer does not send its block (it was never stored) */
export async function expectNotServed (ctx: Ctx, graph: Graph, root: CID, rule: string): Promise<void> {
  const conn = await ctx.open('sender', graph)
  await conn.pull([root])
  while (true) {
    const event = await conn.read('the answer to a pull of a block that must not be stored', rule)
    check(!(event.kind === 'block' && event.cid.equals(root)), rule, `the peer serves ${conn.name(root)}, so it stored it`)
    if (event.kind === 'end' || (event.kind === 'control' && (event.type === 'idle' || event.type === 'error'))) {
      break
    }
  }
  conn.abort()
}

// ---- expectations shared by all roles -------------------------------------------

/**
 * Reads until an error frame with one of `codes`, then checks that nothing
 * follows it and the stream ends (E-2). `allow` says which frames may come
 * before the error (none by default).
 */
export async function expectError (conn: Conn, codes: string[], rule: string, allow: (event: Event) => boolean = () => false): Promise<ControlFrame> {
  while (true) {
    const event = await conn.read(`error ${codes.join(' or ')}`, rule)
    if (event.kind === 'control' && event.type === 'error') {
      check(codes.includes(event.map.c as string), rule, `error code ${String(event.map.c)}, expected ${codes.join(' or ')}`)
      await expectEnd(conn, 'E-2', () => false)
      return event
    }
    check(event.kind !== 'end', rule, `the stream ended without an error frame (expected ${codes.join(' or ')})`)
    check(allow(event), rule, `expected error ${codes.join(' or ')}, got ${conn.describe(event)}`)
  }
}

/**
 * Reads until the peer's side ends; frames on the way must satisfy `allow`,
 * and no error frame may come. With `closed`, the end must be a close, not a
 * reset. Keepalives are frames too.
 */
export async function expectEnd (conn: Conn, rule: string, allow: (event: Event) => boolean, closed: boolean = false): Promise<End> {
  while (true) {
    const event = await conn.next('the end of the stream', rule)
    if (event.kind === 'end') {
      check(!closed || !event.reset, rule, 'the peer reset the stream instead of closing its writable end')
      return event
    }
    check(!(event.kind === 'control' && event.type === 'error'), rule, `the peer wrote ${conn.describe(event)}`)
    check(allow(event), rule, `the peer wrote ${conn.describe(event)} where it should have ended its side`)
  }
}

/** Checks that the peer writes nothing (keepalives aside) and keeps the stream open for `ms` */
export async function expectQuiet (conn: Conn, ms: number, rule: string): Promise<void> {
  const until = Date.now() + ms
  for (let left = ms; left > 0; left = until - Date.now()) {
    const event = await conn.poll(left)
    if (event == null) {
      return
    }
    if (event.kind === 'control' && event.type === 'keepalive') {
      continue
    }
    throw new Violation(rule, `the peer wrote ${conn.describe(event)} where it should have waited`)
  }
}

/** Frames a sender may still have on their way after `done` (S-11) */
export const inFlight = (event: Event): boolean => event.kind === 'block' ||
  (event.kind === 'control' && ['idle', 'missing', 'sync', 'keepalive'].includes(event.type))

// ---- the kit as sender (push client) ---------------------------------------------

/** A session in which the kit is an honest sender: a push, or a pull it serves as a scripted server */
export interface PushSession {
  conn: Conn
  dag: PushDag
  roots: CID[]
  sent: Set<string>
  /** The Bloom the kit uses as sender (B-6) */
  bloom: KitBloom | null
  statuses: ControlFrame[]
  /** Statuses that carried rh: true */
  rootsHeld: number
  /** True for a push: the first status is the greeting (P-6) */
  push: boolean
}

/** Opens a stream, writes push and (unless `header` is false) the header */
export async function openPush (ctx: Ctx, dag: PushDag, options: { roots?: CID[], hints?: CID[], header?: boolean } = {}): Promise<PushSession> {
  const roots = options.roots ?? [dag.root]
  const conn = await ctx.open('receiver', dag.graph)
  await conn.push(roots, options.hints ?? [])
  if (options.header !== false) {
    await conn.header(roots)
  }
  return { conn, dag, roots, sent: new Set(), bloom: null, statuses: [], rootsHeld: 0, push: true }
}

/** The kit as the server of a pull it has read: its Bloom is the pull's */
export function servePull (conn: Conn, dag: PushDag, pull: ControlFrame): PushSession {
  const bb = pull.map.bb
  const bloom = bb instanceof Uint8Array && bb.byteLength > 0 ? new KitBloom(0, uintOf(pull.map, 'bk') ?? 1, bb) : null
  return { conn, dag, roots: cidsOf(pull.map, 'rs') ?? [], sent: new Set(), bloom, statuses: [], rootsHeld: 0, push: false }
}

/** Writes blocks (by name in the DAG, or blocks) and records them as sent */
export async function sendBlocks (p: PushSession, blocks: Array<string | Block>): Promise<void> {
  for (const item of blocks) {
    const block = typeof item === 'string' ? p.dag.b[item] : item
    await p.conn.block(block.cid, block.bytes)
    p.sent.add(block.cid.toString())
  }
}

/** Takes a status from the push server: checks the greeting (P-6) and rh (P-7), applies its Bloom (B-6) */
export function takeStatus (p: PushSession, event: ControlFrame): CID[] {
  if (p.push && p.statuses.length === 0) {
    check('bb' in event.map, 'P-6', `the greeting ${p.conn.describe(event)} carries no bb`)
  }
  p.statuses.push(event)
  if (event.map.rh === true) {
    p.rootsHeld++
    check(p.rootsHeld === 1, 'P-7', 'a second status with rh: true')
  }
  if (event.map.bb instanceof Uint8Array) {
    p.bloom = event.map.bb.byteLength === 0 ? null : new KitBloom(0, uintOf(event.map, 'bk') ?? 1, event.map.bb)
  }
  return cidsOf(event.map, 'sr') ?? []
}

/** Reads until a status with rh: true, taking every status on the way */
export async function awaitRootsHeld (p: PushSession): Promise<void> {
  while (p.rootsHeld === 0) {
    const event = await p.conn.read('a status with rh: true', 'P-7')
    check(event.kind === 'control' && event.type === 'status', 'P-7', `expected statuses up to rh: true, got ${p.conn.describe(event)}`)
    takeStatus(p, event)
  }
}

/** The outcome of a push the kit drove to its end */
export interface PushOutcome {
  /** The done or error frame, or the end of the stream */
  last: ControlFrame | End
  /** The wants of each straggler status, in order */
  stragglers: CID[][]
}

/**
 * Writes `missing` for `unavailable` and an idle, then plays an honest
 * sender: every status with wants gets a pass (planPass) and an idle, every
 * other status an idle (S-9), until done, an error or the end
 */
export async function finishPush (p: PushSession, unavailable: CID[] = []): Promise<PushOutcome> {
  const stragglers: CID[][] = []
  if (unavailable.length > 0) {
    await p.conn.missing(unavailable)
  }
  await p.conn.idle()
  while (true) {
    const event = await p.conn.read('status, done or error', 'R-6')
    if (event.kind === 'end' || (event.kind === 'control' && (event.type === 'done' || event.type === 'error'))) {
      return { last: event, stragglers }
    }
    check(event.kind === 'control' && event.type === 'status', 'C-2', `a push server wrote ${p.conn.describe(event)}`)
    const wants = takeStatus(p, event)
    if (wants.length > 0) {
      stragglers.push(wants)
      const plan = planPass(p.dag.graph, p.roots, wants, p.bloom, p.sent)
      await sendBlocks(p, plan.blocks)
      if (plan.missing.length > 0) {
        await p.conn.missing(plan.missing)
      }
    }
    await p.conn.idle()
  }
}

/** Checks that a push ended with done, then the server's close */
export async function expectDone (p: PushSession, outcome: PushOutcome): Promise<void> {
  const last = outcome.last
  check(last.kind === 'control' && last.type === 'done', 'R-5', `the push ended with ${p.conn.describe(last)}, not done`)
  await expectEnd(p.conn, 'R-5', () => false, true)
}
