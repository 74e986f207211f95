/**
 * Client-role cases: helia-car-mirror as pull client and push client, with
 * the kit as a scripted server speaking raw frames. They need this
 * implementation's API to start a session, so they run in the test suite
 * only (test/conformance/client-role.node.ts).
 */

import { MemoryBlockstore } from 'blockstore-core/memory'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { bloomOf } from './bloom.ts'
import { check } from './conn.ts'
import { seededBytes } from './fixture.ts'
import { expectEnd, expectError, expectHeader, expectPass, expectQuiet, finishPush, inFlight, names, sendBlocks, servePull } from './session.ts'
import { MIN_BLOOM_BYTES, body, cidsOf, paddedVarint } from './wire.ts'
import type { Conn, ControlFrame } from './conn.ts'
import type { Block, Fixture, PushDag } from './fixture.ts'
import type { PullSession } from './session.ts'
import type { TestNode, TestNodeOptions } from '../fixtures/nodes.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface ClientEnv {
  fx: Fixture
  timeout: number
  quiet: number
  /** The client's idle timeout, ms */
  clientIdleMs: number
  /** A started helia-car-mirror node; `seed` puts the fixture into its store */
  client(options?: TestNodeOptions & { seed?: boolean }): Promise<TestNode>
  /** The kit's address, where scripts answer */
  addr: Multiaddr[]
  /**
   * Installs `script` for the next stream the client opens; the client plays
   * `peer` in it. `result` settles when the script is over.
   */
  serve<T>(peer: 'sender' | 'receiver', script: (conn: Conn) => Promise<T>): Promise<{ result: Promise<T> }>
}

export interface ClientCase {
  id: string
  rules: string[]
  title: string
  /** Longer than the suite's default, ms */
  timeout?: number
  run(env: ClientEnv): Promise<void>
}

const cases: ClientCase[] = []

function clientCase (id: string, rules: string[], title: string, run: (env: ClientEnv) => Promise<void>, timeout?: number): void {
  cases.push({ id, rules, title, run, timeout })
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/**
 * Awaits the client's call and the script: a broken rule found by the script
 * is reported before the client's error (which it usually causes)
 */
async function both<T> (call: Promise<T>, script: Promise<unknown>): Promise<T> {
  const [outcome, scripted] = await Promise.allSettled([call, script])
  if (scripted.status === 'rejected') {
    throw scripted.reason
  }
  if (outcome.status === 'rejected') {
    throw outcome.reason
  }
  return outcome.value
}

/** Like `both`, for a call that must fail: returns its error */
async function failure (call: Promise<unknown>, script: Promise<unknown>, rule: string): Promise<Error> {
  const [outcome, scripted] = await Promise.allSettled([call, script])
  if (scripted.status === 'rejected') {
    throw scripted.reason
  }
  check(outcome.status === 'rejected', rule, 'the session succeeded where it should have failed')
  return outcome.reason as Error
}

/** The fixture's DAG F as a push-able graph */
function fixtureDag (fx: Fixture, root: CID = fx.F): PushDag {
  return { graph: fx.graph, root, b: fx.b }
}

/** Reads the client's pull (T-2) and checks its roots (P-1) */
async function readPull (conn: Conn, roots: CID[]): Promise<ControlFrame> {
  const pull = await conn.read('the client\'s pull', 'T-2')
  check(pull.kind === 'control' && pull.type === 'pull', 'T-2', `the client's first frame is ${conn.describe(pull)}, not pull`)
  const rs = cidsOf(pull.map, 'rs') ?? []
  check(rs.length === roots.length && rs.every((cid, i) => cid.equals(roots[i])), 'P-1', `the pull lists roots ${names(conn, rs)}, expected ${names(conn, roots)}`)
  return pull
}

/** Reads the client's push and header (P-4, S-1) */
async function readPush (conn: Conn, roots: CID[], hints: CID[] = []): Promise<void> {
  const push = await conn.read('the client\'s push', 'T-2')
  check(push.kind === 'control' && push.type === 'push', 'T-2', `the client's first frame is ${conn.describe(push)}, not push`)
  const rs = cidsOf(push.map, 'rs') ?? []
  const hs = cidsOf(push.map, 'hs') ?? []
  check(rs.length === roots.length && rs.every((cid, i) => cid.equals(roots[i])), 'P-4', `the push lists roots ${names(conn, rs)}`)
  check(hs.length === hints.length && hs.every((cid, i) => cid.equals(hints[i])), 'P-4', `the push lists hints ${names(conn, hs)}`)
  await expectHeader(conn, roots, 'P-4')
}

/** A pull session model for checking the passes a pushing client sends */
function passModel (conn: Conn, fx: Fixture, roots: CID[]): PullSession {
  const keys = new Set(roots.map(String))
  return { conn, graph: fx.graph, roots, sent: new Set(), linked: keys, asked: new Set(keys) }
}

async function sendAll (conn: Conn, blocks: Block[]): Promise<void> {
  for (const block of blocks) {
    await conn.block(block.cid, block.bytes)
  }
}

/** Expects the client's error frame with `code`, and its end (E-2) */
async function clientFails (conn: Conn, code: string, rule: string): Promise<void> {
  await expectError(conn, [code], rule, event => event.kind === 'control' && (event.type === 'status' || event.type === 'keepalive'))
}

// ---- pull client --------------------------------------------------------------------------

clientCase('client-pull-request', ['T-2', 'P-1', 'C-1', 'C-6', 'E-3'],
  'the pull client\'s first frame is a canonical pull of exactly its roots; refused, it ends without an error frame',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      await conn.error('refused', 'the kit refuses')
      await expectEnd(conn, 'E-3', () => false)
    })
    const err = await failure(client.carMirror.pull(env.addr, env.fx.F), result, 'E-3')
    check(err.name === 'SessionRefusedError', 'E-3', `the pull failed with ${err.name}: ${err.message}`)
  })

