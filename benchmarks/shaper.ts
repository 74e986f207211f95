/* eslint-disable no-console */

/**
 * A latency and bandwidth shaper: a TCP proxy on 127.0.0.1 that the dialling
 * node connects through. Every chunk read from one side is delivered to the
 * other side `delayMs` later (one-way delay, the same in each direction),
 * scheduled at its own arrival time plus the delay, so the delay alone never
 * holds back later chunks (no head-of-line stalls) and order is preserved.
 *
 * Bandwidth: an optional token bucket per direction (`rateBytesPerSecond`,
 * `burstBytes`) delays a chunk until its tokens are available.
 *
 * Window: at most `windowBytes` per direction may be "in flight" (queued in
 * the proxy or delivered less than one delay ago, i.e. not yet acknowledged as
 * a TCP receiver would); beyond that the source socket is paused, so a fast
 * writer sees backpressure as it would from a real TCP window. Backpressure
 * from the destination (its socket buffer is full) stops delivery until it
 * drains; the queue then fills the window and pauses the source.
 *
 * A FIN is delivered in order after the data before it (half-close works); an
 * error or reset on either side destroys both sides at once. Bytes are counted
 * each way when they reach the proxy.
 *
 * Run `node benchmarks/shaper.ts` for a self-check: an echo round trip through
 * the proxy must take about twice the one-way delay, and a capped transfer
 * about size / rate.
 */

import { createHash } from 'node:crypto'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'

export interface ShaperOptions {
  /** Where to forward connections: the listening node's TCP port on 127.0.0.1 */
  targetPort: number
  targetHost?: string
  /** One-way delay added to each direction, ms; default 0 */
  delayMs?: number
  /** Bandwidth cap per direction, bytes per second; default none */
  rateBytesPerSecond?: number
  /** Token bucket depth, bytes; default 64 KiB */
  burstBytes?: number
  /** Most bytes in flight per direction before the source is paused; default 4 MiB */
  windowBytes?: number
}

/** Bytes that reached the proxy, each way */
export interface ShaperCounters {
  /** From the dialling side (client) to the listening side (server) */
  clientToServer: number
  /** From the listening side (server) to the dialling side (client) */
  serverToClient: number
}

/** A chunk due within this many ms is delivered now */
const TIMER_SLACK_MS = 0.1

interface Item {
  at: number
  data?: Buffer
  end?: boolean
}

interface Ack {
  at: number
  bytes: number
}

/** One direction of one proxied connection */
class Pipe {
  private readonly src: net.Socket
  private readonly dst: net.Socket
  private readonly options: Required<Omit<ShaperOptions, 'targetHost' | 'targetPort' | 'rateBytesPerSecond'>> & { rateBytesPerSecond?: number }
  private readonly count: (bytes: number) => void
  private readonly queue: Item[] = []
  private readonly acks: Ack[] = []
  private inFlight = 0
  private paused = false
  private blocked = false
  private tat = 0
  private timer?: NodeJS.Timeout
  private immediate?: NodeJS.Immediate
  private timerAt = Infinity
  private closed = false

  constructor (src: net.Socket, dst: net.Socket, options: Pipe['options'], count: (bytes: number) => void) {
    this.src = src
    this.dst = dst
    this.options = options
    this.count = count
    src.on('data', (chunk: Buffer) => { this.onData(chunk) })
    src.on('end', () => { this.push({ at: this.deliveryTime(0), end: true }) })
    dst.on('drain', () => {
      this.blocked = false
      this.flush()
    })
  }

  private deliveryTime (bytes: number): number {
    const now = performance.now()
    let sendAt = now
    const rate = this.options.rateBytesPerSecond
    if (rate != null && rate > 0) {
      const burstMs = this.options.burstBytes / rate * 1000
      sendAt = Math.max(now, this.tat - burstMs)
      this.tat = Math.max(this.tat, sendAt) + bytes / rate * 1000
    }
    return sendAt + this.options.delayMs
  }

  private onData (chunk: Buffer): void {
    this.count(chunk.byteLength)
    this.inFlight += chunk.byteLength
    this.push({ at: this.deliveryTime(chunk.byteLength), data: chunk })
    if (this.inFlight > this.options.windowBytes && !this.paused) {
      this.paused = true
      this.src.pause()
    }
  }

