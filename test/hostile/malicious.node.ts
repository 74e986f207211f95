/**
 * Scripted malicious peers against real nodes. The malicious side is written
 * by hand with raw frames (FramedStream, or bytes on the libp2p stream); the
 * honest side is a real Helia node with CAR Mirror. Every test checks that
 * the honest side ends the session with a typed error (quickly, not through
 * a test deadline), writes nothing unverified or unrequested to its store,
 * leaves no session running, and keeps serving honest peers afterwards.
 */

import * as dagCbor from '@ipld/dag-cbor'
import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { concat as concatParts } from 'uint8arrays/concat'
import { encodeMessage } from '../../src/core/index.ts'
import { maxFrameSize } from '../../src/core/messages.ts'
import { DEFAULT_MAX_BLOOM_BYTES, DEFAULT_MAX_CIDS_PER_MESSAGE, DEFAULT_MAX_ROOTS, DEFAULT_MAX_UNREQUESTED_BLOCKS, HashMismatchError, LimitExceededError, ProtocolError, SessionClosedError } from '../../src/index.ts'
import { encodeLength } from '../../src/transport/framed-stream.ts'
import { cborBlock, identityCborBlock, rawBlock, utf8 } from '../fixtures/dag.ts'
import { cborDag, dagBlocks, holdsExactly, pseudoRandomBytes, putBlocks, seedOf } from '../fixtures/dags.ts'
import { KiB, MiB, bigTree, carMirrorStreams, createNode, settledMemory, sleep, errorFrames, eventually, expectNoSessions, expectOnlyVerifiedDagBlocks, expectTyped, failOnUnhandledRejections, firstMessage, openFramed, rawFrame, readUntilEnd, rejection, scriptServer, sendRaw, snapshot, strayBlocks } from './helpers.ts'
import type { BuiltDag, Reading } from './helpers.ts'
import type { Message } from '../../src/core/index.ts'
import type { PullMessage } from '../../src/core/messages.ts'
import type { BloomFilter } from '../../src/index.ts'
import type { FramedStream } from '../../src/transport/framed-stream.ts'
import type { Block } from '../fixtures/dag.ts'
import type { CborDag } from '../fixtures/dags.ts'
import type { TestNode } from '../fixtures/nodes.ts'

/** The honest server's idle timeout: every rejection below must come well before it */
const SERVER_IDLE_MS = 1500
/** The honest client's idle timeout */
const CLIENT_IDLE_MS = 1000
/** A frame-level rejection must come faster than this (well under the idle timeouts) */
const QUICK_MS = 1000
/**
 * An honest side that found a fault writes an error frame, then waits up to
 * 1 s for the remote peer to close before it resets the stream; a malicious
 * peer that never closes makes the rejection take that long
 */
const REJECT_MS = QUICK_MS + 1500

const GARBAGE_RUNS = 25
const RESET_RUNS = 10

function randomCids (count: number, salt: string): CID[] {
  return Array.from({ length: count }, (_, i) => {
    return CID.createV1(raw.code, Digest.create(0x12, pseudoRandomBytes(32, seedOf(`${salt}/${i}`))))
  })
}

function pullOf (root: CID, wants: CID[] = [], bloom?: BloomFilter): PullMessage {
  return { type: 'pull', roots: [root], wants, bloom }
}

function blocksOf (messages: Message[]): Array<Extract<Message, { type: 'block' }>> {
  return messages.filter((m): m is Extract<Message, { type: 'block' }> => m.type === 'block')
}

function sameMultihash (a: CID, b: CID): boolean {
  return a.multihash.bytes.join(',') === b.multihash.bytes.join(',')
}

/** Writes raw bytes, ignoring a stream the other side already reset */
async function trySendRaw (framed: FramedStream, bytes: Uint8Array): Promise<void> {
  try {
    await sendRaw(framed.stream, bytes, { signal: AbortSignal.timeout(2000) })
  } catch {
    // the honest side may reset the stream before we are done
  }
}

async function tryWrite (framed: FramedStream, message: Message): Promise<void> {
  try {
    await framed.write(message, { signal: AbortSignal.timeout(2000) })
  } catch {
    // the honest side may reset the stream before we are done
  }
}

