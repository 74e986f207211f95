/**
 * FramedStream.limitReceiveWindow over real libp2p streams (yamux over
 * WebSockets on 127.0.0.1): a peer can send at most about the window ahead
 * on a stream this node has stopped reading.
 */
import { expect } from 'aegir/chai'
import { BLOCKS_RECEIVE_WINDOW, CONTROL_RECEIVE_WINDOW, PACED_WINDOW_MIN } from '../../src/constants.ts'
import { Budget } from '../../src/core/budget.ts'
import { FramedStream } from '../../src/transport/framed-stream.ts'
import { testNodes } from '../fixtures/nodes.ts'
import type { Stream } from '@libp2p/interface'

const PROTOCOL = '/test/receive-window/1'
const CHUNK = 64 * 1024

/** A stream from a new node (the writer's end, `outbound`) to another (the reader's end, `stream`) */
async function openStream (): Promise<{ stream: Stream, outbound: Stream }> {
  const { node } = nodes
  const reader = await node()
  const writer = await node()
  const inbound = new Promise<Stream>(resolve => { void reader.libp2p.handle(PROTOCOL, (stream) => { resolve(stream) }) })
  const outbound = await writer.libp2p.dialProtocol(reader.libp2p.getMultiaddrs(), PROTOCOL)
  return { stream: await inbound, outbound }
}

/** Polls `measure` every 300 ms until it gives the same non-negative value twice (at most 20 s); returns it */
async function untilSteady (measure: () => number): Promise<number> {
  let last = -1
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 300))
    const now = measure()
    if (now >= 0 && now === last) {
      break
    }
    last = now
  }
  return last
}

/**
 * Opens a stream from one node to another; the reader takes in `readFirst`
 * bytes as fast as they come (yamux grows the window on a fast link), then
 * stops reading while the writer goes on to `total`. Resolves with all the
 * reader's side took in (read, and held unread) once the writer is stuck.
 */
async function takenIn (limit: 'none' | 'later' | 'from the start' | 'restored', readFirst: number, total: number, opened?: OpenedWindow): Promise<number> {
  const { stream, outbound } = await openStream()
  const framed = new FramedStream(stream, { receiveWindow: limit === 'from the start' || limit === 'restored' ? CONTROL_RECEIVE_WINDOW : undefined })
  if (limit === 'later') {
    framed.limitReceiveWindow(CONTROL_RECEIVE_WINDOW)
  }
  if (limit === 'restored') {
    framed.restoreReceiveWindow()
  }
  if (opened != null) {
    opened.result = framed.openReceiveWindow(opened.bytes, opened.budget)
  }
  let read = 0
  stream.addEventListener('message', (event) => {
    read += event.data.byteLength
    if (read >= readFirst && stream.readStatus === 'readable') {
      stream.pause()
    }
  })
  // the writer never waits: what it sends past the window waits on its side
  for (let sent = 0; sent < total; sent += CHUNK) {
    outbound.send(new Uint8Array(CHUNK))
  }
  // until the reader has stopped and nothing more arrives for a while
  await untilSteady(() => stream.readStatus === 'paused' ? read + stream.readBufferLength : -1)
  expect(stream.readStatus, 'the reader stopped reading').to.equal('paused')
  const taken = read + stream.readBufferLength
  if (opened != null) {
    opened.heldWhileOpen = opened.budget.used
    outbound.abort(new Error('test over'))
    framed.abort(new Error('test over'))
  }
  return taken
}

/** What takenIn opens the reader's window with (`openReceiveWindow`), and what came of it */
interface OpenedWindow {
  bytes: number
  budget: Budget
  /** What openReceiveWindow returned */
  result?: boolean
  /** The budget's use once the writer was stuck, before the stream closed */
  heldWhileOpen?: number
}

/**
 * A writer trickles CHUNKs at about 1.3 MB/s for 3 s to a reader that opened
 * its window as a pull does (and paced it, when `paced`) and reads all that
 * comes; then the reader stops reading and the writer sends 16 MiB at once.
 * Resolves with what the reader's side took in after it stopped: what the
 * window let the writer have on its way.
 */
