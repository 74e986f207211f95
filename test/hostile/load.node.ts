/**
 * Load: 50 concurrent pulls against one server on loopback while a flooding
 * peer opens many sessions (and sends junk) at the same time. Every honest
 * session completes, the flooder is held to its per-peer session limit and
 * cut off, the heap stays bounded and no session is left afterwards.
 */

import { expect } from 'aegir/chai'
import { dagBlocks, holdsExactly, pseudoRandomBytes, putBlocks, seedOf } from '../fixtures/dags.ts'
import { KiB, MiB, bigTree, carMirrorStreams, createNode, settledMemory, errorFrames, eventually, expectNoSessions, expectTyped, failOnUnhandledRejections, openFramed, rawFrame, readUntilEnd, sendRaw } from './helpers.ts'
import type { BuiltDag } from './helpers.ts'
import type { Message } from '../../src/core/index.ts'
import type { TransferStats } from '../../src/index.ts'
import type { FramedStream } from '../../src/transport/framed-stream.ts'
import type { TestNode } from '../fixtures/nodes.ts'

const CLIENTS = 5
const SESSIONS_PER_CLIENT = 10
const MAX_SESSIONS_PER_PEER = SESSIONS_PER_CLIENT
const FLOOD_PULLS = 40
const FLOOD_JUNK = 20
const SERVER_IDLE_MS = 3000
const BUDGET_MS = 60_000
/** Heap growth allowed across the whole load, once garbage is collected */
const HEAP_GROWTH_LIMIT = 64 * MiB