clientCase('client-pull-complete', ['R-1', 'R-3', 'R-5', 'F-4', 'F-5'],
  'served header, F\'s blocks breadth first (E empty, V a CIDv0) and idle{1}: the client stores them all, writes done{d:0}, closes at once, and its pull resolves before the server closes',
  async (env) => {
    const client = await env.client()
    let closedAt = Infinity
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      await conn.header([env.fx.F])
      await sendAll(conn, env.fx.graph.blocksUnder([env.fx.F]))
      await conn.idle()
      const done = await conn.read('done', 'R-5')
      check(done.kind === 'control' && done.type === 'done' && done.map.d === 0, 'R-5', `expected done{d:0}, got ${conn.describe(done)}`)
      await expectEnd(conn, 'R-5', () => false, true)
      // the kit keeps its own side open: the client must not wait for it
      await sleep(1000)
      closedAt = Date.now()
      await conn.closeWrite()
    })
    const pulled = client.carMirror.pull(env.addr, env.fx.F, { signal: AbortSignal.timeout(env.timeout * 3) }).then(() => Date.now())
    const resolvedAt = await both(pulled, result)
    check(resolvedAt < closedAt, 'R-5', 'the pull resolved only after the server closed its side')
    for (const block of env.fx.graph.blocksUnder([env.fx.F])) {
      check(await client.blockstore.has(block.cid), 'R-3', `${env.fx.graph.name(block.cid)} was not stored`)
    }
  })

for (const [id, title, frames] of [
  ['client-header-twice', 'a second CAR header', (fx: Fixture) => [[body.header([fx.F]), 'header roots=[F]'], [body.block(fx.F, fx.b.F.bytes), 'block F'], [body.header([fx.F]), 'header roots=[F] (again)']]],
  ['client-header-other-roots', 'a CAR header listing A instead of F', (fx: Fixture) => [[body.header([fx.b.A.cid]), 'header roots=[A]']]],
  ['client-header-no-roots', 'a CAR header with no roots', () => [[body.header([]), 'header roots=[]']]],
  ['client-block-before-header', 'a block before the CAR header', (fx: Fixture) => [[body.block(fx.F, fx.b.F.bytes), 'block F (no header yet)']]]
] as Array<[string, string, (fx: Fixture) => Array<[Uint8Array, string]>]>) {
  clientCase(id, ['R-4'], `${title}: the pull client writes error protocol`, async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      for (const [bytes, label] of frames(env.fx)) {
        await conn.send(bytes, label)
      }
      await clientFails(conn, 'protocol', 'R-4')
    })
    await failure(client.carMirror.pull(env.addr, env.fx.F), result, 'R-4')
  })
}

