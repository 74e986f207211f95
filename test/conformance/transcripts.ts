/**
 * Server-role transcripts: the kit is the client, the peer under test the
 * server. Each transcript writes frames by hand and checks the peer's frames
 * and outcome against the numbered rules of docs/PROTOCOL.md it cites. They
 * run in the test suite against helia-car-mirror and, through
 * `npm run conformance -- --peer MULTIADDR`, against any peer.
 */

import { concat } from 'uint8arrays/concat'
import { KitBloom, bloomOf } from './bloom.ts'
import { check } from './conn.ts'
import { pushDag } from './fixture.ts'
import { awaitRootsHeld, expectDone, expectEnd, expectError, expectHeader, expectNotServed, expectPass, expectQuiet, finishPush, inFlight, names, openPull, openPush, pullBack, sendBlocks, status, takeStatus, unknownCids } from './session.ts'
import { MIN_BLOOM_BYTES, MIN_LIST, MIN_ROOTS, body, cbor, cidsOf, frame, paddedVarint, raw, uintOf, varint } from './wire.ts'
import type { Ctx } from './session.ts'
import type { CID } from 'multiformats/cid'

/** What the peer must be set up with for a transcript */
export type Need =
  /** it holds the fixture (test/conformance/fixture.ts) */
  | 'fixture'
  /** it accepts pushes from the kit */
  | 'push-allowed'
  /** it refuses pushes from the kit */
  | 'push-refused'

export interface Transcript {
  id: string
  /** Rule ids of docs/PROTOCOL.md this transcript checks */
  rules: string[]
  title: string
  needs: Need[]
  run(ctx: Ctx): Promise<void>
}

const transcripts: Transcript[] = []

function transcript (id: string, rules: string[], needs: Need[], title: string, run: (ctx: Ctx) => Promise<void>): void {
  transcripts.push({ id, rules, title, needs, run })
}

/** A first frame the server must reject: the error code, and nothing before it; `peer` is the role the server would play */
function rejectsFirstFrame (id: string, rules: string[], title: string, bytes: (ctx: Ctx) => Uint8Array, codes: string[] = ['protocol'], peer: 'sender' | 'receiver' = 'sender'): void {
  transcript(id, rules, [], title, async (ctx) => {
    const conn = await ctx.open(peer)
    await conn.raw(bytes(ctx), `(${title})`)
    await expectError(conn, codes, rules[0])
  })
}

/** The body of a pull of F written key by key (for encoding transcripts) */
function pullEntries (ctx: Ctx, extra: Array<[string, Uint8Array]> = []): Array<[string, Uint8Array]> {
  return [['t', raw.text('pull')], ...extra, ['rs', raw.links([ctx.fx.F])], ['sr', raw.array([])]]
}

/** Sorted canonically: shorter keys first, then bytewise (the keys here are ASCII) */
function canonical (entries: Array<[string, Uint8Array]>): Array<[string, Uint8Array]> {
  const before = (a: string, b: string): number => {
    if (a.length !== b.length) {
      return a.length - b.length
    }
    return a < b ? -1 : 1
  }
  return [...entries].sort(([a], [b]) => before(a, b))
}

/** Pulls all of F, expecting the header and one full pass */
async function fullPull (ctx: Ctx): Promise<Awaited<ReturnType<typeof openPull>>> {
  const s = await openPull(ctx, [ctx.fx.F])
  await expectHeader(s.conn, [ctx.fx.F])
  await expectPass(s, [ctx.fx.F])
  return s
}

// ---- pulls: what a sender sends ------------------------------------------------------

transcript('pull-whole-dag', ['T-1', 'T-2', 'P-2', 'P-3', 'S-1', 'S-2', 'S-4', 'S-5', 'S-6', 'S-8', 'S-11', 'C-1', 'C-6', 'F-4', 'F-5'], ['fixture'],
  'a pull of F with no Bloom: header [F], then every block of F once (the empty block E and the CIDv0 block V included, the identity block I never), each after a block linking to it, then idle{n:1}; after done the sender closes',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F])
    await expectHeader(s.conn, [ctx.fx.F])
    const blocks = await expectPass(s, [ctx.fx.F])
    check(blocks[0]?.cid.equals(ctx.fx.F), 'S-4', `the first block is ${blocks[0] == null ? 'none' : s.conn.name(blocks[0].cid)}, not the root F`)
    const v = blocks.find(b => b.cid.equals(ctx.fx.b.V.cid))
    check(v?.body[0] === 0x12, 'F-5', 'the CIDv0 block V is not framed as a bare sha2-256 multihash')
    await s.conn.done()
    await expectEnd(s.conn, 'S-11', inFlight, true)
  })

transcript('pull-wants', ['P-1', 'S-2', 'S-3', 'S-4'], ['fixture'],
  'a pull of F wanting A: A and what is below it, nothing else',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F], [ctx.fx.b.A.cid])
    await expectHeader(s.conn, [ctx.fx.F])
    await expectPass(s, [ctx.fx.b.A.cid])
  })

/** A block's CAR Pool bucket out of `count`: the first four bytes of its digest, big-endian, modulo `count` (S-15) */
function bucketOf (cid: CID, count: number): number {
  const digest = cid.multihash.digest
  return (digest[0] * 0x1000000 + digest[1] * 0x10000 + digest[2] * 0x100 + digest[3]) % count
}