  private push (item: Item): void {
    if (this.closed) {
      return
    }
    // delivery times never go backwards, so the queue stays in order
    const last = this.queue.at(-1)
    if (last != null && last.at > item.at) {
      item.at = last.at
    }
    this.queue.push(item)
    this.flush()
  }

  /** Delivers what is due, settles acknowledgements, and sets the timer for what is not yet due */
  private flush (): void {
    if (this.closed) {
      return
    }
    const now = performance.now()
    while (this.acks.length > 0 && this.acks[0].at <= now + TIMER_SLACK_MS) {
      this.inFlight -= (this.acks.shift() as Ack).bytes
    }
    while (!this.blocked && this.queue.length > 0 && this.queue[0].at <= now + TIMER_SLACK_MS) {
      const item = this.queue.shift() as Item
      if (item.end === true) {
        this.dst.end()
        continue
      }
      const data = item.data as Buffer
      if (this.options.delayMs > 0) {
        this.acks.push({ at: now + this.options.delayMs, bytes: data.byteLength })
      } else {
        this.inFlight -= data.byteLength
      }
      if (!this.dst.write(data)) {
        this.blocked = true
      }
    }
    if (this.paused && this.inFlight <= this.options.windowBytes / 2) {
      this.paused = false
      this.src.resume()
    }
    let next = Infinity
    if (!this.blocked && this.queue.length > 0) {
      next = this.queue[0].at
    }
    if (this.acks.length > 0) {
      next = Math.min(next, this.acks[0].at)
    }
    if (next !== Infinity && next !== this.timerAt) {
      this.clearTimer()
      this.timerAt = next
      const wait = next - now
      const fire = (): void => {
        this.timerAt = Infinity
        this.timer = undefined
        this.immediate = undefined
        this.flush()
      }
      // timers fire about a millisecond late: sleep until just before the
      // delivery time, then poll with setImmediate for the last stretch
      if (wait > 1.5) {
        this.timer = setTimeout(fire, Math.floor(wait - 1))
      } else {
        this.immediate = setImmediate(fire)
      }
    }
  }

  private clearTimer (): void {
    clearTimeout(this.timer)
    clearImmediate(this.immediate)
    this.timer = undefined
    this.immediate = undefined
  }

  close (): void {
    this.closed = true
    this.clearTimer()
    this.queue.length = 0
    this.acks.length = 0
  }
}

/**
 * A shaping TCP proxy. Dial `127.0.0.1:<port>` instead of the target.
 *
 * @example
 *
 * ```ts
 * const shaper = await Shaper.start({ targetPort: 4001, delayMs: 25 })
 * await client.libp2p.dial(multiaddr(`/ip4/127.0.0.1/tcp/${shaper.port}/ws/p2p/${serverId}`))
 * console.info(shaper.counters)
 * await shaper.stop()
 * ```
 */
export class Shaper {
  readonly counters: ShaperCounters = { clientToServer: 0, serverToClient: 0 }
  private readonly server: net.Server
  private readonly sockets = new Set<net.Socket>()
  private readonly pipes = new Set<Pipe>()
  private readonly options: ShaperOptions

  private constructor (server: net.Server, options: ShaperOptions) {
    this.server = server
    this.options = options
  }