clientCase('client-verification', ['R-1'],
  'a root whose bytes do not hash to its CID: error verification, nothing stored',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      await conn.header([env.fx.F])
      await conn.block(env.fx.F, new TextEncoder().encode('forged'))
      await clientFails(conn, 'verification', 'R-1')
    })
    await failure(client.carMirror.pull(env.addr, env.fx.F), result, 'R-1')
    check(!(await client.blockstore.has(env.fx.F)), 'R-1', 'the forged root was stored')
  })

clientCase('client-unrequested', ['R-2', 'R-6', 'B-8'],
  'L1 sent before any block linking to it is dropped: after idle the straggler status wants exactly [L1] and carries no bb (the Bloom is unchanged)',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      await conn.header([env.fx.F])
      const all = env.fx.graph.blocksUnder([env.fx.F])
      await sendAll(conn, [env.fx.b.L1, ...all.filter(b => !b.cid.equals(env.fx.b.L1.cid))])
      await conn.idle()
      let straggler: ControlFrame | undefined
      while (straggler == null) {
        const event = await conn.read('a straggler status', 'R-6')
        check(event.kind === 'control' && event.type === 'status', 'R-6', `expected a status, got ${conn.describe(event)}`)
        if ((cidsOf(event.map, 'sr') ?? []).length > 0) {
          straggler = event
        } else {
          await conn.idle()
        }
      }
      const sr = cidsOf(straggler.map, 'sr') ?? []
      check(sr.length === 1 && sr[0].equals(env.fx.b.L1.cid), 'R-2', `the straggler status wants ${names(conn, sr)}, expected [L1]`)
      check(!('bb' in straggler.map) && !('bk' in straggler.map), 'B-8', 'the straggler status carries bb/bk: it changes the sender\'s Bloom')
      await sendAll(conn, [env.fx.b.L1])
      await conn.idle()
      const done = await conn.read('done', 'R-5')
      check(done.kind === 'control' && done.type === 'done', 'R-5', `expected done, got ${conn.describe(done)}`)
    })
    await both(client.carMirror.pull(env.addr, env.fx.F), result)
  })

clientCase('client-idle-too-high', ['R-6'],
  'an idle claiming 7 status-bearing messages read: error protocol',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      await conn.header([env.fx.F])
      await conn.idle(7)
      await clientFails(conn, 'protocol', 'R-6')
    })
    await failure(client.carMirror.pull(env.addr, env.fx.F), result, 'R-6')
  })

clientCase('client-idle-behind', ['R-6'],
  'an idle with n=0 (the pull not yet read) gets no straggler status; the rest and idle{1} complete the pull',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      await conn.header([env.fx.F])
      await conn.block(env.fx.F, env.fx.b.F.bytes)
      await conn.idle(0)
      await expectQuiet(conn, env.quiet, 'R-6')
      await sendAll(conn, env.fx.graph.blocksUnder([env.fx.F]).slice(1))
      await conn.idle()
      const done = await conn.read('done', 'R-5')
      check(done.kind === 'control' && done.type === 'done', 'R-5', `expected done, got ${conn.describe(done)}`)
    })
    await both(client.carMirror.pull(env.addr, env.fx.F), result)
  })