/**
 * Reads the sender's frames up to the idle acknowledging every status the
 * kit wrote, checking each block against `mayCome`; returns the blocks' names
 */
async function blocksUntilIdle (conn: Awaited<ReturnType<Ctx['open']>>, rule: string, mayCome: (cid: CID) => string | undefined): Promise<Set<string>> {
  const got = new Set<string>()
  while (true) {
    const event = await conn.read('blocks, then idle', rule)
    if (event.kind === 'block') {
      const refusal = mayCome(event.cid)
      check(refusal == null, rule, refusal ?? '')
      got.add(event.cid.toString())
      continue
    }
    check(event.kind === 'control' && event.type === 'idle', rule, `expected blocks or idle, got ${conn.describe(event)}`)
    if (event.kind === 'control' && uintOf(event.map, 'n') === conn.statusesWritten) {
      return got
    }
  }
}

transcript('pull-interior', ['S-15', 'S-6', 'S-2'], ['fixture'],
  'a pull of F with an empty shard: every block of F that is not a raw leaf and no raw leaf, then idle{n:1}; a status whose shard owns every bucket, wanting L1: L1, then idle{n:2}',
  async (ctx) => {
    const { F, b, graph } = ctx.fx
    const conn = await ctx.open('sender', graph)
    conn.statusesWritten++
    await conn.send(cbor({ t: 'pull', rs: [F], sr: [], sn: 4, sh: Uint8Array.of(0) }), 'pull rs=[F] sr=[] sn=4 sh=none')
    await expectHeader(conn, [F])
    const got = await blocksUntilIdle(conn, 'S-15', cid => cid.code !== 0x55 ? undefined : `${conn.name(cid)} is a raw leaf, and the shard owns no bucket`)
    const interior = graph.blocksUnder([F]).filter(block => block.cid.code !== 0x55)
    const absent = interior.filter(block => !got.has(block.cid.toString()))
    check(absent.length === 0, 'S-6', `the sender did not send ${names(conn, absent.map(block => block.cid))}, which are not raw leaves`)

    conn.statusesWritten++
    await conn.send(cbor({ t: 'status', sr: [b.L1.cid], sn: 4, sh: Uint8Array.of(0x0f) }), 'status sr=[L1] sn=4 sh=all')
    const asked = await blocksUntilIdle(conn, 'S-2', cid => cid.equals(b.L1.cid) ? undefined : `${conn.name(cid)} was sent; only L1 was asked`)
    check(asked.has(b.L1.cid.toString()), 'S-2', 'the want L1, inside the widened shard, was not sent')
  })

transcript('pull-sharded', ['S-15', 'S-2', 'S-6'], ['fixture'],
  'a pull of F with a shard owning the bucket of L1: every block of F but the raw leaves of other buckets, then idle{n:1}; a status wanting a raw leaf outside the shard and one inside it: only the one inside, then idle{n:2}',
  async (ctx) => {
    const { F, b, graph } = ctx.fx
    const leaves = graph.blocksUnder([F]).filter(block => block.cid.code === 0x55).map(block => block.cid)
    // the fewest buckets that leave some raw leaves of F outside the bucket of L1
    const count = [2, 3, 4, 5, 6, 7, 8].find(n => leaves.some(cid => bucketOf(cid, n) !== bucketOf(b.L1.cid, n))) ?? 8
    const owned = bucketOf(b.L1.cid, count)
    const inShard = (cid: CID): boolean => cid.code !== 0x55 || bucketOf(cid, count) === owned
    const mask = new Uint8Array(Math.ceil(count / 8))
    mask[owned >> 3] |= 1 << (owned & 7)
    const conn = await ctx.open('sender', graph)
    conn.statusesWritten++
    await conn.send(cbor({ t: 'pull', rs: [F], sr: [], sn: count, sh: mask }), `pull rs=[F] sr=[] sn=${count} sh=bucket ${owned}`)
    await expectHeader(conn, [F])
    const got = await blocksUntilIdle(conn, 'S-15', cid => inShard(cid) ? undefined : `${conn.name(cid)} is a raw leaf of bucket ${bucketOf(cid, count)}, outside the shard (bucket ${owned} of ${count})`)
    const expected = graph.blocksUnder([F]).filter(block => inShard(block.cid))
    const absent = expected.filter(block => !got.has(block.cid.toString()))
    check(absent.length === 0, 'S-6', `the sender did not send ${names(conn, absent.map(block => block.cid))}, which its shard holds`)

    const outside = leaves.find(cid => !inShard(cid)) as CID
    conn.statusesWritten++
    await conn.send(cbor({ t: 'status', sr: [outside, b.L1.cid] }), `status sr=[${conn.name(outside)} L1]`)
    const again = await blocksUntilIdle(conn, 'S-15', cid => cid.equals(b.L1.cid) ? undefined : `${conn.name(cid)} was sent; only L1 of the two wants is inside the shard`)
    check(again.has(b.L1.cid.toString()), 'S-2', 'the want L1, inside the shard, was not sent again')
  })

transcript('pull-cidv0-want', ['F-5', 'S-2'], ['fixture'],
  'a want named by a CIDv0 (V): V, framed from byte 0x12, then L4',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F], [ctx.fx.b.V.cid])
    await expectHeader(s.conn, [ctx.fx.F])
    const [v] = await expectPass(s, [ctx.fx.b.V.cid])
    check(v.body[0] === 0x12, 'F-5', 'V is not framed as a bare sha2-256 multihash')
  })