describe('load', function () {
  this.timeout(BUDGET_MS + 30_000)
  failOnUnhandledRejections()

  const nodes: TestNode[] = []

  after(async () => {
    await Promise.all(nodes.splice(0).map(async n => n.stop()))
  })

  it(`${CLIENTS * SESSIONS_PER_CLIENT} concurrent pulls (${CLIENTS} clients × ${SESSIONS_PER_CLIENT}) all complete while a flooder opens ${FLOOD_PULLS} pulls and ${FLOOD_JUNK} junk streams; the flooder is held to ${MAX_SESSIONS_PER_PEER} sessions and cut off`, async () => {
    const server = await createNode({ maxSessionsPerPeer: MAX_SESSIONS_PER_PEER, idleTimeout: SERVER_IDLE_MS, maxInboundStreams: 256 })
    nodes.push(server)
    const clients: TestNode[] = []
    for (let i = 0; i < CLIENTS; i++) {
      clients.push(await createNode({ listen: false }))
    }
    const flooder = await createNode({ listen: false, maxOutboundStreams: 256 })
    nodes.push(...clients, flooder)

    const dags: BuiltDag[] = []
    for (let i = 0; i < CLIENTS * SESSIONS_PER_CLIENT; i++) {
      dags.push(await bigTree(16, 2 * KiB, 4, `load/${i}`))
    }
    const big = await bigTree(128, 16 * KiB, 16, 'load/big')
    await putBlocks(server.blockstore, [...dags.flatMap(dag => dag.blocks), ...big.blocks])
    // warm the connections so the measurement is of sessions, not of dials
    for (const node of [...clients, flooder]) {
      await node.libp2p.dial(server.libp2p.getMultiaddrs())
    }

    const heapBefore = (await settledMemory()).heapUsed
    let heapPeak = heapBefore
    const sampler = setInterval(() => {
      heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed)
    }, 50)
    // CAR Mirror streams from the flooder open on the server at once (refused ones included while their error frame goes out)
    let flooderStreamsPeak = 0
    const flooderStreams = (): number => {
      const open = new Set(carMirrorStreams(server).filter(stream => stream.status === 'open'))
      return server.libp2p.getConnections(flooder.libp2p.peerId).flatMap(c => c.streams).filter(stream => open.has(stream)).length
    }
    const counter = setInterval(() => {
      flooderStreamsPeak = Math.max(flooderStreamsPeak, flooderStreams())
    }, 20)

    const started = Date.now()
    try {
      // the flood: pulls of a 2 MiB DAG that stop reading after the first frame, and streams of junk
      const flood = Array.from({ length: FLOOD_PULLS }, async (): Promise<{ first?: Message, framed: FramedStream }> => {
        const framed = await openFramed(flooder, server)
        await framed.write({ type: 'pull', roots: [big.root], wants: [] })
        const reading = await readUntilEnd(framed, 10_000, () => true)
        try {
          framed.stream.pause()
        } catch {
          // a refused stream may already be closed
        }
        return { first: reading.messages[0], framed }
      })
      const junk = Array.from({ length: FLOOD_JUNK }, async (_, i): Promise<number> => {
        const framed = await openFramed(flooder, server)
        const t0 = Date.now()
        try {
          await sendRaw(framed.stream, rawFrame(pseudoRandomBytes(512, seedOf(`junk/${i}`))))
        } catch {
          // reset already
        }
        const reading = await readUntilEnd(framed, 10_000)
        expect(reading.timedOut, `junk stream ${i} was cut off`).to.be.false()
        expect(reading.messages.filter(m => m.type !== 'error')).to.deep.equal([])
        return Date.now() - t0
      })

      // the honest load
      const pulls = clients.flatMap((client, c) => Array.from({ length: SESSIONS_PER_CLIENT }, async (_, s): Promise<TransferStats> => {
        const dag = dags[c * SESSIONS_PER_CLIENT + s]
        return client.carMirror.pull(server.libp2p.getMultiaddrs(), dag.root, { signal: AbortSignal.timeout(BUDGET_MS) })
      }))

      const results = await Promise.allSettled(pulls)
      const honestMs = Date.now() - started
      const failures = results.flatMap(r => r.status === 'rejected' ? [`${(r.reason as Error).name}: ${(r.reason as Error).message}`] : [])
      expect(failures, 'honest pulls that failed').to.deep.equal([])
      expect(honestMs).to.be.below(BUDGET_MS)
      for (let c = 0; c < CLIENTS; c++) {
        for (let s = 0; s < SESSIONS_PER_CLIENT; s++) {
          const dag = dags[c * SESSIONS_PER_CLIENT + s]
          for (const block of dag.blocks) {
            expect(await holdsExactly(clients[c].blockstore, block), `client ${c} holds ${block.cid}`).to.be.true()
          }
        }
      }

      const floods = await Promise.all(flood)
      const junkMs = await Promise.all(junk)
      const accepted = floods.filter(f => f.first?.type === 'header').length
      const refusals = floods.flatMap(f => f.first != null ? errorFrames([f.first]) : []).filter(e => e.code === 'refused').length
      expect(accepted + refusals, 'every flood pull was either served or refused with error/refused').to.equal(FLOOD_PULLS)
      expect(accepted).to.be.within(1, MAX_SESSIONS_PER_PEER)
      expect(refusals).to.be.at.least(FLOOD_PULLS - MAX_SESSIONS_PER_PEER)

      // the flooder's stalled sessions are cut off by the idle timeout
      const cutOff = await eventually(() => floods.every(f => f.framed.stream.status !== 'open'), SERVER_IDLE_MS + 5000)
      expect(cutOff, 'the server reset every stalled flood session').to.be.true()
      await expectNoSessions(server, SERVER_IDLE_MS + 5000)
      const sessionsAfter = server.carMirror.activeSessions

      clearInterval(sampler)
      const heapAfter = (await settledMemory()).heapUsed
      expect(heapAfter - heapBefore, 'heap growth after the load').to.be.below(HEAP_GROWTH_LIMIT)

      // the server still serves
      const probe = await createNode({ listen: false })
      nodes.push(probe)
      await probe.carMirror.pull(server.libp2p.getMultiaddrs(), dags[0].root, { signal: AbortSignal.timeout(10_000) })
      expect([...(await dagBlocks(probe.blockstore, dags[0].root)).keys()].sort()).to.deep.equal(dags[0].blocks.map(b => b.cid.toString()).sort())

      const honest = results.map(r => (r as PromiseFulfilledResult<TransferStats>).value)
      // eslint-disable-next-line no-console
      console.info('      load, measured:', {
        honestSessions: honest.length,
        honestWallMs: honestMs,
        slowestSessionMs: Math.max(...honest.map(s => s.durationMs)),
        floodAccepted: accepted,
        floodRefused: refusals,
        flooderStreamsPeak,
        junkCutOffMsMax: Math.max(...junkMs),
        heapBeforeMiB: (heapBefore / MiB).toFixed(1),
        heapPeakMiB: (heapPeak / MiB).toFixed(1),
        heapAfterMiB: (heapAfter / MiB).toFixed(1),
        sessionsAfter
      })
    } finally {
      clearInterval(sampler)
      clearInterval(counter)
    }
  })

  it('a refused flood session ends with SessionRefusedError for a real client', async () => {
    const server = await createNode({ maxSessionsPerPeer: 1, idleTimeout: SERVER_IDLE_MS })
    const client = await createNode({ listen: false })
    nodes.push(server, client)
    const big = await bigTree(64, 16 * KiB, 8, 'load/refused')
    await putBlocks(server.blockstore, big.blocks)
    // one session held open by a reader that never reads
    const holder = await openFramed(client, server)
    await holder.write({ type: 'pull', roots: [big.root], wants: [] })
    const first = await readUntilEnd(holder, 5000, () => true)
    expect(first.messages[0]?.type).to.equal('header')
    holder.stream.pause()

    const err = await client.carMirror.pull(server.libp2p.getMultiaddrs(), big.root, { signal: AbortSignal.timeout(10_000) }).then(() => undefined, (e: Error) => e)

    expect(err).to.not.be.undefined()
    expectTyped(err as Error, 'SessionRefusedError')
    holder.stream.abort(new Error('test over'))
    await expectNoSessions(server, SERVER_IDLE_MS + 3000)
  })
})
