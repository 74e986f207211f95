/**
 * Node-wide budgets (issue 9) at test scale: every budget is given back when
 * sessions end, stalled sessions are ended and evicted to make room for
 * honest ones, and the budgets show up as libp2p metrics. The attack suite
 * (test/hostile/attacks) proves the bounds against a server in its own process.
 */
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { expect } from 'aegir/chai'
import { register } from 'prom-client'
import { encodeLength } from '../src/transport/framed-stream.ts'
import { identityCborBlock } from './fixtures/dag.ts'
import { TREE_V1, addLargeFile, addTree, cborDag, putBlocks } from './fixtures/dags.ts'
import { testNodes } from './fixtures/nodes.ts'
import { randomCid } from './hostile/attacks/dags.ts'
import { eventually, openFramed, readUntilEnd, sendRaw } from './hostile/helpers.ts'
import type { CarMirrorStats } from '../src/index.ts'
import type { TestNode } from './fixtures/nodes.ts'
import type { FramedStream } from '../src/transport/framed-stream.ts'
import type { CID } from 'multiformats/cid'

function expectAllReturned (stats: CarMirrorStats): void {
  for (const [name, { used }] of Object.entries(stats.budgets)) {
    expect(used, `budget ${name}`).to.equal(0)
  }
}

describe('node-wide budgets', () => {
  const { node } = testNodes({ idleTimeout: 5000 })

  /** A raw pull of an identity root: nothing to send, so the session makes no progress after its header */
  async function stalledSession (from: TestNode, to: TestNode): Promise<FramedStream> {
    const framed = await openFramed(from, to)
    await framed.write({ type: 'pull', roots: [identityCborBlock({ stalled: Math.random() }).cid], wants: [] })
    await readUntilEnd(framed, 2000, m => m.type === 'idle')
    return framed
  }

  /** A server whose want queue holds 1,000, and three pulls of a 16 MiB file from it whose readers stopped after the header */
  async function pausedPulls (): Promise<{ server: TestNode, sessions: FramedStream[] }> {
    const server = await node({ budgets: { queuedWants: 1000 } })
    const client = await node()
    const root = await addLargeFile(server, 16 * 1024 * 1024, 8)
    const sessions = await Promise.all([0, 1, 2].map(async () => {
      const framed = await openFramed(client, server)
      await framed.write({ type: 'pull', roots: [root], wants: [] })
      await readUntilEnd(framed, 2000, m => m.type === 'header')
      framed.stream.pause()
      return framed
    }))
    return { server, sessions }
  }

  it('gives every budget back once pulls, pushes and failed sessions end', async () => {
    const server = await node({ allowPush: () => true })
    const client = await node()
    const root = await addTree(server, TREE_V1)
    const dag = await cborDag('budgets')
    await putBlocks(client.blockstore, dag.stored)
    await client.carMirror.pull(server.libp2p.getMultiaddrs(), root)
    await client.carMirror.push(server.libp2p.getMultiaddrs(), dag.root)
    // a want outside the DAG: answered with missing, then the client ends the session
    const framed = await openFramed(client, server)
    await framed.write({ type: 'pull', roots: [root], wants: [dag.root] })
    await readUntilEnd(framed, 2000, m => m.type === 'idle')
    framed.abort(new Error('test over'))

    expect(await eventually(() => server.carMirror.stats().sessions.inbound === 0)).to.be.true()
    expectAllReturned(server.carMirror.stats())
    expectAllReturned(client.carMirror.stats())
    expect(server.carMirror.stats().budgets.sessions.limit).to.equal(256)
    // the pull's stream (at the client) and the accepted push's (at the server) were opened wide from windowBytes
    expect(client.carMirror.stats().budgets.windowBytes.peak).to.be.above(0)
    expect(server.carMirror.stats().budgets.windowBytes.peak).to.be.above(0)
  })

  it('opens no stream wider than windowBytes allows: with 0, pulls and pushes still complete at yamux\'s own window', async () => {
    const server = await node({ allowPush: () => true, budgets: { windowBytes: 0 } })
    const client = await node({ budgets: { windowBytes: 0 } })
    const root = await addLargeFile(server, 2 * 1024 * 1024, 1)
    const pushed = await addLargeFile(client, 2 * 1024 * 1024, 2)
    await client.carMirror.pull(server.libp2p.getMultiaddrs(), root)
    await client.carMirror.push(server.libp2p.getMultiaddrs(), pushed)
    expect(await client.blockstore.has(root)).to.be.true()
    expect(await server.blockstore.has(pushed)).to.be.true()
    expect(client.carMirror.stats().budgets.windowBytes.peak).to.equal(0)
    expect(server.carMirror.stats().budgets.windowBytes.peak).to.equal(0)
  })

  it('ends a session that makes no progress, however many statuses its peer sends', async () => {
    const server = await node({ stallTimeout: 800 })
    const client = await node()
    const framed = await stalledSession(client, server)
    const started = Date.now()
    // empty statuses are frames, not progress
    const keepBusy = setInterval(() => { framed.write({ type: 'status', wants: [] }).catch(() => {}) }, 100)
    try {
      expect(await eventually(() => server.carMirror.stats().sessions.inbound === 0, 5000)).to.be.true()
    } finally {
      clearInterval(keepBusy)
    }
    expect(Date.now() - started).to.be.below(4000)
  })

  it('evicts the longest-stalled session when the slots run out, so an honest pull is served', async () => {
    const server = await node({ maxSessions: 3, evictAfter: 200 })
    const attacker = await node()
    const honest = await node()
    const root = await addTree(server, TREE_V1)
    await Promise.all([1, 2, 3].map(async () => stalledSession(attacker, server)))
    expect(server.carMirror.stats().sessions.inbound).to.equal(3)
    await new Promise(resolve => setTimeout(resolve, 300))
    const stats = await honest.carMirror.pull(server.libp2p.getMultiaddrs(), root)
    expect(stats.blocksReceived).to.be.above(0)
  })

  it('counts sessions per remote address, whatever the peer ids', async () => {
    const server = await node({ maxSessionsPerAddress: 2, evictAfter: 60_000 })
    const root = await addTree(server, TREE_V1)
    const a = await node()
    const b = await node()
    await stalledSession(a, server)
    await stalledSession(b, server)
    // a third peer id from 127.0.0.1: no slot and nobody stalled long enough to evict
    const c = await node()
    const framed = await openFramed(c, server)
    await framed.write({ type: 'pull', roots: [root], wants: [] })
    const reading = await readUntilEnd(framed, 2000)
    expect(reading.messages.filter(m => m.type === 'error').map(m => m.type === 'error' ? m.code : '')).to.deep.equal(['refused'])
  })

  it('a peer holding many slots can neither take an honest peer\'s slot nor churn its own', async () => {
    const server = await node({ maxSessions: 3, evictAfter: 200 })
    const attacker = await node()
    const honest = await node()
    const held = await stalledSession(honest, server)
    await stalledSession(attacker, server)
    await stalledSession(attacker, server)
    await new Promise(resolve => setTimeout(resolve, 300))
    // all stalled past evictAfter, but the attacker holds as many slots as any victim would leave it
    const framed = await openFramed(attacker, server)
    await framed.write({ type: 'pull', roots: [identityCborBlock({ third: true }).cid], wants: [] })
    const reading = await readUntilEnd(framed, 3000)
    expect(reading.messages.filter(m => m.type === 'error').map(m => m.type === 'error' ? m.code : '')).to.deep.equal(['refused'])
    // the refusal takes a second, so a loop of refused sessions runs slowly
    expect(reading.ms).to.be.at.least(900)
    expect(held.stream.status).to.equal('open')
    expect(server.carMirror.stats().sessions.inbound).to.equal(3)
  })

  it('a sender whose peer stops reading holds about one block in the stream, not the DAG', async () => {
    const server = await node()
    const client = await node()
    // 16 MiB in 256 KiB raw leaves
    const root = await addLargeFile(server, 16 * 1024 * 1024, 7)
    const framed = await openFramed(client, server)
    await framed.write({ type: 'pull', roots: [root], wants: [] })
    await readUntilEnd(framed, 2000, m => m.type === 'header')
    framed.stream.pause()
    await new Promise(resolve => setTimeout(resolve, 1500))
    const unsent = server.libp2p.getConnections().flatMap(connection => connection.streams).reduce((sum, stream) => sum + stream.writeBufferLength, 0)
    // libp2p's onDrain() resolves at once after a stream's first drain: waiting on it buffered the whole file
    expect(unsent).to.be.below(1024 * 1024)
    expect(server.carMirror.stats().budgets.readAheadBytes.used).to.be.at.most(4 * 1024 * 1024 + 256 * 1024)
    framed.abort(new Error('done'))
  })

  it('a peer that does not read cannot queue wants past the node\'s budget', async () => {
    // three pulls whose readers stop, so the server's writes wait, then statuses of 800 wants each
    const { server, sessions } = await pausedPulls()
    const wants = (session: number, status: number): CID[] => Array.from({ length: 800 }, (_, i) => randomCid(`${session}/${status}/${i}`))
    for (let status = 0; status < 4; status++) {
      await Promise.all(sessions.map(async (framed, session) => {
        await framed.write({ type: 'status', wants: wants(session, status) }, { signal: AbortSignal.timeout(2000) })
      }))
    }
    await new Promise(resolve => setTimeout(resolve, 1000))
    // statuses are only decoded once the node's queue has room for their wants, even while the session's writes wait
    const { budgets } = server.carMirror.stats()
    expect(budgets.queuedWants.used).to.be.at.most(1000)
    // each status is a large frame (30 KB): one is decoded and taken in at a time, node-wide
    expect(budgets.largeFrames.used).to.be.at.most(1)
    for (const framed of sessions) {
      framed.abort(new Error('done'))
    }
    // and everything is given back, the large-frame slot too
    await eventually(() => Object.values(server.carMirror.stats().budgets).every(({ used }) => used === 0))
    expectAllReturned(server.carMirror.stats())
  })

  it('a peer that closes its end after its statuses cannot queue wants past the node\'s budget either', async () => {
    // three pulls whose readers stop, then statuses of 800 wants each, then the end of their writing
    const { server, sessions } = await pausedPulls()
    await Promise.all(sessions.map(async (framed, session) => {
      for (let status = 0; status < 3; status++) {
        await framed.write({ type: 'status', wants: Array.from({ length: 800 }, (_, i) => randomCid(`closed ${session}/${status}/${i}`)) }, { signal: AbortSignal.timeout(2000) })
      }
      await framed.stream.close({ signal: AbortSignal.timeout(2000) }).catch(() => {})
    }))
    await new Promise(resolve => setTimeout(resolve, 1000))
    // a sender reads on once its peer closed (a done may follow), but what it reads without room may not go over the node's queue
    expect(server.carMirror.stats().budgets.queuedWants.peak).to.be.at.most(1000)
    for (const framed of sessions) {
      framed.abort(new Error('done'))
    }
    await eventually(() => Object.values(server.carMirror.stats().budgets).every(({ used }) => used === 0))
    expectAllReturned(server.carMirror.stats())
  })

  it('counts a frame still arriving against the buffer budget, and gives it back when the stream ends', async () => {
    const server = await node({ budgets: { bufferedBytes: 1024 } })
    const client = await node()
    const framed = await openFramed(client, server)
    // a 900 KB frame is announced and 100 KB of it sent; the rest never comes
    await sendRaw(framed.stream, encodeLength(900_000), { signal: AbortSignal.timeout(2000) })
    await sendRaw(framed.stream, new Uint8Array(100_000), { signal: AbortSignal.timeout(2000) })
    // what arrived is charged although no whole frame did: the stream stops reading past the budget
    expect(await eventually(() => server.carMirror.stats().budgets.bufferedBytes.used > 1024)).to.be.true()
    expect(server.carMirror.stats().budgets.bufferedBytes.used).to.be.at.most(100_000 + 4)
    framed.abort(new Error('done'))
    expect(await eventually(() => server.carMirror.stats().sessions.inbound === 0)).to.be.true()
    expect(await eventually(() => server.carMirror.stats().budgets.bufferedBytes.used === 0)).to.be.true()
  })

  it('publishes budgets and sessions as libp2p metrics', async () => {
    register.clear()
    const server = await node({ metrics: prometheusMetrics() })
    const client = await node()
    await stalledSession(client, server)
    const text = await register.metrics()
    expect(text).to.match(/helia_car_mirror_budgets\{budget="bloomBytes"\} 0/)
    expect(text).to.match(/helia_car_mirror_sessions\{direction="inbound"\} 1/)
  })
})