transcript('pull-bloom', ['B-1', 'B-2', 'B-3', 'B-4', 'S-6'], ['fixture'],
  'a pull of F with a 200-byte Bloom (not a power of two) holding A and L5: A, L5 and what is only below A are skipped',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F], [], bloomOf([ctx.fx.b.A.cid, ctx.fx.b.L5.cid]))
    await expectHeader(s.conn, [ctx.fx.F])
    const blocks = await expectPass(s, [ctx.fx.F])
    check(!blocks.some(b => b.cid.equals(ctx.fx.b.A.cid)), 'B-3', 'A was sent although the Bloom holds it')
  })

transcript('pull-bloom-holds-want', ['S-2', 'S-6'], ['fixture'],
  'a Bloom holding the root F and B: F is still sent (a want), B and what is only below it are not',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F], [], bloomOf([ctx.fx.F, ctx.fx.b.B.cid]))
    await expectHeader(s.conn, [ctx.fx.F])
    await expectPass(s, [ctx.fx.F])
  })

transcript('pull-empty-bloom', ['C-4', 'B-6'], ['fixture'],
  'a pull whose bb is present but empty (bk 0) has no Bloom: every block is sent',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F], [], null)
    await expectHeader(s.conn, [ctx.fx.F])
    await expectPass(s, [ctx.fx.F])
  })

transcript('status-bloom-unchanged', ['B-6', 'S-2', 'S-7', 'S-8'], ['fixture'],
  'after a pass under Bloom{A}, a status wanting F without bb leaves the Bloom as it is: only F is sent again, idle{n:2}',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F], [], bloomOf([ctx.fx.b.A.cid]))
    await expectHeader(s.conn, [ctx.fx.F])
    await expectPass(s, [ctx.fx.F])
    await status(s, [ctx.fx.F])
    await expectPass(s, [ctx.fx.F])
  })

transcript('status-bloom-cleared', ['B-6', 'S-7'], ['fixture'],
  'after a pass under Bloom{A}, a status wanting F with bb empty clears the Bloom: A and the blocks below it that were skipped are now sent',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F], [], bloomOf([ctx.fx.b.A.cid]))
    await expectHeader(s.conn, [ctx.fx.F])
    await expectPass(s, [ctx.fx.F])
    await status(s, [ctx.fx.F], null)
    const blocks = await expectPass(s, [ctx.fx.F])
    check(blocks.some(b => b.cid.equals(ctx.fx.b.A.cid)), 'B-6', 'A was not sent after the Bloom was cleared')
  })

transcript('status-bloom-replaced', ['B-6', 'S-7'], ['fixture'],
  'after a pass under Bloom{A}, a status wanting F with Bloom{C} replaces it: A, L1, L2, V, L4 are sent, C and L3 are not',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F], [], bloomOf([ctx.fx.b.A.cid]))
    await expectHeader(s.conn, [ctx.fx.F])
    await expectPass(s, [ctx.fx.F])
    await status(s, [ctx.fx.F], bloomOf([ctx.fx.b.C.cid]))
    await expectPass(s, [ctx.fx.F])
  })

transcript('status-want-again', ['S-2', 'S-9'], ['fixture'],
  'after a full pass, a status wanting A again: A (and only A) is sent again, then idle{n:2}',
  async (ctx) => {
    const s = await fullPull(ctx)
    await status(s, [ctx.fx.b.A.cid])
    const blocks = await expectPass(s, [ctx.fx.b.A.cid])
    check(blocks.length === 1, 'S-2', `expected A alone, got ${names(s.conn, blocks.map(b => b.cid))}`)
  })

transcript('status-bloom-only', ['S-9'], ['fixture'],
  'a status with no wants and a new Bloom, read while idle, is acknowledged by idle{n:2} and nothing else',
  async (ctx) => {
    const s = await fullPull(ctx)
    await status(s, [], bloomOf([ctx.fx.b.Q.cid]))
    const blocks = await expectPass(s, [])
    check(blocks.length === 0, 'S-9', 'blocks were sent for a status without wants')
  })

transcript('sync-waits-for-status', ['S-10', 'R-7'], ['fixture'],
  'if the sender writes sync, it sends no block until the status answering it (answered 300 ms late); helia-car-mirror syncs here (deferred leaves after a Bloom)',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F], [ctx.fx.b.V.cid])
    await expectHeader(s.conn, [ctx.fx.F])
    await expectPass(s, [ctx.fx.b.V.cid])
    s.conn.syncDelay = 300
    // a Bloom from the receiver, then a pass with raw leaves below interior blocks
    await status(s, [ctx.fx.b.A.cid], bloomOf([ctx.fx.b.Q.cid]))
    await expectPass(s, [ctx.fx.b.A.cid])
    if (s.conn.syncsRead > 0) {
      ctx.note('sync')
    }
  })

// ---- pulls: partial availability ------------------------------------------------------

transcript('pull-partial', ['A-1', 'E-3'], ['fixture'],
  'a pull of P, whose link X nobody holds: P and Q, then missing{cs:[X]}, then idle{n:1}; the sender does not end the session by itself, and ends without an error frame when the kit sends error not-found',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.P])
    await expectHeader(s.conn, [ctx.fx.P])
    await expectPass(s, [ctx.fx.P])
    await expectQuiet(s.conn, ctx.quiet, 'A-1')
    await s.conn.error('not-found', 'X is unavailable', [ctx.fx.X])
    await expectEnd(s.conn, 'E-3', () => false)
  })