clientCase('client-sync', ['R-7'],
  'a sync in the middle of a pass is answered by a status carrying bb',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      const p = servePull(conn, fixtureDag(env.fx), await readPull(conn, [env.fx.F]))
      await conn.header([env.fx.F])
      const all = env.fx.graph.blocksUnder([env.fx.F])
      await sendBlocks(p, all.slice(0, 3))
      await conn.sync()
      const answer = await conn.read('a status answering sync', 'R-7')
      check(answer.kind === 'control' && answer.type === 'status', 'R-7', `sync answered by ${conn.describe(answer)}`)
      check('bb' in answer.map, 'R-7', 'the status answering sync carries no bb')
      await sendBlocks(p, all.slice(3))
      const outcome = await finishPush(p)
      check(outcome.last.kind === 'control' && outcome.last.type === 'done', 'R-5', `the pull ended with ${conn.describe(outcome.last)}`)
    })
    await both(client.carMirror.pull(env.addr, env.fx.F), result)
  })

clientCase('client-sync-too-high', ['R-7'],
  'a sync claiming 5 status-bearing messages read: error protocol',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      await conn.header([env.fx.F])
      await conn.sync(5)
      await clientFails(conn, 'protocol', 'R-7')
    })
    await failure(client.carMirror.pull(env.addr, env.fx.F), result, 'R-7')
  })

clientCase('client-missing', ['A-3', 'A-4', 'E-4'],
  'a pull of P answered with P, Q, missing{[X]}, idle{1}: error not-found listing X; the pull fails with BlocksNotAvailableError naming X; P and Q stay stored',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.P])
      await conn.header([env.fx.P])
      await sendAll(conn, [env.fx.b.P, env.fx.b.Q])
      await conn.missing([env.fx.X])
      await conn.idle()
      const error = await expectError(conn, ['not-found'], 'A-4', event => event.kind === 'control' && event.type === 'status' && (cidsOf(event.map, 'sr') ?? []).length === 0)
      const cs = cidsOf(error.map, 'cs') ?? []
      check(cs.length === 1 && cs[0].equals(env.fx.X), 'E-4', `error not-found lists ${names(conn, cs)}, expected [X]`)
    })
    const err = await failure(client.carMirror.pull(env.addr, env.fx.P), result, 'A-4')
    check(err.name === 'BlocksNotAvailableError', 'A-4', `the pull failed with ${err.name}: ${err.message}`)
    const cids = (err as Error & { cids?: CID[] }).cids ?? []
    check(cids.some(cid => cid.equals(env.fx.X)), 'A-4', 'BlocksNotAvailableError does not name X')
    check(await client.blockstore.has(env.fx.P) && await client.blockstore.has(env.fx.b.Q.cid), 'A-4', 'P and Q were not kept')
  })

clientCase('client-missing-not-asked-again', ['A-3', 'A-4'],
  'F served without C, L3, L4, L0 and with missing{[C]}: the straggler status wants L4 and L0, not C; once they arrive, error not-found listing C',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      await conn.header([env.fx.F])
      const held = ['F', 'A', 'B', 'L1', 'L2', 'V', 'L5', 'E'].map(name => env.fx.b[name])
      await sendAll(conn, held)
      await conn.missing([env.fx.b.C.cid])
      await conn.idle()
      let sr: CID[] = []
      while (sr.length === 0) {
        const event = await conn.read('a straggler status', 'R-6')
        check(event.kind === 'control' && event.type === 'status', 'R-6', `expected a status, got ${conn.describe(event)}`)
        sr = cidsOf(event.map, 'sr') ?? []
        if (sr.length === 0) {
          await conn.idle()
        }
      }
      check(!sr.some(cid => cid.equals(env.fx.b.C.cid)), 'A-3', 'the straggler status asks again for C, reported missing')
      check(sr.length === 2 && [env.fx.b.L4.cid, env.fx.b.L0.cid].every(cid => sr.some(want => want.equals(cid))), 'R-6', `the straggler status wants ${names(conn, sr)}, expected [L4 L0]`)
      await sendAll(conn, [env.fx.b.L4, env.fx.b.L0])
      await conn.idle()
      const error = await expectError(conn, ['not-found'], 'A-4', event => event.kind === 'control' && event.type === 'status' && (cidsOf(event.map, 'sr') ?? []).length === 0)
      const cs = cidsOf(error.map, 'cs') ?? []
      check(cs.some(cid => cid.equals(env.fx.b.C.cid)), 'E-4', `error not-found lists ${names(conn, cs)}, not C`)
    })
    await failure(client.carMirror.pull(env.addr, env.fx.F), result, 'A-4')
  })

