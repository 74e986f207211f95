import { logger as defaultLogger } from '@libp2p/logger'
import { CustomProgressEvent } from 'progress-events'
import { DEFAULT_COLD_CALL_BYTES, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_PUSH_BYTES, DEFAULT_MAX_ROOTS, DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_PEER, RESUME_MEMORY_MS, DEFAULT_MAX_INBOUND_STREAMS, DEFAULT_MAX_OUTBOUND_STREAMS, DEFAULT_READ_AHEAD, PROTOCOL_ID } from './constants.ts'
import { LinkReader } from './core/links.ts'
import { bloomOf } from './core/messages.ts'
import { ReceiverSession } from './core/receiver.ts'
import { SenderSession } from './core/sender.ts'
import { BlockVerifier } from './core/verify.ts'
import { walkHeldCids } from './core/walk.ts'
import { LimitExceededError, ProtocolError, SessionRefusedError } from './errors.ts'
import { FramedStream } from './transport/framed-stream.ts'
import { failSession, runReceiver, runSender } from './transport/run-session.ts'
import type { BloomFilter } from './core/bloom/bloom-filter.ts'
import type { Message, MessageLimits } from './core/messages.ts'
import type { ReceiverStep } from './core/receiver.ts'
import type { CarMirror, CarMirrorComponents, CarMirrorInit, PeerTarget, TransferOptions, TransferStats } from './index.ts'
import type { RunOptions } from './transport/run-session.ts'
import type { Connection, Logger, PeerId, Stream } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'

/**
 * The CAR Mirror service behind `createCarMirror`, `withCarMirror` and the
 * `carMirror` mixin: serves pulls (and allowed pushes) on the libp2p
 * protocol, and runs pulls and pushes as a client.
 */
export class DefaultCarMirror implements CarMirror {
  readonly protocol: string
  private readonly components: CarMirrorComponents
  private readonly init: CarMirrorInit
  private readonly log: Logger
  private readonly linkReader: LinkReader
  private readonly verifier: BlockVerifier
  private readonly limits: MessageLimits
  private readonly sessions = new Set<AbortController>()
  private readonly inboundByPeer = new Map<string, number>()
  private inboundCount = 0
  /** Pushes that failed after dialling, by peer and roots, until when they are remembered */
  private readonly interruptedPushes = new Map<string, number>()
  private started = false

  constructor (components: CarMirrorComponents, init: CarMirrorInit = {}) {
    this.components = components
    this.init = init
    this.protocol = init.protocol ?? PROTOCOL_ID
    this.log = components.logger?.forComponent('helia:car-mirror') ?? defaultLogger('helia:car-mirror')
    this.linkReader = new LinkReader({ codecs: init.codecs, loadCodec: init.loadCodec ?? components.getCodec })
    this.verifier = new BlockVerifier({ hashers: init.hashers, loadHasher: init.loadHasher ?? components.getHasher })
    this.limits = {
      maxBlockSize: init.maxBlockSize,
      maxBloomBytes: init.maxBloomBytes,
      maxBloomHashCount: init.maxBloomHashCount,
      maxCidsPerMessage: init.maxCidsPerMessage
    }
  }

  get activeSessions (): { inbound: number, outbound: number } {
    return { inbound: this.inboundCount, outbound: this.sessions.size - this.inboundCount }
  }