transcript('pull-unheld-root', ['A-1', 'S-1'], ['fixture'],
  'a pull of a root nobody holds: header [X], missing{cs:[X]}, idle{n:1}',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.X])
    await expectHeader(s.conn, [ctx.fx.X])
    await expectPass(s, [ctx.fx.X])
  })

transcript('pull-want-outside-dag', ['S-3', 'A-1'], ['fixture'],
  'a pull of F wanting O, a block the peer holds outside F\'s DAG: O is never sent; missing{cs:[O]}, idle{n:1}',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F], [ctx.fx.O])
    await expectHeader(s.conn, [ctx.fx.F])
    await expectPass(s, [ctx.fx.O])
  })

transcript('status-want-outside-dag', ['S-3', 'A-1'], ['fixture'],
  'after a full pass, a status wanting O (outside F\'s DAG) and Q (in P\'s DAG, not F\'s): missing{cs:[O Q]}, idle{n:2}, no block',
  async (ctx) => {
    const s = await fullPull(ctx)
    await status(s, [ctx.fx.O, ctx.fx.b.Q.cid])
    await expectPass(s, [ctx.fx.O, ctx.fx.b.Q.cid])
  })

transcript('pull-identity-want', ['S-12'], ['fixture'],
  'a pull wanting the identity CID I: error protocol',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F], [ctx.fx.b.I.cid])
    await expectError(s.conn, ['protocol'], 'S-12', event => event.kind === 'control' && event.type === 'header')
  })

transcript('status-identity-want', ['S-12'], ['fixture'],
  'after a full pass, a status wanting the identity CID I: error protocol',
  async (ctx) => {
    const s = await fullPull(ctx)
    await status(s, [ctx.fx.b.I.cid])
    await expectError(s.conn, ['protocol'], 'S-12')
  })

// ---- pulls: the end of a session ---------------------------------------------------------

transcript('done-mid-pass', ['S-11'], ['fixture'],
  'done written right after the header: the sender stops, writes no error and closes its writable end',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F])
    await expectHeader(s.conn, [ctx.fx.F])
    await s.conn.done()
    await expectEnd(s.conn, 'S-11', inFlight, true)
  })

transcript('error-from-client', ['E-3'], ['fixture'],
  'an error frame from the client after the header: the sender ends the session without answering with an error frame',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F])
    await expectHeader(s.conn, [ctx.fx.F])
    await s.conn.error('internal', 'the kit gives up')
    await expectEnd(s.conn, 'E-3', inFlight)
  })

transcript('pull-wrong-direction', ['C-2'], ['fixture'],
  'an idle (a sender\'s message) from the pulling client: error protocol',
  async (ctx) => {
    const s = await fullPull(ctx)
    await s.conn.send(body.idle(1), 'idle n=1 (a sender\'s message)')
    await expectError(s.conn, ['protocol'], 'C-2')
  })

transcript('pull-keepalive', ['K-1'], ['fixture'],
  'keepalives from the client, before and after a pass, are accepted and not acknowledged, keep the session open, and do not count as statuses',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F])
    await s.conn.keepalive()
    await expectHeader(s.conn, [ctx.fx.F])
    await expectPass(s, [ctx.fx.F])
    const until = Date.now() + ctx.keepaliveMs
    while (Date.now() < until) {
      await s.conn.keepalive()
      await expectQuiet(s.conn, ctx.keepaliveMs / 8, 'K-1')
    }
    await status(s, [ctx.fx.b.A.cid])
    await expectPass(s, [ctx.fx.b.A.cid])
  })

// ---- opening a session ----------------------------------------------------------------------

rejectsFirstFrame('first-frame-status', ['T-2'], 'a status as the first frame: error protocol',
  ctx => frame(body.status([ctx.fx.F])))

rejectsFirstFrame('first-frame-block', ['T-2'], 'a block as the first frame: error protocol',
  ctx => frame(body.block(ctx.fx.b.L1.cid, ctx.fx.b.L1.bytes)))

rejectsFirstFrame('pull-no-roots', ['P-2'], 'a pull with no roots: error protocol',
  () => frame(body.pull([])))

rejectsFirstFrame('push-no-roots', ['P-6'], 'a push with no roots: error protocol (or refused)',
  () => frame(body.push([])), ['protocol', 'refused'], 'receiver')

rejectsFirstFrame('unknown-type', ['C-2'], 'a control message of unknown type "hello": error protocol',
  () => frame(raw.map([['t', raw.text('hello')]])))

// ---- frames -------------------------------------------------------------------------------------

rejectsFirstFrame('prefix-not-minimal', ['F-1'], 'a length prefix written in two bytes (8b 00), with no body yet: error protocol at once',
  () => paddedVarint(11, 2))

rejectsFirstFrame('prefix-not-minimal-pull', ['F-1'], 'a whole pull whose length prefix has a needless 0x80 0x00 tail: error protocol',
  ctx => { const pull = body.pull([ctx.fx.F]); return concat([paddedVarint(pull.byteLength, 3), pull]) })

rejectsFirstFrame('prefix-over-limit', ['F-2', 'L-3'], 'a length prefix of 2^36 bytes, followed by 16 bytes: error limit at once',
  () => concat([varint(2 ** 36), new Uint8Array(16)]), ['limit'])