clientCase('client-missing-ignored', ['A-2'],
  'missing listing O, which the client never wanted, changes nothing: the pull completes',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      await conn.header([env.fx.F])
      const all = env.fx.graph.blocksUnder([env.fx.F])
      await sendAll(conn, all.slice(0, 1))
      await conn.missing([env.fx.O])
      await sendAll(conn, all.slice(1))
      await conn.idle()
      const done = await conn.read('done', 'A-2')
      check(done.kind === 'control' && done.type === 'done', 'A-2', `expected done, got ${conn.describe(done)}`)
    })
    await both(client.carMirror.pull(env.addr, env.fx.F), result)
  })

clientCase('client-keepalive', ['K-1'],
  'keepalives every quarter of the client\'s idle timeout for 2.5 idle timeouts, then the blocks: the pull completes',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      await conn.header([env.fx.F])
      for (let i = 0; i < 10; i++) {
        await conn.keepalive()
        await sleep(env.clientIdleMs / 4)
      }
      await sendAll(conn, env.fx.graph.blocksUnder([env.fx.F]))
      await conn.idle()
      const done = await conn.read('done', 'K-1')
      check(done.kind === 'control' && done.type === 'done', 'K-1', `expected done, got ${conn.describe(done)}`)
    })
    await both(client.carMirror.pull(env.addr, env.fx.F), result)
  })

clientCase('client-prefix-not-minimal', ['F-1'],
  'a header whose length prefix is not minimal: error protocol',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      const header = body.header([env.fx.F])
      await conn.raw(new Uint8Array([...paddedVarint(header.byteLength, 2), ...header]), 'header with a 2-byte length prefix')
      await clientFails(conn, 'protocol', 'F-1')
    })
    await failure(client.carMirror.pull(env.addr, env.fx.F), result, 'F-1')
  })

clientCase('client-not-canonical', ['C-1'],
  'an idle with its keys out of order (t before n): error protocol',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      await conn.header([env.fx.F])
      await conn.block(env.fx.F, env.fx.b.F.bytes)
      await conn.raw(Uint8Array.of(0x0b, 0xa2, 0x61, 0x74, 0x64, 0x69, 0x64, 0x6c, 0x65, 0x61, 0x6e, 0x01), 'idle with t before n')
      await clientFails(conn, 'protocol', 'C-1')
    })
    await failure(client.carMirror.pull(env.addr, env.fx.F), result, 'C-1')
  })

clientCase('client-unknown-key', ['C-3'],
  'an idle with an unknown text key is read as a plain idle: the pull completes',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      await conn.header([env.fx.F])
      await sendAll(conn, env.fx.graph.blocksUnder([env.fx.F]))
      // { n: 1, t: 'idle', zz: 'later' }
      await conn.raw(Uint8Array.of(0x12, 0xa3, 0x61, 0x6e, 0x01, 0x61, 0x74, 0x64, 0x69, 0x64, 0x6c, 0x65, 0x62, 0x7a, 0x7a, 0x65, 0x6c, 0x61, 0x74, 0x65, 0x72), 'idle n=1 zz="later"')
      const done = await conn.read('done', 'C-3')
      check(done.kind === 'control' && done.type === 'done', 'C-3', `expected done, got ${conn.describe(done)}`)
    })
    await both(client.carMirror.pull(env.addr, env.fx.F), result)
  })

clientCase('client-error-received', ['E-3'],
  'an error frame from the server: the client ends without answering with an error frame',
  async (env) => {
    const client = await env.client()
    const { result } = await env.serve('receiver', async (conn) => {
      await readPull(conn, [env.fx.F])
      await conn.header([env.fx.F])
      await conn.error('internal', 'the kit gives up')
      await expectEnd(conn, 'E-3', event => event.kind === 'control' && event.type === 'status')
    })
    const err = await failure(client.carMirror.pull(env.addr, env.fx.F), result, 'E-3')
    check(err.name === 'RemoteError', 'E-3', `the pull failed with ${err.name}: ${err.message}`)
  })