  static async start (options: ShaperOptions): Promise<Shaper> {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true })
    const shaper = new Shaper(server, options)
    server.on('connection', (socket) => { shaper.accept(socket) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
    return shaper
  }

  /** The port to dial on 127.0.0.1 */
  get port (): number {
    return (this.server.address() as net.AddressInfo).port
  }

  /** Open proxied connections */
  get connections (): number {
    return this.pipes.size / 2
  }

  private accept (client: net.Socket): void {
    client.setNoDelay(true)
    const upstream = net.connect({ port: this.options.targetPort, host: this.options.targetHost ?? '127.0.0.1', allowHalfOpen: true, noDelay: true })
    this.sockets.add(client)
    this.sockets.add(upstream)
    const settings = {
      delayMs: this.options.delayMs ?? 0,
      rateBytesPerSecond: this.options.rateBytesPerSecond,
      burstBytes: this.options.burstBytes ?? 64 * 1024,
      windowBytes: this.options.windowBytes ?? 4 * 1024 * 1024
    }
    const up = new Pipe(client, upstream, settings, (n) => { this.counters.clientToServer += n })
    const down = new Pipe(upstream, client, settings, (n) => { this.counters.serverToClient += n })
    this.pipes.add(up)
    this.pipes.add(down)

    let gone = false
    const teardown = (err?: Error): void => {
      if (gone) {
        return
      }
      gone = true
      up.close()
      down.close()
      this.pipes.delete(up)
      this.pipes.delete(down)
      // an error on one side resets the other; a clean close was already
      // forwarded as a FIN in order with the data
      client.destroy(err)
      upstream.destroy(err)
      this.sockets.delete(client)
      this.sockets.delete(upstream)
    }
    const onError = (err: Error): void => { teardown(err) }
    client.on('error', onError)
    upstream.on('error', onError)
    // close only when both directions have finished (half-close keeps the other going)
    let closedSockets = 0
    const onClose = (hadError: boolean): void => {
      closedSockets++
      if (hadError || closedSockets === 2) {
        teardown()
      }
    }
    client.on('close', onClose)
    upstream.on('close', onClose)
    // a socket that ends both ways must be destroyed to emit close: when we have
    // written our FIN and read theirs, Node closes it (allowHalfOpen only delays that)
    for (const socket of [client, upstream]) {
      const closeWhenDone = (): void => {
        if (socket.writableEnded && socket.readableEnded) {
          socket.destroy()
        }
      }
      socket.on('end', closeWhenDone)
      socket.on('finish', closeWhenDone)
    }
  }

  /** Stops listening and resets every proxied connection */
  async stop (): Promise<void> {
    for (const pipe of this.pipes) {
      pipe.close()
    }
    this.pipes.clear()
    for (const socket of this.sockets) {
      socket.destroy()
    }
    this.sockets.clear()
    await new Promise<void>((resolve) => {
      this.server.close(() => { resolve() })
    })
  }
}

export interface SelfCheckResult {
  delayMs: number
  /** Median echo round trip of a small message through the proxy, ms */
  echoRttMs: number
  rateBytesPerSecond: number
  /** Bytes echoed in the throughput check (each way) */
  bulkBytes: number
  /** Measured throughput of the capped echo, bytes per second */
  bulkBytesPerSecond: number
  /** What it should be: size / (size / rate + one round trip) */
  expectedBytesPerSecond: number
  /** Bytes counted by the shaper, each way */
  counters: ShaperCounters
  /** Echoed bytes identical to the sent ones, and the connection closed cleanly */
  intact: boolean
  /** Bytes the proxy took from a writer while the target did not read */
  backpressureAcceptedBytes: number
  ok: boolean
}

/**
 * Measures the shaper against an echo server: the median round trip of a
 * small message (expected about 2 x delay), then a capped bulk transfer
 * (expected about size / rate), checking that the echoed bytes are intact
 * and that the half-close passes through.
 */