  async start (): Promise<void> {
    if (this.started) {
      return
    }
    await this.components.libp2p.handle(this.protocol, async (stream, connection) => {
      await this.serve(stream, connection)
    }, {
      maxInboundStreams: this.init.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS,
      maxOutboundStreams: this.init.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS
    })
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) {
      return
    }
    this.started = false
    for (const controller of this.sessions) {
      controller.abort(new Error('CAR Mirror is stopping'))
    }
    try {
      await this.components.libp2p.unhandle(this.protocol)
    } catch {
      // libp2p may have stopped first
    }
  }

  async pull (peer: PeerTarget, roots: CID | CID[], options: TransferOptions = {}): Promise<TransferStats> {
    const rootList = Array.isArray(roots) ? roots : [roots]
    return this.session(options, async (signal, stats) => {
      const receiver = await ReceiverSession.create(this.receiverInit(rootList, options.hints), { signal })
      if (receiver.complete) {
        this.log('pull of %s: already complete locally', rootList[0])
        return
      }
      const request = await receiver.pullRequest({ signal })
      const { framed } = await this.open(peer, signal)
      try {
        await runReceiver(framed, receiver, { signal, first: [request], ...this.progress(options, stats) })
      } finally {
        this.collect(stats, framed, undefined, receiver)
      }
    }, rootList)
  }

  async push (peer: PeerTarget, roots: CID | CID[], options: TransferOptions = {}): Promise<TransferStats> {
    const rootList = Array.isArray(roots) ? roots : [roots]
    return this.session(options, async (signal, stats) => {
      const bloom = await this.hintBloom(options.hints ?? [], signal)
      const { framed, remotePeer } = await this.open(peer, signal)
      // a push that broke off recently resumes without a cold call: the
      // server's first status says what it already holds
      const resumeKey = `${remotePeer}/${rootList.join(',')}`
      const resuming = (this.interruptedPushes.get(resumeKey) ?? 0) > Date.now()
      const sender = new SenderSession({
        ...this.senderInit(rootList),
        bloom,
        coldCallBytes: resuming ? 0 : this.init.coldCallBytes ?? DEFAULT_COLD_CALL_BYTES
      })
      try {
        await runSender(framed, sender, { signal, first: [{ type: 'push', roots: rootList, hints: options.hints ?? [] }], ...this.progress(options, stats) })
        this.interruptedPushes.delete(resumeKey)
      } catch (err) {
        this.forgetOldInterruptions()
        this.interruptedPushes.set(resumeKey, Date.now() + RESUME_MEMORY_MS)
        throw err
      } finally {
        this.collect(stats, framed, sender, undefined)
      }
    }, rootList)
  }

  private forgetOldInterruptions (): void {
    const now = Date.now()
    for (const [key, until] of this.interruptedPushes) {
      if (until <= now) {
        this.interruptedPushes.delete(key)
      }
    }
  }

  /**
   * For a push with hints: a Bloom of the hinted blocks this node holds,
   * which the server is believed to hold too
   */
  private async hintBloom (hints: CID[], signal: AbortSignal): Promise<BloomFilter | undefined> {
    const held: CID[] = []
    for await (const cid of walkHeldCids(this.components.blockstore, hints, { signal, offline: true, linkReader: this.linkReader, onMissing: () => {} })) {
      held.push(cid)
    }
    return held.length === 0 ? undefined : bloomOf(held)
  }

  /** Answers one inbound session */
  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const controller = new AbortController()
    const signal = controller.signal
    const framed = new FramedStream(stream, { limits: this.limits, idleTimeout: this.init.idleTimeout ?? DEFAULT_IDLE_TIMEOUT })
    const peer = connection.remotePeer
    const peerKey = peer.toString()
    const peerSessions = this.inboundByPeer.get(peerKey) ?? 0
    this.sessions.add(controller)
    this.inboundByPeer.set(peerKey, peerSessions + 1)
    this.inboundCount++
    try {
      if (this.inboundCount > (this.init.maxSessions ?? DEFAULT_MAX_SESSIONS) || peerSessions >= (this.init.maxSessionsPerPeer ?? DEFAULT_MAX_SESSIONS_PER_PEER)) {
        this.log('refusing a session from %p: too many sessions', peer)
        await this.refuse(framed, 'too many sessions')
        return
      }
      const first = await this.firstMessage(framed, signal)
      if ((first.type === 'pull' || first.type === 'push') && first.roots.length > (this.init.maxRoots ?? DEFAULT_MAX_ROOTS)) {
        throw new LimitExceededError(`A session may name at most ${this.init.maxRoots ?? DEFAULT_MAX_ROOTS} roots`)
      }
      if (first.type === 'pull') {
        if (!await this.allowed(this.init.allowPull, peer, first.roots, true)) {
          await this.refuse(framed, `pull of ${first.roots[0]} refused`)
          return
        }
        this.log('serving pull of %s to %p', first.roots[0], peer)
        const sender = new SenderSession({ ...this.senderInit(first.roots), request: first })
        await runSender(framed, sender, { signal })
      } else if (first.type === 'push') {
        if (!await this.allowed(this.init.allowPush, peer, first.roots, false)) {
          await this.refuse(framed, 'pushes are not allowed from this peer')
          return
        }
        this.log('accepting push of %s from %p', first.roots[0], peer)
        const maxStoredBytes = await this.pushQuota(peer, first.roots)
        const receiver = await ReceiverSession.create({ ...this.receiverInit(first.roots, first.hints), smallStoreBlocks: 0, maxStoredBytes, announceRoots: true }, { signal })
        const greeting = await receiver.pushGreeting({ signal })
        await runReceiver(framed, receiver, { signal, first: [greeting] })
      } else {
        throw new ProtocolError(`A session cannot start with a ${first.type} message`)
      }
    } catch (err) {
      this.log.error('inbound session from %p failed - %e', peer, err)
      // errors before the session ran (a bad first frame, too many roots) still get an error frame
      await failSession(framed, err as Error)
    } finally {
      controller.abort()
      this.sessions.delete(controller)
      this.inboundCount--
      const left = (this.inboundByPeer.get(peerKey) ?? 1) - 1
      if (left === 0) {
        this.inboundByPeer.delete(peerKey)
      } else {
        this.inboundByPeer.set(peerKey, left)
      }
    }
  }

  private async pushQuota (peer: PeerId, roots: CID[]): Promise<number> {
    if (this.init.pushQuota == null) {
      return DEFAULT_MAX_PUSH_BYTES
    }
    return this.init.pushQuota(peer, roots)
  }

  private async firstMessage (framed: FramedStream, signal: AbortSignal): Promise<Message> {
    const first = await framed.messages({ signal }).next()
    if (first.done === true) {
      throw new ProtocolError('The stream closed before the first message')
    }
    return first.value
  }

  private async allowed (hook: CarMirrorInit['allowPull'], peer: PeerId, roots: CID[], byDefault: boolean): Promise<boolean> {
    if (hook == null) {
      return byDefault
    }
    try {
      return await hook(peer, roots)
    } catch (err) {
      this.log.error('authorization hook failed - %e', err)
      return false
    }
  }

  /** Writes a refusal and ends the stream, so a refused peer holds nothing here */
  private async refuse (framed: FramedStream, reason: string): Promise<void> {
    await failSession(framed, new SessionRefusedError(reason), 'refused')
  }

  private async open (peer: PeerTarget, signal: AbortSignal): Promise<{ framed: FramedStream, remotePeer: PeerId }> {
    const connection = await this.components.libp2p.dial(peer, { signal })
    const stream = await connection.newStream(this.protocol, { signal })
    return { framed: new FramedStream(stream, { limits: this.limits, idleTimeout: this.init.idleTimeout ?? DEFAULT_IDLE_TIMEOUT }), remotePeer: connection.remotePeer }
  }

  private async session (options: TransferOptions, run: (signal: AbortSignal, stats: TransferStats) => Promise<void>, roots: CID[]): Promise<TransferStats> {
    const controller = new AbortController()
    const signal = options.signal == null ? controller.signal : AbortSignal.any([options.signal, controller.signal])
    this.sessions.add(controller)
    const started = Date.now()
    const stats: TransferStats = {
      roots,
      blocksSent: 0,
      blocksReceived: 0,
      blockBytesSent: 0,
      blockBytesReceived: 0,
      bytesSent: 0,
      bytesReceived: 0,
      duplicateBlocks: 0,
      bloomBytes: 0,
      statusFrames: 0,
      roundTrips: 0,
      durationMs: 0
    }
    try {
      await run(signal, stats)
      return stats
    } finally {
      stats.durationMs = Date.now() - started
      this.sessions.delete(controller)
    }
  }

  private progress (options: TransferOptions, stats: TransferStats): Pick<RunOptions, 'onSent' | 'onReceived' | 'onReceiverStep'> {
    const onProgress = options.onProgress
    const countStatus = (message: Message): void => {
      if (message.type === 'status' || message.type === 'pull') {
        stats.statusFrames++
        stats.bloomBytes += message.bloom?.bytes.byteLength ?? 0
      }
    }
    return {
      onSent: (message) => {
        countStatus(message)
        if (onProgress == null) {
          return
        }
        if (message.type === 'block') {
          onProgress(new CustomProgressEvent('car-mirror:block:sent', { cid: message.cid, bytes: message.bytes.byteLength }))
        } else if (message.type === 'status' || message.type === 'pull') {
          onProgress(new CustomProgressEvent('car-mirror:status:sent', { wants: message.wants.length, bloomBytes: message.bloom?.bytes.byteLength ?? 0 }))
        }
      },
      onReceived: (message) => {
        countStatus(message)
        if (message.type === 'status') {
          onProgress?.(new CustomProgressEvent('car-mirror:status:received', { wants: message.wants.length, bloomBytes: message.bloom?.bytes.byteLength ?? 0 }))
        }
      },
      onReceiverStep: (step: ReceiverStep) => {
        if (step.block != null) {
          onProgress?.(new CustomProgressEvent('car-mirror:block:received', step.block))
        }
      }
    }
  }

  private collect (stats: TransferStats, framed: FramedStream, sender?: SenderSession, receiver?: ReceiverSession): void {
    stats.bytesSent = framed.bytesWritten
    stats.bytesReceived = framed.bytesRead
    if (sender != null) {
      stats.blocksSent = sender.counters.blocksSent
      stats.blockBytesSent = sender.counters.blockBytesSent
      stats.duplicateBlocks = sender.counters.duplicatesReported
      stats.roundTrips = sender.counters.passes + sender.counters.syncs
    }
    if (receiver != null) {
      stats.blocksReceived = receiver.counters.blocksReceived
      stats.blockBytesReceived = receiver.counters.blockBytesReceived
      stats.duplicateBlocks = receiver.counters.duplicateBlocks
      stats.roundTrips = 1 + receiver.counters.stragglerRounds
    }
  }

  private senderInit (roots: CID[]): ConstructorParameters<typeof SenderSession>[0] {
    return {
      blockstore: this.components.blockstore,
      roots,
      linkReader: this.linkReader,
      readAhead: this.init.readAhead ?? DEFAULT_READ_AHEAD,
      maxBlockSize: this.init.maxBlockSize
    }
  }

  private receiverInit (roots: CID[], hints: CID[] = []): Parameters<typeof ReceiverSession.create>[0] {
    return {
      blockstore: this.components.blockstore,
      roots,
      hints,
      linkReader: this.linkReader,
      verifier: this.verifier,
      smallStoreBlocks: this.init.smallStoreBlocks,
      maxCidsPerMessage: this.init.maxCidsPerMessage,
      maxUnrequestedBlocks: this.init.maxUnrequestedBlocks,
      maxStragglerRounds: this.init.maxStragglerRounds
    }
  }
}