clientCase('client-bloom-cap', ['B-7', 'L-2'],
  'a client whose store of 300,000 blocks goes into its first Bloom whole writes a Bloom of at most 1 MiB',
  async (env) => {
    const blockstore = new MemoryBlockstore()
    for (let i = 0; i < 300_000; i++) {
      await blockstore.put(CID.createV1(0x55, Digest.create(0x12, seededBytes(32, 0xb100 + i))), Uint8Array.of(i & 0xff))
    }
    const client = await env.client({ blockstore, smallStoreBlocks: 400_000 })
    const { result } = await env.serve('receiver', async (conn) => {
      const pull = await readPull(conn, [env.fx.F])
      const bb = pull.map.bb
      check(bb instanceof Uint8Array && bb.byteLength > 0 && bb.byteLength <= MIN_BLOOM_BYTES, 'B-7', `the pull's Bloom has ${bb instanceof Uint8Array ? bb.byteLength : 0} bytes`)
      await conn.error('refused', 'the kit only wanted the pull')
    })
    await failure(client.carMirror.pull(env.addr, env.fx.F, { signal: AbortSignal.timeout(60_000) }), result, 'B-7')
  }, 120_000)

// ---- push client ------------------------------------------------------------------------------

/** Reads the push, greets with `greeting` and checks the first pass; returns the model */
async function greetAndPass (env: ClientEnv, conn: Conn, greeting: { bloom: ReturnType<typeof bloomOf> | null, wants?: CID[] }, root: CID = env.fx.F, hints: CID[] = []): Promise<PullSession> {
  await readPush(conn, [root], hints)
  const s = passModel(conn, env.fx, [root])
  await conn.status([], greeting.bloom, true)
  await expectPass(s, [root])
  return s
}

/** Writes done and expects the client to stop and close (S-11) */
async function finishWithDone (conn: Conn): Promise<void> {
  await conn.done()
  await expectEnd(conn, 'S-11', inFlight, true)
}

clientCase('client-push-request', ['P-4', 'S-1', 'S-2', 'S-4', 'S-5', 'S-6', 'S-8', 'S-11', 'C-6'],
  'the push client writes push{rs:[F], hs:[]}, the header, then every block of F once, each after a block linking to it, no identity block, idle{1}; after done it closes',
  async (env) => {
    const client = await env.client({ seed: true })
    const { result } = await env.serve('sender', async (conn) => {
      await greetAndPass(env, conn, { bloom: null })
      await finishWithDone(conn)
    })
    await both(client.carMirror.push(env.addr, env.fx.F), result)
  })

clientCase('client-push-greeting-clears', ['B-6', 'S-7'],
  'a push with hint A (the client holds A\'s subgraph, so its first Bloom holds it) greeted with an empty bb: by the next pass the Bloom is cleared, so a status wanting F gets every block not sent yet, A\'s subgraph included',
  async (env) => {
    const client = await env.client({ seed: true, coldCallBytes: 0 })
    const { result } = await env.serve('sender', async (conn) => {
      await readPush(conn, [env.fx.F], [env.fx.b.A.cid])
      const s = passModel(conn, env.fx, [env.fx.F])
      await conn.status([], null, true)
      // the first pass may still follow the hint Bloom (S-7: no later than the next pass)
      await expectPass(s, [env.fx.F], false)
      await conn.status([env.fx.F])
      await expectPass(s, [env.fx.F])
      const all = env.fx.graph.blocksUnder([env.fx.F])
      check(all.every(block => s.sent.has(block.cid.toString())), 'B-6', `never sent ${names(conn, all.filter(block => !s.sent.has(block.cid.toString())).map(block => block.cid))}`)
      await finishWithDone(conn)
    })
    await both(client.carMirror.push(env.addr, env.fx.F, { hints: [env.fx.b.A.cid] }), result)
  })