async function takenAfterTrickle (paced: boolean): Promise<number> {
  const { stream, outbound } = await openStream()
  const framed = new FramedStream(stream)
  framed.openReceiveWindow(BLOCKS_RECEIVE_WINDOW, new Budget('windowBytes', 16 * 1024 * 1024))
  if (paced) {
    framed.paceReceiveWindow()
  }
  // the bytes are not frames: they are dropped as they come, and the window is what this looks at
  framed.discardIncoming()
  let arrived = 0
  stream.addEventListener('message', (event) => { arrived += event.data.byteLength })
  for (let i = 0; i < 60; i++) {
    outbound.send(new Uint8Array(CHUNK))
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  await new Promise(resolve => setTimeout(resolve, 200))
  stream.pause()
  const atStop = arrived + stream.readBufferLength
  for (let sent = 0; sent < 16 * 1024 * 1024; sent += CHUNK) {
    outbound.send(new Uint8Array(CHUNK))
  }
  const taken = await untilSteady(() => arrived + stream.readBufferLength)
  outbound.abort(new Error('test over'))
  framed.abort(new Error('test over'))
  return taken - atStop
}

const nodes = testNodes({ carMirror: false })

describe('transport/FramedStream receive window', () => {
  const READ_FIRST = 2 * 1024 * 1024

  it('a stream limited to the control window takes in at most about one window past where its reader stopped', async () => {
    const taken = await takenIn('later', READ_FIRST, 16 * 1024 * 1024)
    expect(taken - READ_FIRST).to.be.at.most(2 * CONTROL_RECEIVE_WINDOW)
  })

  it('a stream limited from the start (an inbound session before its first frame) never grows its window', async () => {
    const taken = await takenIn('from the start', READ_FIRST, 16 * 1024 * 1024)
    expect(taken - READ_FIRST).to.be.at.most(2 * CONTROL_RECEIVE_WINDOW)
  })

  it('restoreReceiveWindow lets the window grow again (a push being received)', async () => {
    const taken = await takenIn('restored', READ_FIRST, 16 * 1024 * 1024)
    // more than a limited stream can take in: how far yamux grows past that depends on the link's timing
    expect(taken - READ_FIRST).to.be.above(2 * CONTROL_RECEIVE_WINDOW)
  })

  it('openReceiveWindow lets the peer send that far at once, taking what it adds from the budget until the stream closes (a pull, an accepted push)', async () => {
    const opened: OpenedWindow = { bytes: BLOCKS_RECEIVE_WINDOW, budget: new Budget('windowBytes', 16 * 1024 * 1024) }
    // as a push server does: limited from the start, restored, then opened; the
    // reader stops at its first chunk, so all it takes in is what the window let the writer send
    const taken = await takenIn('restored', 1, 16 * 1024 * 1024, opened)
    expect(opened.result).to.be.true()
    expect(taken).to.be.at.least(BLOCKS_RECEIVE_WINDOW - CHUNK)
    expect(opened.heldWhileOpen).to.be.at.least(BLOCKS_RECEIVE_WINDOW - CONTROL_RECEIVE_WINDOW)
    expect(opened.budget.used, 'given back when the stream closed').to.equal(0)
  })

  it('openReceiveWindow opens nothing when the budget has no room: the peer sends one window ahead, as before', async () => {
    const budget = new Budget('windowBytes', 16 * 1024 * 1024)
    budget.charge(15 * 1024 * 1024)
    const opened: OpenedWindow = { bytes: BLOCKS_RECEIVE_WINDOW, budget }
    const taken = await takenIn('restored', 1, 16 * 1024 * 1024, opened)
    expect(opened.result).to.be.false()
    expect(taken).to.be.at.most(2 * CONTROL_RECEIVE_WINDOW)
    expect(budget.used).to.equal(15 * 1024 * 1024)
  })

  it('paceReceiveWindow keeps the window near a second of what arrives: a stream fed 1.3 MB/s lets far less wait on its way than the window it opened', async function () {
    this.timeout(60_000)
    const unpaced = await takenAfterTrickle(false)
    const paced = await takenAfterTrickle(true)
    // yamux's window, opened to 4 MiB, grows further as the bytes are read
    expect(unpaced, 'unpaced').to.be.at.least(BLOCKS_RECEIVE_WINDOW - CHUNK)
    // about a second at 1.3 MB/s (at least PACED_WINDOW_MIN), and a chunk on its way
    expect(paced, 'paced').to.be.at.most(2 * 1024 * 1024)
    expect(paced, 'paced').to.be.at.least(PACED_WINDOW_MIN)
  })

  it('without the limit the same stream takes in more than a limited one past where its reader stopped (what the limit is for)', async () => {
    const taken = await takenIn('none', READ_FIRST, 16 * 1024 * 1024)
    expect(taken - READ_FIRST).to.be.above(2 * CONTROL_RECEIVE_WINDOW)
  })
})