rejectsFirstFrame('prefix-too-long', ['F-2'], 'a length prefix of 10 bytes: error protocol or limit',
  () => Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), ['protocol', 'limit'])

rejectsFirstFrame('empty-frame', ['F-3'], 'a frame with an empty body (00): error protocol',
  () => Uint8Array.of(0x00))

rejectsFirstFrame('bad-first-byte', ['F-3', 'E-1'], 'a frame whose body starts with 0x05: error protocol',
  () => frame(Uint8Array.of(0x05, 0x01, 0x02)))

rejectsFirstFrame('trailing-bytes', ['F-6'], 'a pull followed, inside the same frame, by one more byte: error protocol',
  ctx => frame(concat([body.pull([ctx.fx.F]), Uint8Array.of(0x00)])))

rejectsFirstFrame('cidv0-malformed', ['F-5'], 'a pull whose root is a CIDv0 with a 20-byte digest: error protocol',
  () => frame(raw.map([['t', raw.text('pull')], ['rs', raw.array([concat([Uint8Array.of(0xd8, 0x2a), raw.bytes(concat([Uint8Array.of(0x00, 0x12, 0x14), new Uint8Array(20).fill(7)]))])])], ['sr', raw.array([])]])))

// ---- control message encoding --------------------------------------------------------------

rejectsFirstFrame('cbor-key-order', ['C-1'], 'a pull with its keys in the order rs, sr, t: error protocol',
  ctx => frame(raw.map([['rs', raw.links([ctx.fx.F])], ['sr', raw.array([])], ['t', raw.text('pull')]])))

rejectsFirstFrame('cbor-int-not-minimal', ['C-1'], 'a pull whose bk (5) is written in two bytes (18 05): error protocol',
  ctx => frame(raw.map(canonical([...pullEntries(ctx), ['bb', raw.bytes(bloomOf([]).bytes)], ['bk', raw.uint(5, 1)]]))))

rejectsFirstFrame('cbor-length-not-minimal', ['C-1'], 'a pull whose t is a text string with a one-byte length (78 04 pull): error protocol',
  ctx => frame(raw.map([['t', concat([raw.head(3, 4, 1), new TextEncoder().encode('pull')])], ['rs', raw.links([ctx.fx.F])], ['sr', raw.array([])]])))

rejectsFirstFrame('cbor-duplicate-key', ['C-1'], 'a pull with the key rs twice: error protocol',
  ctx => frame(raw.map([['t', raw.text('pull')], ['rs', raw.links([ctx.fx.F])], ['rs', raw.links([ctx.fx.F])], ['sr', raw.array([])]])))

rejectsFirstFrame('cbor-indefinite', ['C-1'], 'a pull whose rs is an indefinite-length array (9f … ff): error protocol',
  ctx => frame(raw.map([['t', raw.text('pull')], ['rs', concat([Uint8Array.of(0x9f), raw.link(ctx.fx.F), Uint8Array.of(0xff)])], ['sr', raw.array([])]])))

rejectsFirstFrame('cbor-undefined', ['C-1'], 'a pull with an unknown key x holding undefined (f7): error protocol',
  ctx => frame(raw.map(canonical(pullEntries(ctx, [['x', Uint8Array.of(0xf7)]])))))

rejectsFirstFrame('cbor-other-tag', ['C-1', 'C-3'], 'a pull with an unknown key x holding tag 1 (c1 00): error protocol',
  ctx => frame(raw.map(canonical(pullEntries(ctx, [['x', Uint8Array.of(0xc1, 0x00)]])))))

rejectsFirstFrame('unknown-key-array', ['C-3'], 'a pull with an unknown key zz holding an array: error protocol',
  ctx => frame(raw.map(canonical(pullEntries(ctx, [['zz', raw.array([raw.uint(1)])]])))))

rejectsFirstFrame('unknown-key-long-bytes', ['C-3'], 'a pull with an unknown key zz holding 257 bytes: error protocol',
  ctx => frame(raw.map(canonical(pullEntries(ctx, [['zz', raw.bytes(new Uint8Array(257))]])))))

rejectsFirstFrame('wrong-type-roots', ['C-4'], 'a pull whose rs is a text string: error protocol',
  () => frame(raw.map([['t', raw.text('pull')], ['rs', raw.text('F')], ['sr', raw.array([])]])))

rejectsFirstFrame('wrong-type-in-list', ['C-4'], 'a pull whose rs holds an integer: error protocol',
  () => frame(raw.map([['t', raw.text('pull')], ['rs', raw.array([raw.uint(7)])], ['sr', raw.array([])]])))

rejectsFirstFrame('item-flood', ['C-4', 'C-5'], 'a pull whose sr holds 40,000 empty maps: error limit or protocol',
  ctx => frame(raw.map([['t', raw.text('pull')], ['rs', raw.links([ctx.fx.F])], ['sr', concat([raw.head(4, 40_000), new Uint8Array(40_000).fill(0xa0)])]])), ['limit', 'protocol'])

rejectsFirstFrame('bloom-bk-zero', ['B-5'], 'a pull with a 200-byte Bloom and bk 0: error limit',
  ctx => frame(raw.map(canonical([...pullEntries(ctx), ['bb', raw.bytes(new Uint8Array(200).fill(0xff))], ['bk', raw.uint(0)]]))), ['limit'])