clientCase('client-push-bloom-unchanged', ['B-6', 'S-2', 'S-7'],
  'greeted with Bloom{A}, the client skips A\'s subgraph; a status wanting F without bb gets F alone (the Bloom is unchanged)',
  async (env) => {
    const client = await env.client({ seed: true, coldCallBytes: 0 })
    const { result } = await env.serve('sender', async (conn) => {
      const s = await greetAndPass(env, conn, { bloom: bloomOf([env.fx.b.A.cid]) })
      s.asked.add(env.fx.F.toString())
      await conn.status([env.fx.F])
      await expectPass(s, [env.fx.F])
      await finishWithDone(conn)
    })
    await both(client.carMirror.push(env.addr, env.fx.F), result)
  })

clientCase('client-push-missing', ['A-1', 'E-3'],
  'a push of P by a client that lacks X: P, Q, missing{[X]}, idle{1}; the client does not end the session itself; the server\'s error not-found ends it without an error frame back',
  async (env) => {
    const client = await env.client({ seed: true })
    const { result } = await env.serve('sender', async (conn) => {
      await greetAndPass(env, conn, { bloom: null }, env.fx.P)
      await expectQuiet(conn, env.quiet, 'A-1')
      await conn.error('not-found', 'X is unavailable', [env.fx.X])
      await expectEnd(conn, 'E-3', () => false)
    })
    const err = await failure(client.carMirror.push(env.addr, env.fx.P), result, 'A-1')
    check(err.name === 'BlocksNotAvailableError', 'A-1', `the push failed with ${err.name}: ${err.message}`)
  })

clientCase('client-push-want-outside-dag', ['S-3', 'A-1'],
  'a status wanting O (held, outside F\'s DAG) during a push of F: missing{[O]}, idle{2}, O never sent',
  async (env) => {
    const client = await env.client({ seed: true })
    const { result } = await env.serve('sender', async (conn) => {
      const s = await greetAndPass(env, conn, { bloom: null })
      s.asked.add(env.fx.O.toString())
      await conn.status([env.fx.O])
      await expectPass(s, [env.fx.O])
      await finishWithDone(conn)
    })
    await both(client.carMirror.push(env.addr, env.fx.F), result)
  })

clientCase('client-push-identity-want', ['S-12'],
  'a status wanting the identity CID I: the push client writes error protocol',
  async (env) => {
    const client = await env.client({ seed: true })
    const { result } = await env.serve('sender', async (conn) => {
      await greetAndPass(env, conn, { bloom: null })
      await conn.status([env.fx.b.I.cid])
      await expectError(conn, ['protocol'], 'S-12')
    })
    await failure(client.carMirror.push(env.addr, env.fx.F), result, 'S-12')
  })

clientCase('client-push-done-early', ['S-11'],
  'done right after the greeting: the push client stops, writes no error, closes, and its push resolves',
  async (env) => {
    const client = await env.client({ seed: true })
    const { result } = await env.serve('sender', async (conn) => {
      await readPush(conn, [env.fx.F])
      await conn.status([], null, true)
      await finishWithDone(conn)
    })
    await both(client.carMirror.push(env.addr, env.fx.F), result)
  })

clientCase('client-push-refused', ['E-3'],
  'a refused push: the client ends without answering with an error frame, with SessionRefusedError',
  async (env) => {
    const client = await env.client({ seed: true })
    const { result } = await env.serve('sender', async (conn) => {
      await conn.read('the client\'s push', 'T-2')
      await conn.error('refused', 'the kit refuses pushes')
      // the header and the first blocks may already be on their way
      await expectEnd(conn, 'E-3', event => inFlight(event) || (event.kind === 'control' && event.type === 'header'))
    })
    const err = await failure(client.carMirror.push(env.addr, env.fx.F), result, 'E-3')
    check(err.name === 'SessionRefusedError', 'E-3', `the push failed with ${err.name}: ${err.message}`)
  })