export async function selfCheck (delayMs = 25, rateBytesPerSecond = 8 * 1024 * 1024, bulkBytes = 2 * 1024 * 1024): Promise<SelfCheckResult> {
  const echo = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.pipe(socket)
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
  const targetPort = (echo.address() as net.AddressInfo).port

  const measureRtt = async (shaper: Shaper): Promise<number> => {
    const socket = net.connect({ port: shaper.port, host: '127.0.0.1', noDelay: true })
    await new Promise<void>((resolve) => socket.once('connect', resolve))
    const rtts: number[] = []
    for (let i = 0; i < 9; i++) {
      const started = performance.now()
      const back = new Promise<void>((resolve) => socket.once('data', () => { resolve() }))
      socket.write(Buffer.from([i]))
      await back
      rtts.push(performance.now() - started)
    }
    socket.destroy()
    rtts.sort((a, b) => a - b)
    return rtts[Math.floor(rtts.length / 2)]
  }

  const latency = await Shaper.start({ targetPort, delayMs })
  const echoRttMs = await measureRtt(latency)
  await latency.stop()

  const capped = await Shaper.start({ targetPort, delayMs, rateBytesPerSecond })
  const payload = Buffer.alloc(bulkBytes)
  for (let i = 0; i < payload.length; i++) {
    payload[i] = (i * 2654435761) >>> 24
  }
  const socket = net.connect({ port: capped.port, host: '127.0.0.1', allowHalfOpen: true })
  await new Promise<void>((resolve) => socket.once('connect', resolve))
  const started = performance.now()
  const received: Buffer[] = []
  const ended = new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => received.push(chunk))
    socket.on('end', () => { resolve() })
    socket.on('error', reject)
  })
  socket.end(payload)
  await ended
  const elapsed = (performance.now() - started) / 1000
  socket.destroy()
  const back = Buffer.concat(received)
  const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
  const intact = back.length === payload.length && digest(back) === digest(payload)
  const counters = { ...capped.counters }
  await capped.stop()
  await new Promise<void>((resolve) => echo.close(() => { resolve() }))

  // backpressure: a target that does not read for a while must stall the
  // writer once the window and the socket buffers are full
  const backpressureAcceptedBytes = await measureBackpressure(delayMs)

  // the echo crosses the cap twice, but both directions stream at once: about
  // size / rate (less the burst), plus one round trip
  const expectedSeconds = bulkBytes / rateBytesPerSecond + 2 * delayMs / 1000
  const bulkBytesPerSecond = bulkBytes / elapsed
  const ok = intact &&
    Math.abs(echoRttMs - 2 * delayMs) <= Math.max(2, 0.05 * delayMs) &&
    elapsed >= expectedSeconds * 0.85 && elapsed <= expectedSeconds * 1.3 &&
    counters.clientToServer === bulkBytes && counters.serverToClient === bulkBytes &&
    backpressureAcceptedBytes < BACKPRESSURE_TEST_BYTES / 2
  return { delayMs, echoRttMs, rateBytesPerSecond, bulkBytes, bulkBytesPerSecond, expectedBytesPerSecond: bulkBytes / expectedSeconds, counters, intact, backpressureAcceptedBytes, ok }
}

const BACKPRESSURE_TEST_BYTES = 256 * 1024 * 1024

/**
 * Writes BACKPRESSURE_TEST_BYTES through the proxy to a target that reads
 * nothing for 500 ms, and returns how many bytes the proxy accepted by then
 */
async function measureBackpressure (delayMs: number): Promise<number> {
  let resumeTarget = (): void => {}
  const sink = net.createServer((socket) => {
    socket.pause()
    socket.on('error', () => {})
    resumeTarget = () => { socket.resume() }
  })
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve))
  const shaper = await Shaper.start({ targetPort: (sink.address() as net.AddressInfo).port, delayMs })
  const socket = net.connect({ port: shaper.port, host: '127.0.0.1' })
  socket.on('error', () => {})
  await new Promise<void>((resolve) => socket.once('connect', resolve))
  const chunk = Buffer.alloc(1024 * 1024)
  let written = 0
  const writeMore = (): void => {
    while (written < BACKPRESSURE_TEST_BYTES) {
      written += chunk.length
      if (!socket.write(chunk)) {
        socket.once('drain', writeMore)
        return
      }
    }
  }
  writeMore()
  await new Promise((resolve) => setTimeout(resolve, 500))
  const accepted = shaper.counters.clientToServer
  resumeTarget()
  socket.destroy()
  await shaper.stop()
  await new Promise<void>((resolve) => sink.close(() => { resolve() }))
  return accepted
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const delay = Number(process.argv[2] ?? 25)
  const result = await selfCheck(delay)
  console.info(`echo RTT through the shaper: ${result.echoRttMs.toFixed(1)} ms (one-way delay ${delay} ms, expected ≈ ${2 * delay} ms)`)
  console.info(`capped echo: ${(result.bulkBytesPerSecond / 1024 / 1024).toFixed(2)} MiB/s (cap ${(result.rateBytesPerSecond / 1024 / 1024).toFixed(2)} MiB/s, expected ≈ ${(result.expectedBytesPerSecond / 1024 / 1024).toFixed(2)} MiB/s with the round trip), bytes intact: ${result.intact}, counted ${result.counters.clientToServer} / ${result.counters.serverToClient}`)
  console.info(`backpressure: the proxy accepted ${(result.backpressureAcceptedBytes / 1024 / 1024).toFixed(1)} MiB while the target read nothing (window 4 MiB + socket buffers)`)
  console.info(result.ok ? 'shaper self-check: ok' : 'shaper self-check: FAILED')
  process.exitCode = result.ok ? 0 : 1
}