rejectsFirstFrame('bloom-bk-without-bb', ['B-5'], 'a pull with bk 3 and no bb: error protocol',
  ctx => frame(raw.map(canonical([...pullEntries(ctx), ['bk', raw.uint(3)]]))))

rejectsFirstFrame('cid-padded-varint', ['F-5'], 'a pull whose root CID writes its codec (0x71) as the padded varint f1 00: error protocol',
  ctx => frame(raw.map([['t', raw.text('pull')], ['rs', raw.array([concat([Uint8Array.of(0xd8, 0x2a), raw.bytes(concat([Uint8Array.of(0x00, 0x01, 0xf1, 0x00), ctx.fx.F.multihash.bytes]))])])], ['sr', raw.array([])]])))

rejectsFirstFrame('bloom-bk-huge', ['B-5'], 'a pull with a 200-byte Bloom and bk 2^32: error limit',
  ctx => frame(raw.map(canonical([...pullEntries(ctx), ['bb', raw.bytes(new Uint8Array(200).fill(0xff))], ['bk', raw.uint(2 ** 32)]]))), ['limit'])

transcript('unknown-scalar-keys', ['C-3'], ['fixture'],
  'a pull with unknown keys holding null, true, an integer, a float, text and 256 bytes is served as if they were not there',
  async (ctx) => {
    const conn = await ctx.open('sender')
    const extra: Array<[string, Uint8Array]> = [
      ['zn', Uint8Array.of(0xf6)], ['zt', Uint8Array.of(0xf5)], ['zi', raw.uint(300)], ['zf', Uint8Array.of(0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0)],
      ['zs', raw.text('future')], ['zb', raw.bytes(new Uint8Array(256).fill(1))]
    ]
    conn.statusesWritten++
    await conn.send(raw.map(canonical(pullEntries(ctx, extra))), 'pull rs=[F] sr=[] zn zt zi zf zs zb (unknown keys)')
    await expectHeader(conn, [ctx.fx.F])
    await expectPass({ conn, graph: ctx.fx.graph, roots: [ctx.fx.F], sent: new Set(), linked: new Set([ctx.fx.F.toString()]), asked: new Set([ctx.fx.F.toString()]) }, [ctx.fx.F])
  })

// ---- limits every peer accepts -------------------------------------------------------------

transcript('min-bloom', ['L-1', 'B-5'], ['fixture'],
  'a pull with a 1 MiB Bloom (all zero bits) and 64 hashes is accepted: every block is sent',
  async (ctx) => {
    const s = await openPull(ctx, [ctx.fx.F], [], new KitBloom(MIN_BLOOM_BYTES, 64))
    await expectHeader(s.conn, [ctx.fx.F])
    await expectPass(s, [ctx.fx.F])
  })

transcript('min-list', ['L-1', 'A-1'], ['fixture'],
  'a pull wanting F and 9,999 blocks nobody holds (10,000 CIDs in one list): F\'s DAG, then missing listing the 9,999, then idle{n:1}',
  async (ctx) => {
    const wants = [ctx.fx.F, ...unknownCids(MIN_LIST - 1, 1)]
    const s = await openPull(ctx, [ctx.fx.F], wants)
    await expectHeader(s.conn, [ctx.fx.F])
    await expectPass(s, wants)
  })

transcript('min-roots', ['L-1', 'P-2', 'S-1', 'A-1'], ['fixture'],
  'a pull of 1,000 roots (F and 999 nobody holds): a header listing all 1,000 in order, F\'s DAG, missing listing the 999, idle{n:1}',
  async (ctx) => {
    const roots = [ctx.fx.F, ...unknownCids(MIN_ROOTS - 1, 2)]
    const s = await openPull(ctx, roots)
    await expectHeader(s.conn, roots)
    await expectPass(s, roots)
  })

// ---- pushes ------------------------------------------------------------------------------------------

transcript('push-refused', ['P-5', 'E-1', 'E-2'], ['push-refused'],
  'a push to a server that does not accept it: error refused as the first frame, then the end; the pushed root is not stored',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G', 'M1'])
    await expectError(p.conn, ['refused'], 'P-5')
    await expectNotServed(ctx, dag.graph, dag.root, 'P-5')
  })

transcript('push-complete', ['P-4', 'P-6', 'P-7', 'R-3', 'R-5', 'C-6'], ['push-allowed'],
  'a push of a fresh DAG: the greeting carries bb (and no rh), exactly one later status has rh: true, done, then the server closes at once; the DAG is then served back',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, dag.graph.blocksUnder([dag.root]))
    const outcome = await finishPush(p)
    await expectDone(p, outcome)
    check(p.statuses[0].map.rh !== true, 'P-7', 'the greeting says rh: true before the root arrived')
    if ('bb' in p.statuses[0].map && (p.statuses[0].map.bb as Uint8Array).byteLength > 0) {
      check(new KitBloom(0, uintOf(p.statuses[0].map, 'bk') ?? 1, p.statuses[0].map.bb as Uint8Array).holds(dag.root) === false, 'P-6', 'the greeting\'s Bloom holds the fresh root')
    }
    check(p.rootsHeld === 1, 'P-7', `${p.rootsHeld} statuses said rh: true`)
    await pullBack(ctx, dag.graph, dag.root)
  })