clientCase('client-push-status-ack', ['S-9'],
  'a status with a new Bloom and no wants after the pass: idle{2} and nothing else',
  async (env) => {
    const client = await env.client({ seed: true })
    const { result } = await env.serve('sender', async (conn) => {
      const s = await greetAndPass(env, conn, { bloom: null })
      await conn.status([], bloomOf([env.fx.b.Q.cid]))
      const blocks = await expectPass(s, [])
      check(blocks.length === 0, 'S-9', 'blocks were sent for a status without wants')
      await finishWithDone(conn)
    })
    await both(client.carMirror.push(env.addr, env.fx.F), result)
  })

clientCase('client-push-keepalive', ['K-1'],
  'keepalives from the server every quarter of the client\'s idle timeout, for 2.5 idle timeouts after the pass: the push waits and completes on done',
  async (env) => {
    const client = await env.client({ seed: true })
    const { result } = await env.serve('sender', async (conn) => {
      await greetAndPass(env, conn, { bloom: null })
      for (let i = 0; i < 10; i++) {
        await conn.keepalive()
        await expectQuiet(conn, env.clientIdleMs / 4, 'K-1')
      }
      await finishWithDone(conn)
    })
    await both(client.carMirror.push(env.addr, env.fx.F), result)
  })

clientCase('client-push-internal', ['S-13'],
  'a push of a root whose codec the client cannot decode: error internal, not verification',
  async (env) => {
    const client = await env.client()
    const bytes = new TextEncoder().encode('a block in a codec nobody here knows')
    const root = CID.createV1(0x300001, Digest.create(0x12, new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))))
    await client.blockstore.put(root, bytes)
    const { result } = await env.serve('sender', async (conn) => {
      await conn.read('the client\'s push', 'T-2')
      await conn.status([], null, true)
      await expectError(conn, ['internal'], 'S-13', event => event.kind === 'block' || (event.kind === 'control' && event.type === 'header'))
    })
    await failure(client.carMirror.push(env.addr, root), result, 'S-13')
  })

clientCase('client-push-sync', ['S-10'],
  'greeted with a Bloom, then told with the roots held of a Bloom found since, the push client (deferring its raw leaves) writes sync and sends no block until the answer, given 300 ms late',
  async (env) => {
    const client = await env.client({ seed: true, coldCallBytes: 0 })
    const { result } = await env.serve('sender', async (conn) => {
      conn.syncDelay = 300
      await readPush(conn, [env.fx.F], [])
      const s = passModel(conn, env.fx, [env.fx.F])
      // the leaves wait for rh, which comes with the second Bloom: the client has read it before it reaches them
      await conn.status([], bloomOf([env.fx.b.Q.cid]))
      await conn.status([], bloomOf([env.fx.b.Q.cid, env.fx.b.V.cid]), true)
      await expectPass(s, [env.fx.F])
      check(conn.syncsRead > 0, 'S-10', 'helia-car-mirror wrote no sync before its raw leaves (local policy, §8)')
      await finishWithDone(conn)
    })
    await both(client.carMirror.push(env.addr, env.fx.F), result)
  })

clientCase('client-push-greeting-no-sync', ['S-10'],
  'greeted with a Bloom, then told the roots are held with no new Bloom, the push client sends its raw leaves without a sync (local policy, §8: a push\'s greeting is its first Bloom, as a pull\'s request is)',
  async (env) => {
    const client = await env.client({ seed: true, coldCallBytes: 0 })
    const { result } = await env.serve('sender', async (conn) => {
      await readPush(conn, [env.fx.F], [])
      const s = passModel(conn, env.fx, [env.fx.F])
      await conn.status([], bloomOf([env.fx.b.Q.cid]))
      await conn.status([], undefined, true)
      await expectPass(s, [env.fx.F])
      check(conn.syncsRead === 0, 'S-10', 'helia-car-mirror wrote a sync though no Bloom came after its greeting (local policy, §8)')
      await finishWithDone(conn)
    })
    await both(client.carMirror.push(env.addr, env.fx.F), result)
  })

export const CLIENT_CASES: readonly ClientCase[] = cases