describe('hostile peers', function () {
  this.timeout(30_000)
  failOnUnhandledRejections()

  let server: TestNode
  let attacker: TestNode
  let evil: TestNode
  let pub: CborDag
  let big: BuiltDag
  let pushDag: BuiltDag
  let secret: Block
  let secretLeaf: Block
  const extraNodes: TestNode[] = []

  before(async () => {
    pub = await cborDag('hostile-public')
    big = await bigTree(128, 16 * KiB, 16, 'hostile-big')
    pushDag = await bigTree(24, 4 * KiB, 6, 'hostile-push')
    secretLeaf = await rawBlock('the private key of the server')
    secret = await cborBlock({ secret: true, leaf: secretLeaf.cid })
    server = await createNode({ allowPush: () => true, idleTimeout: SERVER_IDLE_MS })
    attacker = await createNode()
    evil = await createNode()
    await putBlocks(server.blockstore, [...pub.stored, ...big.blocks, secret, secretLeaf])
    await putBlocks(evil.blockstore, [...pub.stored, ...big.blocks])
  })

  after(async () => {
    await Promise.all([server, attacker, evil, ...extraNodes].filter(n => n != null).map(async n => n.stop()))
  })

  async function honestNode (options: Parameters<typeof createNode>[0] = {}): Promise<TestNode> {
    const node = await createNode({ listen: false, ...options })
    extraNodes.push(node)
    return node
  }

  /** An honest client pulls the public DAG from the server and gets all of it */
  async function expectServerServes (): Promise<void> {
    const client = await honestNode()
    const stats = await client.carMirror.pull(server.libp2p.getMultiaddrs(), pub.root, { signal: AbortSignal.timeout(10_000) })
    expect(stats.blocksReceived).to.equal(pub.stored.length)
    for (const block of pub.stored) {
      expect(await holdsExactly(client.blockstore, block), `honest client holds ${block.cid}`).to.be.true()
    }
    await client.stop()
  }

  describe('malicious clients against an honest server', () => {
    let before: Map<string, Block>
    let allowed: Block[] = []
    const opened: FramedStream[] = []

    async function open (): Promise<FramedStream> {
      const framed = await openFramed(attacker, server)
      opened.push(framed)
      return framed
    }

    beforeEach(async () => {
      before = await snapshot(server.blockstore)
      allowed = []
    })

    afterEach(async function () {
      // the server ends every session itself: nothing is left when we look
      await expectNoSessions(server, SERVER_IDLE_MS + 3000)
      for (const framed of opened.splice(0)) {
        framed.stream.abort(new Error('test over'))
      }
      await expectOnlyVerifiedDagBlocks(server.blockstore, before, allowed)
      await expectServerServes()
    })

    it(`random garbage frames (${GARBAGE_RUNS} streams) are cut off at once; nothing comes back but error frames`, async () => {
      await fc.assert(fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { minLength: 1, maxLength: 3 }), async (bodies) => {
        const framed = await open()
        for (const body of bodies) {
          await trySendRaw(framed, rawFrame(body))
        }
        const reading = await readUntilEnd(framed, 5000)
        expect(reading.timedOut, 'the server ended the stream').to.be.false()
        expect(reading.ms).to.be.below(QUICK_MS)
        expect(reading.messages.map(m => m.type).filter(type => type !== 'error')).to.deep.equal([])
      }), { numRuns: GARBAGE_RUNS })
    })

    it('raw garbage bytes (no framing) end the session before the idle timeout', async () => {
      for (let seed = 1; seed <= 6; seed++) {
        const framed = await open()
        const garbage = pseudoRandomBytes(4096, seedOf(`garbage/${seed}`))
        await trySendRaw(framed, garbage)
        const reading = await readUntilEnd(framed, 8000)
        expect(reading.timedOut, `seed ${seed}: the server ended the stream`).to.be.false()
        // a random varint may announce a frame of a few MB that never comes: then the idle timeout ends it
        expect(reading.ms).to.be.below(SERVER_IDLE_MS + 1500)
        expect(blocksOf(reading.messages)).to.deep.equal([])
      }
    })

    it('a garbage frame in the middle of a pull is answered with error/protocol', async () => {
      const framed = await open()
      await framed.write(pullOf(pub.root))
      const first = await readUntilEnd(framed, 5000, m => m.type === 'idle')
      expect(first.messages.at(-1)?.type).to.equal('idle')
      const started = Date.now()
      await trySendRaw(framed, rawFrame(Uint8Array.of(0xa1, 0x61, 0x74, 0x65, 0x68, 0x65, 0x6c, 0x6c, 0x6f))) // { t: 'hello' }
      const reading = await readUntilEnd(framed, 5000)
      expect(Date.now() - started).to.be.below(QUICK_MS)
      expect(errorFrames(reading.messages).map(e => e.code)).to.deep.equal(['protocol'])
    })

    const prefixes: Array<[string, Uint8Array]> = [
      ['one byte over the frame limit', encodeLength(maxFrameSize() + 1)],
      ['of 100 MiB', encodeLength(100 * MiB)],
      ['that is not a valid varint (11 bytes, over 64 bits)', Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)]
    ]
    for (const [name, prefix] of prefixes) {
      it(`a length prefix ${name} resets the stream at once, without waiting for the body or the idle timeout`, async () => {
        const framed = await open()
        await trySendRaw(framed, prefix)
        await trySendRaw(framed, new Uint8Array(64 * KiB))
        const reading = await readUntilEnd(framed, 5000)
        expect(reading.timedOut).to.be.false()
        expect(reading.ms).to.be.below(QUICK_MS)
        expect(reading.messages.filter(m => m.type !== 'error')).to.deep.equal([])
      })
    }

    it('a frame over the limit is answered with error/limit before the reset (PROTOCOL.md §6)', async () => {
      const framed = await open()
      await trySendRaw(framed, encodeLength(maxFrameSize() + 1))
      const reading = await readUntilEnd(framed, 5000)
      expect(reading.ms).to.be.below(QUICK_MS)
      expect(reading.messages.map(m => m.type === 'error' ? m.code : m.type)).to.deep.equal(['limit'])
    })

    it('an empty frame (PROTOCOL.md §3: invalid) in the middle of a pull is answered with error/protocol at once', async () => {
      const framed = await open()
      await framed.write(pullOf(pub.root))
      const first = await readUntilEnd(framed, 5000, m => m.type === 'idle')
      expect(first.messages.at(-1)?.type).to.equal('idle')
      const started = Date.now()
      await trySendRaw(framed, Uint8Array.of(0x00))
      const reading = await readUntilEnd(framed, 5000)
      expect(reading.timedOut).to.be.false()
      expect(errorFrames(reading.messages).map(e => e.code)).to.deep.equal(['protocol'])
      expect(Date.now() - started).to.be.below(QUICK_MS)
    })

    it('a peer trickling bytes that never complete a frame is still cut off by the idle timeout (no slowloris)', async () => {
      const framed = await open()
      // a frame of 1000 bytes is announced; then one byte every 400 ms
      await trySendRaw(framed, encodeLength(1000))
      const started = Date.now()
      let closedAfter: number | undefined
      for (let i = 0; i < 15 && closedAfter == null; i++) {
        await sleep(400)
        if (framed.stream.status !== 'open' || carMirrorStreams(server).length === 0) {
          closedAfter = Date.now() - started
          break
        }
        await trySendRaw(framed, Uint8Array.of(0xa5))
      }
      expect(closedAfter, `the server still held the session after ${Date.now() - started} ms`).to.not.be.undefined()
      expect(closedAfter).to.be.below(SERVER_IDLE_MS + 1500)
    })

    it('a pull with absurd Bloom parameters (bk 0, bk 10^6, 1 MiB + 1, 100 MB) is rejected with error/limit or a reset', async () => {
      const cases: Array<{ name: string, bk: number, bb: number }> = [
        { name: 'bk 0', bk: 0, bb: 64 },
        { name: 'bk 10^6', bk: 1_000_000, bb: 64 },
        { name: 'bb over the Bloom limit', bk: 3, bb: DEFAULT_MAX_BLOOM_BYTES + 1 }
      ]
      for (const { name, bk, bb } of cases) {
        const framed = await open()
        const started = Date.now()
        await trySendRaw(framed, rawFrame(dagCbor.encode({ t: 'pull', rs: [pub.root], sr: [], bk, bb: new Uint8Array(bb).fill(0xff) })))
        const reading = await readUntilEnd(framed, 5000)
        expect(reading.timedOut, name).to.be.false()
        expect(Date.now() - started, name).to.be.below(QUICK_MS + 1000)
        expect(reading.messages.map(m => m.type === 'error' ? m.code : m.type), name).to.deep.equal(['limit'])
      }

      // 100 MB of Bloom: the frame is over the limit, so the server must not wait for (or buffer) the body
      const framed = await open()
      const head = dagCbor.encode({ t: 'pull', rs: [pub.root], sr: [], bk: 3, bb: new Uint8Array(1) })
      await trySendRaw(framed, encodeLength(100 * MiB + head.byteLength))
      await trySendRaw(framed, head)
      await trySendRaw(framed, new Uint8Array(MiB))
      const reading = await readUntilEnd(framed, 5000)
      expect(reading.timedOut).to.be.false()
      expect(reading.ms).to.be.below(QUICK_MS)
      expect(blocksOf(reading.messages)).to.deep.equal([])
    })

    it(`huge root lists: ${DEFAULT_MAX_CIDS_PER_MESSAGE + 1} or ${DEFAULT_MAX_ROOTS + 1} roots get error/limit; ${DEFAULT_MAX_ROOTS} unknown roots are named missing`, async () => {
      const cases: Array<{ name: string, frame: Uint8Array, code: string }> = [
        { name: 'pull over the CID list limit', frame: dagCbor.encode({ t: 'pull', rs: randomCids(DEFAULT_MAX_CIDS_PER_MESSAGE + 1, 'roots-a'), sr: [], bk: 0, bb: new Uint8Array(0) }), code: 'limit' },
        { name: 'pull over maxRoots', frame: dagCbor.encode({ t: 'pull', rs: randomCids(DEFAULT_MAX_ROOTS + 1, 'roots-b'), sr: [], bk: 0, bb: new Uint8Array(0) }), code: 'limit' },
        { name: 'push over maxRoots', frame: dagCbor.encode({ t: 'push', rs: randomCids(DEFAULT_MAX_ROOTS + 1, 'roots-c'), hs: [] }), code: 'limit' }
      ]
      for (const { name, frame, code } of cases) {
        const framed = await open()
        const started = Date.now()
        await trySendRaw(framed, rawFrame(frame))
        const reading = await readUntilEnd(framed, 5000)
        expect(reading.timedOut, name).to.be.false()
        expect(Date.now() - started, name).to.be.below(QUICK_MS + 1000)
        expect(errorFrames(reading.messages).map(e => e.code), name).to.deep.equal([code])
        expect(blocksOf(reading.messages), name).to.deep.equal([])
      }

      // roots the server does not hold: named in missing frames, nothing sent, no error
      const roots = randomCids(DEFAULT_MAX_ROOTS, 'roots-d')
      const framed = await open()
      await trySendRaw(framed, rawFrame(dagCbor.encode({ t: 'pull', rs: roots, sr: [] })))
      const reading = await readUntilEnd(framed, 5000, m => m.type === 'idle')
      expect(reading.timedOut).to.be.false()
      expect(errorFrames(reading.messages)).to.deep.equal([])
      expect(blocksOf(reading.messages)).to.deep.equal([])
      const named = reading.messages.flatMap(m => m.type === 'missing' ? m.cids.map(cid => cid.toString()) : [])
      expect(named.sort()).to.deep.equal(roots.map(cid => cid.toString()).sort())
    })

    it('a flood of statuses with 10,000 unknown wants each is answered with missing frames, serves nothing and leaks nothing', async () => {
      const framed = await open()
      await framed.write(pullOf(pub.root))
      const first = await readUntilEnd(framed, 5000, m => m.type === 'idle')
      expect(first.messages.at(-1)?.type).to.equal('idle')
      const statuses = 15
      for (let i = 0; i < statuses; i++) {
        await tryWrite(framed, { type: 'status', wants: randomCids(DEFAULT_MAX_CIDS_PER_MESSAGE, `flood/${i}`) })
      }
      const reading = await readUntilEnd(framed, 10_000, m => m.type === 'idle' && m.statuses === statuses + 1)
      expect(reading.timedOut).to.be.false()
      expect(blocksOf(reading.messages)).to.deep.equal([])
      expect(errorFrames(reading.messages)).to.deep.equal([])
      const named = reading.messages.reduce((sum, m) => sum + (m.type === 'missing' ? m.cids.length : 0), 0)
      expect(named).to.equal(statuses * DEFAULT_MAX_CIDS_PER_MESSAGE)
      await framed.write({ type: 'done', duplicates: 0 })
      await framed.closeWrite()
    })

    it('a flood of statuses re-asking for the root costs at most one root block per status', async () => {
      const framed = await open()
      await framed.write(pullOf(pub.root))
      const first = await readUntilEnd(framed, 5000, m => m.type === 'idle')
      const firstBlocks = blocksOf(first.messages).length
      expect(firstBlocks).to.equal(pub.stored.length)
      // 5 × 10,000 wants stay under the sender's queue limit (100,000) however they pile up
      const statuses = 5
      const wants = new Array<CID>(DEFAULT_MAX_CIDS_PER_MESSAGE).fill(pub.root)
      for (let i = 0; i < statuses; i++) {
        await tryWrite(framed, { type: 'status', wants })
      }
      // wait for the idle that acknowledges every status, then say done
      const more = await readUntilEnd(framed, 5000, m => m.type === 'idle' && m.statuses === statuses + 1)
      expect(more.messages.at(-1)).to.deep.equal({ type: 'idle', statuses: statuses + 1 })
      const resent = blocksOf(more.messages)
      expect(resent.every(block => block.cid.equals(pub.root))).to.be.true()
      expect(resent.length).to.be.within(1, statuses)
      await framed.write({ type: 'done', duplicates: 0 })
      await framed.closeWrite()
      const end = await readUntilEnd(framed, 5000)
      expect(end.timedOut).to.be.false()
    })

    describe('wants outside the pulled DAG', () => {
      const cases: Array<{ name: string, want(): CID, inRequest: boolean }> = [
        { name: 'a secret block in the pull request', want: () => secret.cid, inRequest: true },
        { name: 'a secret block in a later status', want: () => secret.cid, inRequest: false },
        { name: 'a leaf under the secret block', want: () => secretLeaf.cid, inRequest: false },
        { name: 'the secret multihash under another codec (raw)', want: () => CID.createV1(raw.code, secret.cid.multihash), inRequest: false },
        { name: 'the secret multihash as a CIDv0', want: () => CID.createV0(Digest.create(0x12, secret.cid.multihash.digest)), inRequest: true }
      ]

      function wantOutside (name: string, want: () => CID, inRequest: boolean): void {
        it(`${name}: never sent; a missing frame names it`, async () => {
          const cid = want()
          const framed = await open()
          let messages: Message[] = []
          if (inRequest) {
            await framed.write(pullOf(pub.root, [cid]))
          } else {
            await framed.write(pullOf(pub.root))
            const first = await readUntilEnd(framed, 5000, m => m.type === 'idle')
            messages = first.messages
            await framed.write({ type: 'status', wants: [cid] })
          }
          const statuses = inRequest ? 1 : 2
          const reading = await readUntilEnd(framed, 5000, m => m.type === 'idle' && m.statuses === statuses)
          messages = [...messages, ...reading.messages]
          expect(reading.timedOut).to.be.false()
          for (const block of blocksOf(messages)) {
            expect(sameMultihash(block.cid, secret.cid) || sameMultihash(block.cid, secretLeaf.cid), `${block.cid} is secret`).to.be.false()
            expect(pub.stored.some(b => b.cid.equals(block.cid)), `${block.cid} is in the pulled DAG`).to.be.true()
          }
          expect(errorFrames(messages)).to.deep.equal([])
          const named = messages.flatMap(m => m.type === 'missing' ? m.cids.map(c => c.toString()) : [])
          expect(named).to.include(cid.toString())
        })
      }

      it('an identity CID as a want (it could link to the secret) ends the session with error/protocol, nothing secret sent', async () => {
        const framed = await open()
        await framed.write(pullOf(pub.root))
        const first = await readUntilEnd(framed, 5000, m => m.type === 'idle')
        await framed.write({ type: 'status', wants: [identityCborBlock({ inline: secret.cid }).cid] })
        const reading = await readUntilEnd(framed, 5000)
        expect(reading.timedOut).to.be.false()
        for (const block of blocksOf([...first.messages, ...reading.messages])) {
          expect(sameMultihash(block.cid, secret.cid), `${block.cid} is secret`).to.be.false()
        }
        expect(errorFrames(reading.messages).map(e => e.code)).to.deep.equal(['protocol'])
      })

      for (const { name, want, inRequest } of cases) {
        wantOutside(name, want, inRequest)
      }

      it('a want list mixing a DAG block and a secret sends the DAG block\'s subgraph only', async () => {
        const m0 = pub.stored[1] // M0: { items: [R0, R1, R2], shared: S }
        const framed = await open()
        await framed.write(pullOf(pub.root, [m0.cid, secret.cid]))
        const reading = await readUntilEnd(framed, 5000, m => m.type === 'idle')
        const sent = blocksOf(reading.messages)
        expect(sent.map(b => b.cid.toString())).to.include(m0.cid.toString())
        for (const block of sent) {
          expect(pub.stored.some(b => b.cid.equals(block.cid)), `${block.cid} is in the pulled DAG`).to.be.true()
        }
        expect(errorFrames(reading.messages)).to.deep.equal([])
        expect(reading.messages.flatMap(m => m.type === 'missing' ? m.cids.map(c => c.toString()) : [])).to.deep.equal([secret.cid.toString()])
      })
    })

    it('a refused push (PROTOCOL.md §4.7) is reset right after its error frame, and data sent after the refusal is not buffered', async () => {
      // default init: pushes are refused for everybody
      const strict = await createNode({ idleTimeout: 3000, maxInboundStreams: 64 })
      extraNodes.push(strict)
      const streams = 10
      const perStream = 4
      const frame = rawFrame(concatParts(encodeMessage({ type: 'block', cid: pub.root, bytes: new Uint8Array(2 * MiB) })))
      const memoryBefore = await settledMemory()
      const refusedAt: number[] = []
      const framedStreams: FramedStream[] = []
      for (let i = 0; i < streams; i++) {
        const framed = await openFramed(attacker, strict)
        framedStreams.push(framed)
        await framed.write({ type: 'push', roots: [pub.root], hints: [] })
        const first = await readUntilEnd(framed, 5000, () => true)
        expect(first.messages.map(m => m.type === 'error' ? m.code : m.type)).to.deep.equal(['refused'])
        refusedAt.push(Date.now())
      }
      // keep talking on the refused streams: 10 × 8 MiB of block frames
      await Promise.all(framedStreams.map(async framed => {
        for (let j = 0; j < perStream; j++) {
          await trySendRaw(framed, frame)
        }
      }))
      await sleep(200)
      const memoryAfter = await settledMemory()
      const buffered = memoryAfter.arrayBuffers - memoryBefore.arrayBuffers
      const open = carMirrorStreams(strict).length
      for (const framed of framedStreams) {
        framed.stream.abort(new Error('test over'))
      }
      expect(open, 'refused streams the server still holds open').to.equal(0)
      expect(buffered, `bytes buffered after ${streams} refusals`).to.be.below(16 * MiB)
    })

    it(`a client that stops reading is cut off by the server's idle timeout (${SERVER_IDLE_MS} ms)`, async () => {
      const framed = await open()
      await framed.write(pullOf(big.root))
      framed.stream.pause()
      const started = Date.now()
      const closed = await eventually(() => framed.stream.status !== 'open', SERVER_IDLE_MS + 4000)
      expect(closed, `stream status ${framed.stream.status}`).to.be.true()
      expect(Date.now() - started).to.be.below(SERVER_IDLE_MS + 3000)
    })

    it(`pulls reset or closed after k frames (${RESET_RUNS} random k) end the server's session`, async () => {
      await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: 40 }), fc.constantFrom('abort', 'close'), async (k, how) => {
        const framed = await open()
        await framed.write(pullOf(big.root))
        if (k > 0) {
          const reading = await readUntilEnd(framed, 5000, (_, count) => count >= k)
          expect(reading.messages).to.have.lengthOf(k)
        }
        if (how === 'abort') {
          framed.stream.abort(new Error('gone'))
        } else {
          await framed.closeWrite()
        }
        await expectNoSessions(server, SERVER_IDLE_MS + 3000)
        framed.stream.abort(new Error('test over'))
      }), { numRuns: RESET_RUNS })
    })

    describe('pushes', () => {
      /** Pushes a fresh small DAG's root and header, then `messages`; returns what the server said */
      async function push (name: string, messages: (dag: BuiltDag) => Message[] | Promise<Message[]>): Promise<{ dag: BuiltDag, reading: Reading }> {
        const dag = await bigTree(6, KiB, 3, `push/${name}`)
        const framed = await open()
        await framed.write({ type: 'push', roots: [dag.root], hints: [] })
        await framed.write({ type: 'header', roots: [dag.root] })
        for (const message of await messages(dag)) {
          await tryWrite(framed, message)
        }
        return { dag, reading: await readUntilEnd(framed, 5000) }
      }

      it('a pushed block that does not hash to its CID is answered with error/verification and not stored', async () => {
        const { dag, reading } = await push('forged', dag => [{ type: 'block', cid: dag.root, bytes: utf8('not the root') }])
        expect(reading.timedOut).to.be.false()
        expect(errorFrames(reading.messages).map(e => e.code)).to.deep.equal(['verification'])
        expect(await server.blockstore.has(dag.root)).to.be.false()
      })

      it(`more than ${DEFAULT_MAX_UNREQUESTED_BLOCKS} unrequested pushed blocks end the push with error/protocol; none is stored`, async () => {
        const strays = await strayBlocks(DEFAULT_MAX_UNREQUESTED_BLOCKS + 1, 'push-strays')
        const { dag, reading } = await push('strays', dag => [dag.blocks[0], ...strays].map(b => ({ type: 'block' as const, cid: b.cid, bytes: b.bytes })))
        allowed = dag.blocks
        expect(reading.timedOut).to.be.false()
        expect(errorFrames(reading.messages).map(e => e.code)).to.deep.equal(['protocol'])
        expect(await server.blockstore.has(dag.root)).to.be.true()
        for (const stray of strays) {
          expect(await server.blockstore.has(stray.cid), `stray ${stray.cid} stored`).to.be.false()
        }
      })

      it('a pushed block over maxBlockSize is answered with error/limit', async () => {
        const { dag, reading } = await push('oversized', dag => [{ type: 'block', cid: dag.root, bytes: new Uint8Array(2 * MiB + 1) }])
        expect(reading.timedOut).to.be.false()
        expect(errorFrames(reading.messages).map(e => e.code)).to.deep.equal(['limit'])
        expect(await server.blockstore.has(dag.root)).to.be.false()
      })

      it('a pusher whose idle claims more statuses than the server wrote gets error/protocol', async () => {
        const { reading } = await push('idle', () => [{ type: 'idle', statuses: 99 }])
        expect(errorFrames(reading.messages).map(e => e.code)).to.deep.equal(['protocol'])
      })

      it(`pushes reset or closed after k frames (${RESET_RUNS} random k) leave only verified DAG blocks`, async () => {
        allowed = pushDag.blocks
        const frames: Message[] = [
          { type: 'push', roots: [pushDag.root], hints: [] },
          { type: 'header', roots: [pushDag.root] },
          ...pushDag.blocks.map(b => ({ type: 'block' as const, cid: b.cid, bytes: b.bytes }))
        ]
        await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: frames.length - 1 }), fc.constantFrom('abort', 'close'), async (k, how) => {
          const framed = await open()
          for (const message of frames.slice(0, k)) {
            await tryWrite(framed, message)
          }
          if (how === 'abort') {
            framed.stream.abort(new Error('gone'))
          } else {
            await framed.closeWrite()
          }
          await expectNoSessions(server, SERVER_IDLE_MS + 3000)
          framed.stream.abort(new Error('test over'))
          await expectOnlyVerifiedDagBlocks(server.blockstore, before, pushDag.blocks)
        }), { numRuns: RESET_RUNS })
      })
    })
  })

  describe('malicious servers against an honest client', () => {
    let client: TestNode
    let before: Map<string, Block>
    let allowed: Block[] = []
    const read: Reading[] = []

    async function honestClient (options: Parameters<typeof createNode>[0] = {}): Promise<TestNode> {
      client = await honestNode({ idleTimeout: CLIENT_IDLE_MS, ...options })
      before = await snapshot(client.blockstore)
      return client
    }

    /** Scripts `evil` to answer a pull: it reads the request, writes `frames`, then reads what the client says */
    async function answerPull (frames: (request: Message) => Message[] | Promise<Message[]>, after?: (framed: FramedStream) => Promise<void>): Promise<void> {
      await scriptServer(evil, async (framed) => {
        const request = await firstMessage(framed)
        for (const message of await frames(request)) {
          await tryWrite(framed, message)
        }
        await after?.(framed)
        read.push(await readUntilEnd(framed, 5000))
      })
    }

    async function pullFromEvil (root: CID = pub.root): Promise<{ err: Error, ms: number }> {
      const started = Date.now()
      const err = await rejection(client.carMirror.pull(evil.libp2p.getMultiaddrs(), root, { signal: AbortSignal.timeout(15_000) }))
      return { err, ms: Date.now() - started }
    }

    /** What the client told the malicious server: the codes of its error frames */
    async function clientErrorCodes (): Promise<string[]> {
      await eventually(() => read.length > 0, 5000)
      return read.flatMap(reading => errorFrames(reading.messages).map(e => e.code))
    }

    const headerOf = (request: Message): Message => ({ type: 'header', roots: request.type === 'pull' ? request.roots : [] })
    const blockOf = (b: Block): Message => ({ type: 'block', cid: b.cid, bytes: b.bytes })

    beforeEach(() => {
      read.splice(0)
      allowed = []
    })

    afterEach(async () => {
      await expectNoSessions(client, 3000)
      await expectOnlyVerifiedDagBlocks(client.blockstore, before, allowed)
      // the client keeps working: an honest pull from the honest server completes
      await client.carMirror.pull(server.libp2p.getMultiaddrs(), pub.root, { signal: AbortSignal.timeout(10_000) })
      for (const block of pub.stored) {
        expect(await holdsExactly(client.blockstore, block)).to.be.true()
      }
      await client.stop()
    })

    it('a block that does not hash to its CID: HashMismatchError, error/verification, nothing stored', async () => {
      await honestClient()
      await answerPull(request => [headerOf(request), { type: 'block', cid: pub.root, bytes: utf8('forged') }])
      const { err, ms } = await pullFromEvil()
      expectTyped(err, HashMismatchError.name)
      expect(ms).to.be.below(REJECT_MS)
      expect(await clientErrorCodes()).to.deep.equal(['verification'])
      expect(await client.blockstore.has(pub.root)).to.be.false()
    })

    it('a forged child after a valid root: HashMismatchError; only the root is stored', async () => {
      await honestClient()
      allowed = pub.stored
      const [root, m0] = pub.stored
      await answerPull(request => [headerOf(request), blockOf(root), { type: 'block', cid: m0.cid, bytes: utf8('forged child') }])
      const { err } = await pullFromEvil()
      expectTyped(err, HashMismatchError.name)
      expect(await client.blockstore.has(root.cid)).to.be.true()
      expect(await client.blockstore.has(m0.cid)).to.be.false()
    })

    it(`more than ${DEFAULT_MAX_UNREQUESTED_BLOCKS} unrequested blocks: ProtocolError, error/protocol, none stored`, async () => {
      await honestClient()
      allowed = pub.stored
      const strays = await strayBlocks(DEFAULT_MAX_UNREQUESTED_BLOCKS + 1, 'pull-strays')
      await answerPull(request => [headerOf(request), blockOf(pub.stored[0]), ...strays.map(blockOf)])
      const { err, ms } = await pullFromEvil()
      expectTyped(err, ProtocolError.name)
      expect(ms).to.be.below(REJECT_MS)
      expect(await clientErrorCodes()).to.deep.equal(['protocol'])
      for (const stray of strays) {
        expect(await client.blockstore.has(stray.cid)).to.be.false()
      }
    })

    it('DAG blocks sent before their parent are not stored (unrequested), then the forger is cut off', async () => {
      await honestClient()
      // leaves of the tree first: none is wanted yet
      const leaves = pub.stored.filter(b => b.cid.code === raw.code)
      await answerPull(request => [headerOf(request), ...leaves.map(blockOf), ...leaves.map(blockOf)])
      const { err } = await pullFromEvil()
      expectTyped(err, ProtocolError.name)
      for (const leaf of leaves) {
        expect(await client.blockstore.has(leaf.cid), `${leaf.cid} stored before its parent`).to.be.false()
      }
    })

    it('a block over maxBlockSize: LimitExceededError, error/limit', async () => {
      await honestClient({ maxBlockSize: 64 * KiB })
      await answerPull(request => [headerOf(request), { type: 'block', cid: pub.root, bytes: new Uint8Array(64 * KiB + 1) }])
      const { err, ms } = await pullFromEvil()
      expectTyped(err, LimitExceededError.name)
      expect(ms).to.be.below(REJECT_MS)
      expect(await clientErrorCodes()).to.deep.equal(['limit'])
    })

    it('a frame length over the client\'s frame limit: LimitExceededError at once', async () => {
      await honestClient()
      await scriptServer(evil, async (framed, stream) => {
        await firstMessage(framed)
        await sendRaw(stream, encodeLength(maxFrameSize() + 1))
        await sendRaw(stream, new Uint8Array(64 * KiB))
        read.push(await readUntilEnd(framed, 5000))
      })
      const { err, ms } = await pullFromEvil()
      expectTyped(err, LimitExceededError.name)
      expect(ms).to.be.below(REJECT_MS)
    })

    it('a garbage frame: ProtocolError', async () => {
      await honestClient()
      await scriptServer(evil, async (framed, stream) => {
        await firstMessage(framed)
        await framed.write({ type: 'header', roots: [pub.root] })
        await sendRaw(stream, rawFrame(Uint8Array.of(0x00, 0xff, 0x13)))
        read.push(await readUntilEnd(framed, 5000))
      })
      const { err, ms } = await pullFromEvil()
      expectTyped(err, ProtocolError.name)
      expect(ms).to.be.below(REJECT_MS)
    })

    it('an idle claiming more statuses than the client sent: ProtocolError', async () => {
      await honestClient()
      await answerPull(request => [headerOf(request), { type: 'idle', statuses: 7 }])
      const { err, ms } = await pullFromEvil()
      expectTyped(err, ProtocolError.name)
      expect(ms).to.be.below(REJECT_MS)
      expect(await clientErrorCodes()).to.deep.equal(['protocol'])
    })

    it('an idle that ignores the wants it was asked for: ProtocolError after one straggler round', async () => {
      await honestClient()
      let asked: Message | undefined
      await answerPull(request => [headerOf(request), { type: 'idle', statuses: 1 }], async (framed) => {
        const next = await readUntilEnd(framed, 5000, m => m.type === 'status')
        asked = next.messages.at(-1)
        await tryWrite(framed, { type: 'idle', statuses: 2 })
      })
      const { err, ms } = await pullFromEvil()
      expectTyped(err, ProtocolError.name)
      expect(ms).to.be.below(REJECT_MS)
      expect(asked?.type === 'status' && asked.wants.map(c => c.toString())).to.deep.equal([pub.root.toString()])
      expect(await clientErrorCodes()).to.deep.equal(['protocol'])
    })

    it('the same block over and over: ProtocolError once duplicates exceed what the client holds plus one list', async () => {
      const maxCids = 50
      await honestClient({ maxCidsPerMessage: maxCids })
      allowed = pub.stored
      const root = pub.stored[0]
      await answerPull(request => [headerOf(request), ...Array.from({ length: 3 * maxCids }, () => blockOf(root))])
      const { err, ms } = await pullFromEvil()
      expectTyped(err, ProtocolError.name)
      expect(ms).to.be.below(REJECT_MS)
      expect(await clientErrorCodes()).to.deep.equal(['protocol'])
    })

    it('a server that goes silent after the header: the client\'s idle timeout ends the pull with a typed error', async () => {
      await honestClient()
      await answerPull(request => [headerOf(request)])
      const { err, ms } = await pullFromEvil()
      expectTyped(err)
      expect(ms).to.be.within(CLIENT_IDLE_MS - 100, CLIENT_IDLE_MS + 2500)
    })

    it(`answers cut off after k frames (${RESET_RUNS} random k, closed or reset): SessionClosedError, only verified blocks stored`, async () => {
      const ordered = [...(await dagBlocks(evil.blockstore, pub.root)).values()]
      expect(ordered).to.have.lengthOf(pub.stored.length)
      allowed = pub.stored
      await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: ordered.length }), fc.constantFrom('abort', 'close'), async (k, how) => {
        if (client != null) {
          await client.stop()
        }
        await honestClient()
        await scriptServer(evil, async (framed) => {
          const request = await firstMessage(framed)
          const frames = [headerOf(request), ...ordered.map(blockOf)].slice(0, k)
          for (const message of frames) {
            await framed.write(message)
          }
          if (how === 'abort') {
            framed.stream.abort(new Error('cut'))
          } else {
            await framed.closeWrite()
            read.push(await readUntilEnd(framed, 5000))
          }
        })
        const { err, ms } = await pullFromEvil()
        expectTyped(err, SessionClosedError.name)
        expect(ms).to.be.below(QUICK_MS)
        const added = await expectOnlyVerifiedDagBlocks(client.blockstore, before, pub.stored)
        expect(added).to.be.at.most(Math.max(0, k - 1))
        await expectNoSessions(client, 3000)
      }), { numRuns: RESET_RUNS })
    })

    it('a push to a server that stops reading ends with a typed error within a few seconds (idle timeout)', async () => {
      await honestClient()
      await putBlocks(client.blockstore, big.blocks)
      before = await snapshot(client.blockstore)
      await scriptServer(evil, async (_, stream) => {
        stream.pause()
      })
      const started = Date.now()
      const err = await rejection(client.carMirror.push(evil.libp2p.getMultiaddrs(), big.root, { signal: AbortSignal.timeout(15_000) }))
      expectTyped(err)
      expect(Date.now() - started).to.be.below(CLIENT_IDLE_MS + 3000)
    })
  })
})