transcript('push-roots-already-held', ['P-6', 'P-7', 'R-5'], ['push-allowed', 'fixture'],
  'a push of F, which the server holds: the greeting carries bb and rh: true, then done, then the server closes',
  async (ctx) => {
    const p = await openPush(ctx, { graph: ctx.fx.graph, root: ctx.fx.F, b: ctx.fx.b })
    const first = await p.conn.read('the greeting', 'P-6')
    check(first.kind === 'control' && first.type === 'status', 'P-6', `the first frame is ${p.conn.describe(first)}, not a status`)
    takeStatus(p, first)
    check(first.map.rh === true, 'P-7', 'the greeting of a server holding every root lacks rh: true')
    const outcome = await finishPush(p)
    await expectDone(p, outcome)
  })

transcript('push-verification', ['R-1'], ['push-allowed'],
  'a pushed root whose bytes do not hash to its CID: error verification; the root is not stored',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag)
    await p.conn.block(dag.root, new TextEncoder().encode('not the root'))
    await expectError(p.conn, ['verification'], 'R-1', event => event.kind === 'control' && event.type === 'status')
    await expectNotServed(ctx, dag.graph, dag.root, 'R-1')
  })

transcript('push-undecodable', ['R-1'], ['push-allowed'],
  'a pushed dag-cbor block whose bytes hash right but are not CBOR: error verification',
  async (ctx) => {
    const dag = await pushDag('undecodable')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G', 'M1'])
    await expectError(p.conn, ['verification'], 'R-1', event => event.kind === 'control' && event.type === 'status')
  })

transcript('push-unrequested', ['R-2', 'R-6'], ['push-allowed'],
  'M1 pushed before its parent G is not stored: after idle the server asks for exactly [M1] again',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['M1', 'G', 'M2', 'l3', 'l4', 'l1', 'l2'])
    const outcome = await finishPush(p)
    check(outcome.stragglers.length > 0, 'R-2', `no straggler status; the push ended with ${p.conn.describe(outcome.last)}`)
    check(outcome.stragglers[0].length === 1 && outcome.stragglers[0][0].equals(dag.b.M1.cid), 'R-2',
      `the first straggler status wants ${names(p.conn, outcome.stragglers[0])}, expected [M1]`)
    await expectDone(p, outcome)
  })

transcript('push-stragglers', ['R-3', 'R-6'], ['push-allowed'],
  'only the root pushed, then idle: a straggler status wanting exactly G\'s children M1 and M2; after them, done',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G'])
    const outcome = await finishPush(p)
    const first = outcome.stragglers[0] ?? []
    check(first.length === 2 && [dag.b.M1.cid, dag.b.M2.cid].every(cid => first.some(want => want.equals(cid))), 'R-6',
      `the first straggler status wants ${names(p.conn, first)}, expected [M1 M2]`)
    await expectDone(p, outcome)
  })

transcript('push-idle-too-high', ['R-6'], ['push-allowed'],
  'an idle claiming 99 statuses read: error protocol',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G'])
    await p.conn.idle(99)
    await expectError(p.conn, ['protocol'], 'R-6', event => event.kind === 'control' && event.type === 'status' && (cidsOf(event.map, 'sr') ?? []).length === 0)
  })

transcript('push-idle-behind', ['R-6'], ['push-allowed'],
  'an idle with n=0 (behind the greeting) gets no straggler status; the next idle acknowledging every status does',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G'])
    await p.conn.idle(0)
    const until = Date.now() + ctx.quiet
    for (let left = ctx.quiet; left > 0; left = until - Date.now()) {
      const event = await p.conn.poll(left)
      if (event == null) {
        break
      }
      check(event.kind === 'control' && (event.type === 'status' || event.type === 'keepalive'), 'R-6', `after idle{n:0}: ${p.conn.describe(event)}`)
      if (event.type === 'status') {
        check(takeStatus(p, event).length === 0, 'R-6', 'a straggler status answered an idle that had not read every status')
      }
    }
    const outcome = await finishPush(p)
    check(outcome.stragglers.length > 0, 'R-6', 'no straggler status after an idle acknowledging every status')
    await expectDone(p, outcome)
  })

transcript('push-sync', ['R-7'], ['push-allowed'],
  'a sync after the rh status: the next status carries bb; the push then completes',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G', 'M1', 'l1', 'l2'])
    await awaitRootsHeld(p)
    await p.conn.sync()
    const answer = await p.conn.read('a status answering sync', 'R-7')
    check(answer.kind === 'control' && answer.type === 'status', 'R-7', `sync was answered by ${p.conn.describe(answer)}`)
    check('bb' in answer.map, 'R-7', 'the status answering sync carries no bb')
    takeStatus(p, answer)
    await sendBlocks(p, ['M2', 'l3', 'l4'])
    await expectDone(p, await finishPush(p))
  })

transcript('push-sync-too-high', ['R-7'], ['push-allowed'],
  'a sync claiming 99 statuses read: error protocol',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G'])
    await p.conn.sync(99)
    await expectError(p.conn, ['protocol'], 'R-7', event => event.kind === 'control' && event.type === 'status')
  })

transcript('push-missing', ['A-3', 'A-4', 'E-4'], ['push-allowed'],
  'a push of G ─> l1, X where the kit lacks X: missing{cs:[X]} and idle end the push with error not-found listing X; G and l1 stay stored',
  async (ctx) => {
    const dag = await pushDag('partial')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G', 'l1'])
    const outcome = await finishPush(p, [dag.b.X.cid])
    const last = outcome.last
    check(last.kind === 'control' && last.type === 'error' && last.map.c === 'not-found', 'A-4', `the push ended with ${p.conn.describe(last)}, not error not-found`)
    const listed = cidsOf(last.map, 'cs') ?? []
    check(listed.some(cid => cid.equals(dag.b.X.cid)), 'E-4', `error not-found lists ${names(p.conn, listed)}, not X`)
    await expectEnd(p.conn, 'E-2', () => false)
    await pullBack(ctx, dag.graph, dag.root)
  })

transcript('push-missing-not-asked-again', ['A-3'], ['push-allowed'],
  'G ─> M1 ─> l1, X and G ─> l2, with X reported missing: the straggler status wants l1 but not X; then error not-found',
  async (ctx) => {
    const dag = await pushDag('partial-deep')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G', 'M1', 'l2'])
    const outcome = await finishPush(p, [dag.b.X.cid])
    const first = outcome.stragglers[0] ?? []
    check(first.length === 1 && first[0].equals(dag.b.l1.cid), 'A-3', `the straggler status wants ${names(p.conn, first)}, expected [l1]`)
    const last = outcome.last
    check(last.kind === 'control' && last.type === 'error' && last.map.c === 'not-found', 'A-4', `the push ended with ${p.conn.describe(last)}, not error not-found`)
  })

transcript('push-missing-ignored', ['A-2'], ['push-allowed'],
  'missing listing a CID the server never wanted changes nothing: the push completes',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G', 'M1'])
    await p.conn.missing(unknownCids(1, 3))
    await sendBlocks(p, ['M2', 'l1', 'l2', 'l3', 'l4'])
    await expectDone(p, await finishPush(p))
  })

transcript('push-header-twice', ['R-4'], ['push-allowed'],
  'a second CAR header: error protocol',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G'])
    await p.conn.header([dag.root])
    await expectError(p.conn, ['protocol'], 'R-4', event => event.kind === 'control' && event.type === 'status')
  })

transcript('push-header-other-roots', ['R-4'], ['push-allowed'],
  'a CAR header listing another root than the push: error protocol',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag, { header: false })
    await p.conn.header([dag.b.M1.cid])
    await expectError(p.conn, ['protocol'], 'R-4', event => event.kind === 'control' && event.type === 'status')
  })

transcript('push-header-no-roots', ['R-4'], ['push-allowed'],
  'a CAR header with no roots: error protocol',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag, { header: false })
    await p.conn.header([])
    await expectError(p.conn, ['protocol'], 'R-4', event => event.kind === 'control' && event.type === 'status')
  })

transcript('push-block-before-header', ['R-4'], ['push-allowed'],
  'a block right after push, with no CAR header: error protocol',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag, { header: false })
    await sendBlocks(p, ['G'])
    await expectError(p.conn, ['protocol'], 'R-4', event => event.kind === 'control' && event.type === 'status')
  })

transcript('push-empty-block', ['F-4'], ['push-allowed'],
  'a pushed DAG with the empty raw block E: the block frame with no data is accepted and the push completes',
  async (ctx) => {
    const dag = await pushDag('empty-leaf')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G', 'l1', 'E'])
    await expectDone(p, await finishPush(p))
  })

transcript('push-min-block', ['L-1'], ['push-allowed'],
  'a pushed leaf of exactly 2 MiB is accepted: the push completes',
  async (ctx) => {
    const dag = await pushDag('big-leaf')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G', 'big'])
    await expectDone(p, await finishPush(p))
  })

transcript('push-keepalive', ['K-1'], ['push-allowed'],
  'keepalives from the pushing client keep a session with nothing else going open; the push then completes',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G'])
    const until = Date.now() + ctx.keepaliveMs
    while (Date.now() < until) {
      await p.conn.keepalive()
      const event = await p.conn.poll(ctx.keepaliveMs / 8)
      if (event != null) {
        check(event.kind === 'control' && (event.type === 'status' || event.type === 'keepalive'), 'K-1', `the server wrote ${p.conn.describe(event)} while the client only sent keepalives`)
        if (event.type === 'status') {
          takeStatus(p, event)
        }
      }
    }
    await sendBlocks(p, ['M1', 'M2', 'l1', 'l2', 'l3', 'l4'])
    await expectDone(p, await finishPush(p))
  })

transcript('push-error-from-client', ['E-3'], ['push-allowed'],
  'an error frame from the pushing client: the server ends the session without answering with an error frame',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G'])
    await p.conn.error('internal', 'the kit gives up')
    await expectEnd(p.conn, 'E-3', event => event.kind === 'control' && (event.type === 'status' || event.type === 'keepalive'))
  })

transcript('push-wrong-direction', ['C-2'], ['push-allowed'],
  'a done (a receiver\'s message) from the pushing client: error protocol',
  async (ctx) => {
    const dag = await pushDag('tree')
    const p = await openPush(ctx, dag)
    await sendBlocks(p, ['G'])
    await p.conn.done()
    await expectError(p.conn, ['protocol'], 'C-2', event => event.kind === 'control' && event.type === 'status')
  })

export const TRANSCRIPTS: readonly Transcript[] = transcripts

/** The rule ids cited by `cases` */
export function citedRules (cases: ReadonlyArray<{ rules: string[] }>): Set<string> {
  return new Set(cases.flatMap(c => c.rules))
}
