import { DialError, InvalidParametersError } from '@libp2p/interface'
import { logger as defaultLogger } from '@libp2p/logger'
import { peerIdFromCID } from '@libp2p/peer-id'
import { isMultiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { CustomProgressEvent } from 'progress-events'
import { CarMirrorBlockBroker } from './broker.ts'
import { datastoreRecordStorage } from './complete-storage.ts'
import { CONTROL_RECEIVE_WINDOW, BLOCKS_RECEIVE_WINDOW, DEFAULT_COLD_CALL_BYTES, DEFAULT_MAX_PUSH_BYTES, DEFAULT_POOL_MAX_PROVIDERS, DEFAULT_POOL_STALL_TIMEOUT, RESUME_MEMORY_MS, DEFAULT_MAX_ROUTED_PROVIDERS, MAX_SENT_BLOOM_BYTES, PUSH_PROTOCOL_SUFFIX, STORE_BLOOM_MAX_AGE_MS } from './constants.ts'
import { Budget, BudgetShare } from './core/budget.ts'
import { CompleteRecord } from './core/complete-record.ts'
import { LinkReader } from './core/links.ts'
import { bloomOfInSlices, checkFirstMessageSize } from './core/messages.ts'
import { PoolReceiver } from './core/pool/pool-receiver.ts'
import { ReceiverSession } from './core/receiver.ts'
import { RecentRoots } from './core/recent-roots.ts'
import { SenderSession } from './core/sender.ts'
import { StoreBloom, storeBloomBytesFor } from './core/store-bloom.ts'
import { BlockVerifier } from './core/verify.ts'
import { walkHeldCids } from './core/walk.ts'
import { LimitExceededError, NoProviderError, PinningUnavailableError, ProtocolError, SessionRefusedError, SessionTimeoutError } from './errors.ts'
import { localReads } from './local-store.ts'
import { resolveCarMirrorInit } from './options.ts'
import { FramedStream, untilEvent } from './transport/framed-stream.ts'
import { failSession, runReceiver, runSender } from './transport/run-session.ts'
import type { BloomFilter } from './core/bloom/bloom-filter.ts'
import type { Message, MessageLimits, PullMessage } from './core/messages.ts'
import type { PoolMember } from './core/pool/pool-receiver.ts'
import type { ReceiverStep } from './core/receiver.ts'
import type { BudgetName, CarMirror, CarMirrorComponents, CarMirrorInit, CarMirrorStats, FindProvidersOptions, PeerTarget, PullOptions, ServedSession, TransferOptions, TransferStats } from './index.ts'
import type { ResolvedCarMirrorInit } from './options.ts'
import type { RunOptions } from './transport/run-session.ts'
import type { AbortOptions } from '@libp2p/interface'
import type { Connection, Logger, PeerId, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Blockstore } from 'interface-blockstore'

/** What the block broker adds to a pull: it follows the receiver, and takes each block as it is stored */
export interface BrokerPullOptions extends PullOptions, FindProvidersOptions {
  /** Called with each receiver the pull creates (one per provider tried) */
  onReceiver?(receiver: ReceiverSession): void
  /** Called with each verified block as its write begins */
  onBlockStored?(cid: CID, bytes: Uint8Array): void
}

/** One inbound session, as the node-wide bookkeeping sees it */
interface InboundSession {
  controller: AbortController
  peer: string
  address: string
  /** When the session last moved forward, or opened (ms since the epoch) */
  lastProgress: number
  /** Whether it ever moved forward */
  progressed: boolean
  /** What it holds of each node-wide budget */
  budgets: SessionBudgets
  /** True while it waits for its peer (which does not read, or sends nothing), not for its own store or CPU */
  waitsForPeer(): boolean
}

type SessionBudgets = Record<Exclude<BudgetName, 'sessions'>, Budget>

/** A session that never made progress may be evicted this long after it opened (ms) */
const NEVER_PROGRESSED_GRACE_MS = 100

/** How long a session refused for want of slots waits for its answer (ms) */
const REFUSAL_DELAY_MS = 1000

/** A peer holding this many slots of a full group loses its stalest session to a newcomer holding fewer, stalled or not */
const LARGE_HOLDING = 16

/** How often a used-up budget may evict a stalled session (ms) */
const RELIEVE_INTERVAL_MS = 50

/** Inbound sessions that begin in one turn of the event loop; the others wait for the next */
const STARTS_PER_TURN = 2

/** A session may make room for one of a peer holding as many slots only after evictAfter times this */
const PEER_EVICTION_FACTOR = 10

/** Failures of a push that lie with the local node: another peer would fail the same way */
const LOCAL_FAILURES = new Set(['BlockNotFoundError', 'BlocksNotAvailableError', 'BlockstoreError'])

/** What a client remembers of a push that broke off after the server accepted it */
const RESUMABLE_FAILURES = new Set(['SessionClosedError', 'SessionTimeoutError', 'StreamResetError', 'AbortError'])

/**
 * The CAR Mirror service behind `createCarMirror`, `withCarMirror` and the
 * `carMirror` mixin: serves pulls (and allowed pushes) on the libp2p
 * protocol, and runs pulls and pushes as a client. Everything peers can
 * make it hold is charged to node-wide budgets.
 */
export class DefaultCarMirror implements CarMirror {
  readonly protocol: string
  /** The id of streams opened for a push: the protocol id with `/push` appended */
  readonly pushProtocol: string
  private readonly components: CarMirrorComponents
  private readonly init: ResolvedCarMirrorInit
  private readonly log: Logger
  /** Numbers the sessions in log namespaces: helia:car-mirror:session-N */
  private sessionCount = 0
  private readonly linkReader: LinkReader
  private readonly verifier: BlockVerifier
  private readonly limits: MessageLimits
  private readonly budgets: Record<Exclude<BudgetName, 'sessions'>, Budget>
  private readonly maxSessions: number
  private readonly outbound = new Set<AbortController>()
  private readonly inbound = new Set<InboundSession>()
  /** The most inbound sessions served at once since the node started */
  private peakSessions = 0
  /** Pushes that broke off after the server accepted them, by peer and roots, until when they are remembered */
  private readonly interruptedPushes = new Map<string, number>()
  private stallTimer?: ReturnType<typeof setInterval>
  private started = false
  /** Sessions running now, inbound and outbound: stop() waits for them */
  private readonly running = new Set<Promise<unknown>>()
  /** Inbound sessions begun in this turn of the event loop, and the turn the others wait for */
  private startsThisTurn = 0
  /** When each budget last looked for a session to evict (ms since the epoch) */
  private readonly relieved = new Map<string, number>()
  private nextTurn?: Promise<void>
  /** Helia's `car-mirror` block broker, served by this node's pulls */
  readonly broker: CarMirrorBlockBroker
  /** A Bloom of the whole store, when it is small: the request of pulls and the greeting of pushes without hints */
  private readonly storeBloom: StoreBloom
  /** Largest store Bloom a pull's request carries: that of a store of smallStoreBlocks blocks */
  private readonly requestBloomBytes: number
  /** Roots of the DAGs each peer last pushed here or pulled from here: implicit hints for its next push */
  private readonly recentRoots = new RecentRoots()
  /** The blockstore sessions read and write: reads skip Helia's wrappers (see `localReads`) */
  private readonly store: Blockstore
  /** DAGs this node holds whole, kept in its datastore: hinted ones need no walk */
  private readonly completeRecord: CompleteRecord

  constructor (components: CarMirrorComponents, init: CarMirrorInit = {}) {
    this.components = components
    this.init = resolveCarMirrorInit(init)
    this.protocol = this.init.protocol
    this.pushProtocol = `${this.protocol}${PUSH_PROTOCOL_SUFFIX}`
    this.log = components.logger?.forComponent('helia:car-mirror') ?? defaultLogger('helia:car-mirror')
    this.linkReader = new LinkReader({ codecs: init.codecs, loadCodec: init.loadCodec ?? components.getCodec })
    this.verifier = new BlockVerifier({ hashers: init.hashers, loadHasher: init.loadHasher ?? components.getHasher })
    this.limits = {
      maxBlockSize: this.init.maxBlockSize,
      maxBloomBytes: this.init.maxBloomBytes,
      maxBloomHashCount: this.init.maxBloomHashCount,
      maxCidsPerMessage: this.init.maxCidsPerMessage
    }
    const budgets = this.init.budgets
    this.maxSessions = this.init.maxSessions
    this.budgets = {
      bufferedBytes: new Budget('bufferedBytes', budgets.bufferedBytes),
      bloomBytes: new Budget('bloomBytes', budgets.bloomBytes),
      queuedWants: new Budget('queuedWants', budgets.queuedWants),
      readAheadBytes: new Budget('readAheadBytes', budgets.readAheadBytes),
      pendingWants: new Budget('pendingWants', budgets.pendingWants),
      indexedCids: new Budget('indexedCids', budgets.indexedCids),
      heldCids: new Budget('heldCids', budgets.heldCids),
      localWalks: new Budget('localWalks', budgets.localWalks),
      largeFrames: new Budget('largeFrames', budgets.largeFrames),
      windowBytes: new Budget('windowBytes', budgets.windowBytes)
    }
    this.store = localReads(components.blockstore)
    this.requestBloomBytes = Math.min(MAX_SENT_BLOOM_BYTES, storeBloomBytesFor(this.init.smallStoreBlocks))
    this.storeBloom = new StoreBloom({
      blockstore: this.store,
      // one listing for both uses: a pull's request and a push server's greeting
      maxBytes: Math.max(this.init.storeBloomBytes, this.requestBloomBytes),
      maxAgeMs: STORE_BLOOM_MAX_AGE_MS,
      walkBudget: this.budgets.localWalks
    })
    this.completeRecord = new CompleteRecord({
      storage: components.datastore == null ? undefined : datastoreRecordStorage(components.datastore),
      maxRoots: this.init.maxCompleteRoots,
      maxCids: this.init.maxHintBlocks,
      // the next version's transfer hints this one: its Bloom is ready by then
      eagerBloomBytes: MAX_SENT_BLOOM_BYTES
    })
    this.broker = new CarMirrorBlockBroker(this, components.blockstore, { log: this.log, maxRoots: this.init.maxRoots })
    // a session waiting for memory that stalled sessions hold gets it by evicting them
    for (const budget of [this.budgets.bufferedBytes, this.budgets.bloomBytes, this.budgets.queuedWants, this.budgets.readAheadBytes, this.budgets.pendingWants, this.budgets.heldCids]) {
      budget.onShort = (short) => { this.relieve(short) }
    }
  }

  get activeSessions (): { inbound: number, outbound: number } {
    return { inbound: this.inbound.size, outbound: this.outbound.size }
  }

  stats (): CarMirrorStats {
    const budgets = { sessions: { used: this.inbound.size, peak: this.peakSessions, limit: this.maxSessions } } as CarMirrorStats['budgets']
    for (const [name, budget] of Object.entries(this.budgets) as Array<[Exclude<BudgetName, 'sessions'>, Budget]>) {
      budgets[name] = { used: budget.used, peak: budget.peak, limit: budget.limit }
    }
    return { sessions: this.activeSessions, budgets, broker: { ...this.broker.stats } }
  }

  async start (): Promise<void> {
    if (this.started) {
      return
    }
    const options = {
      maxInboundStreams: this.init.maxInboundStreams,
      maxOutboundStreams: this.init.maxOutboundStreams,
      runOnLimitedConnection: this.init.runOnLimitedConnection
    }
    await this.components.libp2p.handle(this.protocol, async (stream, connection) => {
      await this.track(this.turnToStart().then(async () => { await this.serve(stream, connection, false) }))
    }, options)
    await this.components.libp2p.handle(this.pushProtocol, async (stream, connection) => {
      await this.track(this.turnToStart().then(async () => { await this.serve(stream, connection, true) }))
    }, options)
    // with a metrics component, the budgets' use is scraped like libp2p's own metrics
    this.components.libp2p.metrics?.registerMetricGroup('helia_car_mirror_budgets', {
      label: 'budget',
      help: 'Use of the CAR Mirror node-wide budgets',
      calculate: () => Object.fromEntries(Object.entries(this.stats().budgets).map(([name, { used }]) => [name, used]))
    })
    this.components.libp2p.metrics?.registerMetricGroup('helia_car_mirror_sessions', {
      label: 'direction',
      help: 'CAR Mirror sessions running now',
      calculate: () => ({ ...this.activeSessions })
    })
    // the first pull (or push without hints served) finds the store's Bloom ready
    this.storeBloom.warm()
    const stallTimeout = this.init.stallTimeout
    this.stallTimer = setInterval(() => { this.endStalledSessions(stallTimeout) }, Math.max(100, Math.min(stallTimeout / 4, 5000)))
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) {
      return
    }
    this.started = false
    clearInterval(this.stallTimer)
    for (const controller of this.outbound) {
      controller.abort(new Error('CAR Mirror is stopping'))
    }
    for (const session of this.inbound) {
      session.controller.abort(new Error('CAR Mirror is stopping'))
    }
    try {
      await this.components.libp2p.unhandle([this.protocol, this.pushProtocol])
    } catch {
      // libp2p may have stopped first
    }
    // aborted sessions end quickly (no error frame for an abort): wait for them
    await Promise.allSettled([...this.running])
  }

  isStarted (): boolean {
    return this.started
  }

  /** Runs `work` as a session that stop() waits for */
  /** A finished receiver's wait for the sender to close: stop() waits for it, so the done frame gets out */
  private readonly closing = (closed: Promise<void>): void => {
    void this.track(closed)
  }

  private async track<T> (work: Promise<T>): Promise<T> {
    this.running.add(work)
    try {
      return await work
    } finally {
      this.running.delete(work)
    }
  }

  async pull (peer: PeerTarget, roots: CID | CID[], options?: PullOptions): Promise<TransferStats>
  async pull (roots: CID | CID[], options?: PullOptions & FindProvidersOptions): Promise<TransferStats>
  async pull (...args: [PeerTarget, CID | CID[], PullOptions?] | [CID | CID[], BrokerPullOptions?]): Promise<TransferStats> {
    const { peer, rootList, options } = transferArgs<BrokerPullOptions>(args)
    if (options.pin === true && options.shallow === true) {
      throw new InvalidParametersError('pull(..., { shallow: true }) fetches the roots\' blocks only: it cannot pin their DAGs')
    }
    if (options.pin === true && this.components.pins == null) {
      throw new PinningUnavailableError('pull(..., { pin: true }) needs Helia\'s pins: use withCarMirror() or the carMirror() mixin, or pass `pins` to createCarMirror')
    }
    return this.session('pull', options, async (signal, stats) => {
      await this.mirrorInto(peer, rootList, options, signal, stats)
      if (options.pin === true) {
        await this.pin(rootList, signal)
      }
    }, rootList)
  }

  /** Pins each root not pinned yet; every block is held, so Helia's walk reads the local store only */
  private async pin (roots: CID[], signal: AbortSignal): Promise<void> {
    const pins = this.components.pins
    if (pins == null) {
      return
    }
    for (const root of roots) {
      if (await pins.isPinned(root, { signal })) {
        continue
      }
      for await (const cid of pins.add(root, { signal })) {
        this.log.trace('pinned %c under %c', cid, root)
      }
    }
  }

  /**
   * Pulls the DAG under the roots into the local store (nothing when it is
   * held already): from `peer`, or from the first provider that serves it
   */
  private async mirrorInto (peer: PeerTarget | undefined, rootList: CID[], options: BrokerPullOptions, signal: AbortSignal, stats: TransferStats): Promise<void> {
    const errors: Error[] = []
    const pool = peer == null ? await this.poolFirst(rootList, options, signal, stats, errors) : undefined
    if (pool?.complete === true) {
      return
    }
    const targets = peer == null ? this.providersOf(rootList[0], options, signal, pool?.tried) : undefined
    while (true) {
      // a fresh receiver each time: its Bloom covers what an earlier provider sent
      const receiver = await ReceiverSession.create({
        ...this.receiverInit(rootList, options.hints),
        shallow: options.shallow,
        // a small store goes into the request's Bloom whole: the node keeps its Bloom, so no pull lists the store
        storeBloom: options.shallow === true ? undefined : await this.smallStoreBloom(this.requestBloomBytes, signal),
        onBlockStored: (cid, bytes) => {
          this.storeBloom.add(cid)
          options.onBlockStored?.(cid, bytes)
        }
      }, { signal })
      options.onReceiver?.(receiver)
      try {
        if (receiver.complete) {
          this.log('pull of %c: complete locally', rootList[0])
          return
        }
        const next = peer ?? (await targets?.next())?.value
        if (next == null) {
          throw noProvider(`a pull of ${rootList[0]}`, errors)
        }
        try {
          this.log('pull of %c from %s', rootList[0], targetKey(next))
          await this.pullFrom(next, receiver, options, signal, stats)
          return
        } catch (err) {
          if (peer != null || signal.aborted) {
            throw err
          }
          this.log('provider of %c failed, trying the next - %e', rootList[0], err)
          errors.push(err as Error)
        }
      } finally {
        receiver.close()
      }
    }
  }

  /**
   * Pulls the DAG from several providers at once (CAR Pool): one session
   * per provider over one frontier, each sending a shard of the leaves
   */
  private async poolInto (providers: Map<string, PeerTarget>, rootList: CID[], options: BrokerPullOptions, signal: AbortSignal, stats: TransferStats): Promise<void> {
    const poolOptions = options.pool === false ? {} : options.pool ?? {}
    const pool = await PoolReceiver.create({
      ...this.receiverInit(rootList, options.hints),
      providers: [...providers.keys()],
      buckets: poolOptions.buckets,
      onBlockStored: (cid, bytes) => {
        this.storeBloom.add(cid)
        options.onBlockStored?.(cid, bytes)
      }
    }, { signal })
    // the members share one frontier: the broker sees the pool's wants through any of them
    options.onReceiver?.(pool.member(pool.providers()[0].provider))
    try {
      if (pool.complete) {
        this.log('pull of %c: complete locally', rootList[0])
        return
      }
      this.log('pull of %c from %d providers at once', rootList[0], providers.size)
      await Promise.all([...providers].map(async ([key, target]) => {
        try {
          await this.pullAsMember(target, pool.member(key), poolOptions.stallTimeout ?? DEFAULT_POOL_STALL_TIMEOUT, options, signal, stats)
        } catch (err) {
          pool.fail(key, err as Error)
        }
      }))
      await pool.frontier.settle()
      signal.throwIfAborted()
      if (!pool.complete) {
        const failures = pool.providers().map(p => p.error).filter(err => err != null)
        throw new NoProviderError(`None of the ${providers.size} providers could complete a pull of ${rootList[0]}`, failures)
      }
    } finally {
      pool.close()
      stats.providers = pool.providers().map(({ provider, buckets, error }) => {
        const { blocksReceived, blockBytesReceived, duplicateBlocks } = pool.member(provider).counters
        return {
          peer: provider,
          blocksReceived,
          blockBytesReceived,
          duplicateBlocks,
          buckets,
          ...(error != null ? { error } : {})
        }
      })
    }
  }

  /**
   * One provider's session of a pool: dropped (rejected) when it fails, or
   * when it sends nothing for `stallTimeout` ms while it has blocks to send
   */
  private async pullAsMember (target: PeerTarget, member: PoolMember, stallTimeout: number, options: TransferOptions, signal: AbortSignal, stats: TransferStats): Promise<void> {
    const stall = new AbortController()
    let heard = Date.now()
    const watch = setInterval(() => {
      if (member.waiting) {
        // it has nothing to send: silence is expected
        heard = Date.now()
      } else if (Date.now() - heard > stallTimeout) {
        stall.abort(new SessionTimeoutError(`The provider sent nothing for ${stallTimeout} ms while it had blocks to send`))
      }
    }, Math.max(10, Math.min(1000, stallTimeout / 4)))
    try {
      await this.pullFrom(target, member, options, AbortSignal.any([signal, stall.signal]), stats, () => { heard = Date.now() })
    } catch (err) {
      throw stall.signal.aborted && !signal.aborted ? stall.signal.reason as Error : err
    } finally {
      clearInterval(watch)
    }
  }

  /** One pull session with `peer`; `onHeard` is called for every message the peer sends (a pool's stall watch) */
  private async pullFrom (peer: PeerTarget, receiver: ReceiverSession, options: TransferOptions, signal: AbortSignal, stats: TransferStats, onHeard?: () => void): Promise<void> {
    const log = this.sessionLog()
    // the stream's protocol negotiation takes a round trip: the request's Bloom is built meanwhile
    const opening = this.open(peer, signal, options.onProgress, log)
    // a failed open is thrown below, once the request is built
    opening.catch(() => {})
    let request
    try {
      request = await receiver.pullRequest({ signal })
    } catch (err) {
      opening.then(({ framed }) => { framed.abort(err as Error) }, () => {})
      throw err
    }
    const { framed, remotePeer } = await opening
    // the blocks asked for may go out at once, not 256 KiB in the first round trip
    framed.openReceiveWindow(BLOCKS_RECEIVE_WINDOW, this.budgets.windowBytes)
    framed.paceReceiveWindow()
    log('pull of %c (%d root(s)) from %p: %d want(s), a Bloom of %d bytes%s', receiver.roots[0], receiver.roots.length, remotePeer, request.wants.length, request.bloom?.bytes.byteLength ?? 0, request.shard == null ? '' : `, ${request.shard.buckets().length} of ${request.shard.count} buckets`)
    const progress = this.progress(options, stats, remotePeer)
    try {
      await runReceiver(framed, receiver, {
        signal,
        first: [request],
        maxCidsPerMessage: this.init.maxCidsPerMessage,
        log,
        onClosing: this.closing,
        ...progress,
        onReceived: (message) => {
          onHeard?.()
          progress.onReceived?.(message)
        }
      })
      // the next version pushed back to this peer is likely built on what came from it
      if (receiver.complete && (options as PullOptions).shallow !== true) {
        this.recentRoots.remember(remotePeer.toString(), receiver.roots)
        // queued before the pull resolves, so the next transfer that hints these roots finds them
        void this.recordWhole(receiver)
      }
      logReceiverEnd(log, receiver)
    } catch (err) {
      log('failed after %d block(s) - %e', receiver.counters.blocksReceived, err)
      throw err
    } finally {
      this.collect(stats, framed, undefined, receiver)
    }
  }

  /**
   * Pulls from several providers at once when there are several to pool
   * (see `poolCandidates`). When all of them fail, their errors join
   * `errors` and the pull goes on without them (`tried`).
   */
  private async poolFirst (rootList: CID[], options: BrokerPullOptions, signal: AbortSignal, stats: TransferStats, errors: Error[]): Promise<{ complete: boolean, tried?: Set<string> }> {
    // a shallow pull asks each provider for the same few blocks: nothing to share
    const pooled = options.pool !== false && options.shallow !== true ? await this.poolCandidates(options) : new Map<string, PeerTarget>()
    if (pooled.size < 2) {
      return { complete: false }
    }
    try {
      await this.poolInto(pooled, rootList, options, signal, stats)
      return { complete: true }
    } catch (err) {
      if (signal.aborted || !(err instanceof NoProviderError)) {
        throw err
      }
      // none of them could: what routing finds is tried next, one after the other
      this.log('no provider of the pool could complete %c, asking routing - %e', rootList[0], err)
      errors.push(...err.errors)
      return { complete: false, tried: new Set(pooled.keys()) }
    }
  }

  /**
   * The providers a pull of a whole DAG pools: the `providers` given, then
   * connected peers that speak CAR Mirror until there are
   * `pool.maxProviders` in all. The first is the pool's leader (it walks
   * the DAG), as it would be the first tried one after the other.
   */
  private async poolCandidates (options: FindProvidersOptions): Promise<Map<string, PeerTarget>> {
    const pooled = distinctTargets(options.providers ?? [])
    const most = (options.pool === false ? undefined : options.pool?.maxProviders) ?? DEFAULT_POOL_MAX_PROVIDERS
    if (!Number.isInteger(most) || most < 1) {
      throw new RangeError(`pool.maxProviders must be a positive integer, got ${most}`)
    }
    if (pooled.size >= most) {
      return pooled
    }
    for (const id of (await this.connectedPeers()).speaking) {
      if (!pooled.has(id.toString())) {
        pooled.set(id.toString(), id)
        if (pooled.size >= most) {
          break
        }
      }
    }
    return pooled
  }

  /**
   * The connected peers whose identified protocols include CAR Mirror, and
   * those connected so recently that identify has not said what they speak
   */
  private async connectedPeers (): Promise<{ speaking: PeerId[], unidentified: PeerId[] }> {
    const { getConnections, peerStore } = this.components.libp2p
    const speaking: PeerId[] = []
    const unidentified: PeerId[] = []
    const seen = new Set<string>()
    for (const connection of getConnections?.call(this.components.libp2p) ?? []) {
      const id = connection.remotePeer
      if (seen.has(id.toString())) {
        continue
      }
      seen.add(id.toString())
      const known = await peerStore?.get(id).catch(() => undefined)
      if (known?.protocols.includes(this.protocol) === true) {
        speaking.push(id)
      } else if (peerStore != null && (known == null || known.protocols.length === 0)) {
        unidentified.push(id)
      }
    }
    return { speaking, unidentified }
  }

  /**
   * Peers to pull `root` from, each once and none of `skip`: the
   * `providers` given, connected peers whose identified protocols include
   * CAR Mirror, then at most a few providers that routing finds (asked only
   * when the others are used up)
   */
  private async * providersOf (root: CID, options: FindProvidersOptions, signal: AbortSignal, skip: ReadonlySet<string> = new Set()): AsyncGenerator<PeerTarget, void, undefined> {
    const seen = new Set<string>(skip)
    const fresh = (key: string): boolean => !seen.has(key) && seen.add(key) != null
    for (const provider of options.providers ?? []) {
      if (fresh(targetKey(provider))) {
        yield provider
      }
    }
    // peers connected so recently that identify has not said what they speak
    // are tried after those known to speak CAR Mirror (one that does not
    // fails at protocol selection, and the next is tried)
    const { speaking, unidentified } = await this.connectedPeers()
    for (const id of [...speaking, ...unidentified]) {
      if (fresh(id.toString())) {
        yield id
      }
    }
    const findProviders = this.components.routing?.findProviders
    if (findProviders == null) {
      return
    }
    let tried = 0
    const most = options.maxRoutedProviders ?? DEFAULT_MAX_ROUTED_PROVIDERS
    try {
      for await (const provider of findProviders.call(this.components.routing, root, { signal })) {
        const id = peerIdFromCID(provider.id)
        if (fresh(id.toString())) {
          yield provider.multiaddrs.length > 0 ? provider.multiaddrs : id
          if (++tried >= most) {
            return
          }
        }
      }
    } catch (err) {
      if (signal.aborted) {
        throw err
      }
      this.log('routing found no (more) providers of %c - %e', root, err)
    }
  }

  async push (peer: PeerTarget, roots: CID | CID[], options?: TransferOptions): Promise<TransferStats>
  async push (roots: CID | CID[], options?: TransferOptions & FindProvidersOptions): Promise<TransferStats>
  async push (...args: [PeerTarget, CID | CID[], TransferOptions?] | [CID | CID[], (TransferOptions & FindProvidersOptions)?]): Promise<TransferStats> {
    const { peer, rootList, options } = transferArgs<TransferOptions & FindProvidersOptions>(args)
    return this.session('push', options, async (signal, stats) => {
      // the hint walk overlaps with opening the stream (a round trip of protocol negotiation)
      const bloom = this.hintBloom(options.hints ?? [], signal)
      bloom.catch(() => {})
      if (peer != null) {
        await this.pushTo(peer, rootList, bloom, options, signal, stats)
        return
      }
      // peers that hold the previous version (the first hint) are the likely servers of this one
      const errors: Error[] = []
      for await (const target of this.providersOf(options.hints?.[0] ?? rootList[0], options, signal)) {
        try {
          this.log('push of %c to %s', rootList[0], targetKey(target))
          await this.pushTo(target, rootList, bloom, options, signal, stats)
          return
        } catch (err) {
          if (signal.aborted || LOCAL_FAILURES.has((err as Error).name)) {
            throw err
          }
          this.log('push of %c to a provider failed, trying the next - %e', rootList[0], err)
          errors.push(err as Error)
        }
      }
      throw noProvider(`a push of ${rootList[0]}`, errors)
    }, rootList)
  }

  /** Pushes the DAG under `rootList` to one peer */
  private async pushTo (peer: PeerTarget, rootList: CID[], hintedBloom: Promise<BloomFilter | undefined>, options: TransferOptions, signal: AbortSignal, stats: TransferStats): Promise<void> {
    const log = this.sessionLog()
    // the push protocol id first: a server that knows it opens its window for
    // the blocks at once; one that does not answers na and the base id follows
    const { framed, remotePeer } = await this.open(peer, signal, options.onProgress, log, [this.pushProtocol, this.protocol])
    // the server sends statuses only
    framed.limitReceiveWindow(CONTROL_RECEIVE_WINDOW)
    // no hints given: the roots last exchanged with this peer are likely the previous version, which both hold
    const hints = (options.hints ?? []).length > 0 ? options.hints ?? [] : this.recentRoots.of(remotePeer.toString())
    let bloom
    try {
      bloom = hints === options.hints ? await hintedBloom : await this.hintBloom(hints, signal)
    } catch (err) {
      framed.abort(err as Error)
      throw err
    }
    // a push that broke off after the server accepted it resumes: nothing
    // goes out before the server's first status says what it holds
    const resumeKey = `${remotePeer}/${rootList.join(',')}`
    const resuming = (this.interruptedPushes.get(resumeKey) ?? 0) > Date.now()
    const sender = new SenderSession({
      ...this.senderInit(rootList),
      bloom,
      awaitFirstStatus: resuming,
      coldCallBytes: this.init.coldCallBytes ?? (hints.length > 0 ? DEFAULT_COLD_CALL_BYTES : 0)
    })
    log('push of %c (%d root(s)) to %p: %d hint(s)%s', rootList[0], rootList.length, remotePeer, hints.length, resuming ? ', resuming' : '')
    try {
      await runSender(framed, sender, { signal, first: [{ type: 'push', roots: rootList, hints }], maxCidsPerMessage: this.init.maxCidsPerMessage, log, ...this.progress(options, stats, remotePeer) })
      logSenderEnd(log, sender)
      this.interruptedPushes.delete(resumeKey)
      this.recentRoots.remember(remotePeer.toString(), rootList)
    } catch (err) {
      log('failed after %d block(s) - %e', sender.counters.blocksSent, err)
      this.forgetOldInterruptions()
      if (sender.counters.statusesReceived > 0 && RESUMABLE_FAILURES.has((err as Error).name)) {
        this.interruptedPushes.set(resumeKey, Date.now() + RESUME_MEMORY_MS)
      } else {
        this.interruptedPushes.delete(resumeKey)
      }
      throw err
    } finally {
      sender.close()
      this.collect(stats, framed, sender, undefined)
    }
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
    if (hints.length === 1) {
      // a DAG recorded whole has its Bloom built once for every push that hints it
      const shared = await this.completeRecord.bloomUnder(hints[0], MAX_SENT_BLOOM_BYTES, { signal })
      if (shared != null) {
        return shared
      }
    }
    const held: CID[] = []
    const unrecorded: CID[] = []
    for (const hint of hints) {
      // a DAG recorded whole lists its blocks: no walk
      const recorded = await this.completeRecord.cidsUnder(hint, { signal })
      if (recorded == null) {
        unrecorded.push(hint)
        continue
      }
      // one at a time: a spread of 100,000 arguments could overflow the stack
      for (const cid of recorded) {
        held.push(cid)
      }
    }
    for await (const cid of walkHeldCids(this.store, unrecorded, { signal, offline: true, linkReader: this.linkReader, onMissing: () => {} })) {
      held.push(cid)
    }
    return held.length === 0 ? undefined : bloomOfInSlices(held, MAX_SENT_BLOOM_BYTES, { signal })
  }

  /** Ends inbound sessions that made no progress for `stallTimeout` ms, whatever frames their peers send */
  private endStalledSessions (stallTimeout: number): void {
    const now = Date.now()
    for (const session of this.inbound) {
      if (now - session.lastProgress > stallTimeout) {
        session.controller.abort(new SessionTimeoutError(`No progress for ${now - session.lastProgress} ms`))
      }
    }
  }

  /**
   * Makes room for a new session from `peer` at `address`: when the node,
   * the address or the peer has no slot left, a session of that group that
   * made no progress for a while is evicted. The victim is taken from the
   * peer holding the most slots of the group, and a newcomer may take the
   * slot of an equal or smaller holder only once that session has been
   * stalled for 10 × `evictAfter`: peers that hold many slots cannot push
   * out an honest one, nor churn each other's (or their own) sessions faster than
   * one per slot every 10 × `evictAfter`. Returns false when no slot
   * can be had.
   */
  private admit (peer: string, address: string): boolean {
    const groups: Array<{ limit: number, member(session: InboundSession): boolean }> = [
      { limit: this.init.maxSessionsPerPeer, member: session => session.peer === peer },
      { limit: this.init.maxSessionsPerAddress, member: session => session.address === address },
      { limit: this.maxSessions, member: () => true }
    ]
    const evictAfter = this.init.evictAfter
    const now = Date.now()
    for (const { limit, member } of groups) {
      const members = [...this.inbound].filter(member)
      if (members.length < limit) {
        continue
      }
      const victim = evictionVictim(members, peer, now, evictAfter)
      if (victim == null) {
        return false
      }
      this.log('evicting a session from %s without progress for %d ms', victim.peer, now - victim.lastProgress)
      victim.controller.abort(new LimitExceededError('Evicted: the node needed the slot and this session made no progress'))
      this.inbound.delete(victim)
    }
    return true
  }

  /**
   * Frees `budget` for a session that waits for it: evicts the session that
   * holds the most of it among those without progress for `evictAfter`
   * because of their peers (a sender whose peer does not read), never one
   * that is slow because the node is busy.
   */
  private relieve (budget: Budget): void {
    const evictAfter = this.init.evictAfter
    const now = Date.now()
    // every waiter asks again at each release: look at most once per interval
    if (now - (this.relieved.get(budget.name) ?? 0) < RELIEVE_INTERVAL_MS) {
      return
    }
    this.relieved.set(budget.name, now)
    const name = budget.name as keyof SessionBudgets
    const held = (session: InboundSession): number => {
      const share = session.budgets[name]
      return share instanceof BudgetShare ? share.held : 0
    }
    let victim: InboundSession | undefined
    for (const session of this.inbound) {
      if (now - session.lastProgress >= evictAfter && session.waitsForPeer() && held(session) > 0 && (victim == null || held(session) > held(victim))) {
        victim = session
      }
    }
    if (victim != null) {
      this.log('evicting a session from %s without progress for %d ms: it holds %d of the %s budget', victim.peer, now - victim.lastProgress, held(victim), budget.name)
      victim.controller.abort(new LimitExceededError(`Evicted: the node's ${budget.name} budget was needed and this session held the most of it without progress`))
      this.inbound.delete(victim)
    }
  }

  /**
   * Waits until a session may begin: at most STARTS_PER_TURN begin in one
   * turn of the event loop, so a burst of new streams (a peer opening
   * hundreds at once) is answered over many turns instead of blocking it.
   */
  private async turnToStart (): Promise<void> {
    while (this.startsThisTurn >= STARTS_PER_TURN) {
      this.nextTurn ??= new Promise(resolve => {
        setTimeout(() => {
          this.nextTurn = undefined
          this.startsThisTurn = 0
          resolve()
        }, 0)
      })
      await this.nextTurn
    }
    if (this.startsThisTurn++ === 0) {
      setTimeout(() => { this.startsThisTurn = 0 }, 0)
    }
  }

  /** Answers one inbound session; `forPush`: its stream was opened with the push protocol id */
  private async serve (stream: Stream, connection: Connection, forPush: boolean): Promise<void> {
    const peer = connection.remotePeer
    const session: InboundSession = {
      controller: new AbortController(),
      peer: peer.toString(),
      address: addressOf(connection.remoteAddr, peer),
      lastProgress: Date.now(),
      progressed: false,
      budgets: this.shareBudgets(),
      waitsForPeer: () => framed.backedUp || sender == null || !sender.busy
    }
    const signal = session.controller.signal
    const touch = (): void => {
      session.lastProgress = Date.now()
      session.progressed = true
    }
    const log = this.sessionLog()
    // a pull's client sends control frames only: the window grows only once a push says blocks come this way
    const framed = this.frame(stream, session.budgets.bufferedBytes, log, CONTROL_RECEIVE_WINDOW)
    let sender: SenderSession | undefined
    let receiver: ReceiverSession | undefined
    const started = Date.now()
    const served: Pick<ServedSession, 'kind' | 'roots' | 'outcome' | 'error'> = { kind: 'unknown', roots: [], outcome: 'failed' }
    const admitted = this.admit(session.peer, session.address)
    if (admitted) {
      this.inbound.add(session)
      this.peakSessions = Math.max(this.peakSessions, this.inbound.size)
    }
    // an evicted or stalled session ends with its reason, as an error frame
    const onAbort = (): void => { framed.interrupt(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      if (!admitted) {
        log('refusing a session from %p: too many sessions', peer)
        // the answer comes after a pause: a peer re-opening refused sessions
        // in a loop is held to a few per second by its connection's stream limit
        if (stream.status === 'open') {
          await untilEvent(stream, ['close'], REFUSAL_DELAY_MS, signal)
        }
        served.outcome = 'refused'
        await this.refuse(framed, 'too many sessions')
        return
      }
      if (forPush && this.init.allowPush != null) {
        // blocks come this way from the first frame on: the window opens now, not a round trip later
        framed.restoreReceiveWindow()
        framed.openReceiveWindow(BLOCKS_RECEIVE_WINDOW, this.budgets.windowBytes)
        framed.paceReceiveWindow()
      }
      const first = await this.firstMessage(framed, signal)
      if (forPush && first.type !== 'push') {
        throw new ProtocolError(`A stream opened with ${this.pushProtocol} must begin with a push, not a ${first.type}`)
      }
      if (first.type === 'pull' || first.type === 'push') {
        served.kind = first.type
        served.roots = first.roots
      }
      if ((first.type === 'pull' || first.type === 'push') && first.roots.length === 0) {
        throw new ProtocolError(`A ${first.type} must name at least one root`)
      }
      if ((first.type === 'pull' || first.type === 'push') && first.roots.length > (this.init.maxRoots)) {
        throw new LimitExceededError(`A session may name at most ${this.init.maxRoots} roots`)
      }
      if (first.type === 'pull') {
        if (!await this.allowed(this.init.allowPull, peer, first.roots, true)) {
          served.outcome = 'refused'
          await this.refuse(framed, `pull of ${first.roots[0]} refused`)
          return
        }
        log('serving a pull of %c (%d root(s)) to %p: %d want(s), a Bloom of %d bytes', first.roots[0], first.roots.length, peer, first.wants.length, first.bloom?.bytes.byteLength ?? 0)
        await this.roomForRequest(session.budgets, first, signal)
        sender = new SenderSession({ ...this.senderInit(first.roots, session.budgets), request: first, onProgress: touch })
        await runSender(framed, sender, { signal, maxCidsPerMessage: this.init.maxCidsPerMessage, log })
        if (sender.done) {
          served.outcome = 'done'
          this.recentRoots.remember(session.peer, first.roots)
        }
      } else if (first.type === 'push') {
        if (!await this.allowed(this.init.allowPush, peer, first.roots, false)) {
          served.outcome = 'refused'
          await this.refuse(framed, 'pushes are not allowed from this peer')
          return
        }
        log('accepting a push of %c (%d root(s)) from %p: %d hint(s)', first.roots[0], first.roots.length, peer, first.hints.length)
        const maxStoredBytes = await this.pushQuota(peer, first.roots)
        // blocks come this way: let yamux's window grow again, and open it
        // now rather than a round trip after the first blocks
        framed.restoreReceiveWindow()
        framed.openReceiveWindow(BLOCKS_RECEIVE_WINDOW, this.budgets.windowBytes)
        framed.paceReceiveWindow()
        framed.keepAliveWhile(() => true)
        // a push without hints from a peer this node exchanged DAGs with: those roots are likely its previous versions
        const hints = first.hints.length > 0 ? first.hints : this.recentRoots.of(session.peer)
        receiver = await ReceiverSession.create({
          ...this.receiverInit(first.roots, hints, session.budgets),
          smallStoreBlocks: 0,
          maxStoredBytes,
          announceRoots: true,
          maxHintBlocks: this.init.maxHintBlocks,
          walkBudget: this.budgets.localWalks,
          // a client that names no hints learns what this small store holds; hints give an exact, smaller Bloom
          storeBloom: hints.length === 0 ? await this.smallStoreBloom(this.init.storeBloomBytes, signal) : undefined,
          onProgress: touch
        }, { signal })
        const greeting = await receiver.pushGreeting({ signal })
        await runReceiver(framed, receiver, { signal, first: [greeting], maxCidsPerMessage: this.init.maxCidsPerMessage, log, onClosing: this.closing })
        if (receiver.complete) {
          served.outcome = 'done'
          this.recentRoots.remember(session.peer, first.roots)
          // the client has its done frame: recording delays only this slot's release
          await this.recordWhole(receiver)
        }
      } else {
        throw new ProtocolError(`A session cannot start with a ${first.type} message`)
      }
    } catch (err) {
      // what a peer gets wrong is logged at debug level: it is not this node's error
      log('failed - %e', err)
      served.error = err as Error
      // errors before the session ran (a bad first frame, too many roots) still get an error frame
      await failSession(framed, err as Error)
    } finally {
      signal.removeEventListener('abort', onAbort)
      session.controller.abort()
      this.inbound.delete(session)
      sender?.close()
      receiver?.close()
      framed.releaseFrames()
      this.reportServed(log, {
        ...served,
        peer,
        blocksSent: sender?.counters.blocksSent ?? 0,
        blockBytesSent: sender?.counters.blockBytesSent ?? 0,
        blocksReceived: receiver?.counters.blocksReceived ?? 0,
        blockBytesReceived: receiver?.counters.blockBytesReceived ?? 0,
        recordedHintBlocks: receiver?.counters.recordedHintBlocks ?? 0,
        durationMs: Date.now() - started
      })
    }
  }

  private async pushQuota (peer: PeerId, roots: CID[]): Promise<number> {
    if (this.init.pushQuota == null) {
      return DEFAULT_MAX_PUSH_BYTES
    }
    return this.init.pushQuota(peer, roots)
  }

  /**
   * Waits until the node has room for a pull request's wants and Bloom (the
   * node evicts stalled sessions holding them meanwhile): the sender session
   * created right after takes them
   */
  private async roomForRequest (budgets: SessionBudgets, request: PullMessage, signal: AbortSignal): Promise<void> {
    const wants = request.wants.length > 0 ? request.wants.length : request.roots.length
    const bloomBytes = request.bloom?.bytes.byteLength ?? 0
    await budgets.queuedWants.acquire(wants, signal)
    await budgets.bloomBytes.acquire(bloomBytes, signal)
    budgets.queuedWants.release(wants)
    budgets.bloomBytes.release(bloomBytes)
  }

  private async firstMessage (framed: FramedStream, signal: AbortSignal): Promise<Message> {
    const messages = framed.messages({ signal })
    const first = await messages.next()
    // ends the reader: it gives back the large-frame slot a long first message took
    await messages.return(undefined)
    if (first.done === true) {
      throw new ProtocolError('The stream closed before the first message')
    }
    // apart from its Bloom, a first message is small: lists of roots, wants and hints
    checkFirstMessageSize(framed.lastFrameSize, first.value, this.limits)
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

  /** Hands an ended inbound session to the `onSession` hook */
  private reportServed (log: Logger, session: ServedSession): void {
    log('%s of %c by %p %s in %d ms: %d block(s) (%d bytes) sent, %d (%d bytes) received', session.kind, session.roots[0], session.peer, session.outcome, session.durationMs, session.blocksSent, session.blockBytesSent, session.blocksReceived, session.blockBytesReceived)
    try {
      this.init.onSession?.(session)
    } catch (err) {
      this.log.error('onSession hook failed - %e', err)
    }
  }

  /** Writes a refusal and ends the stream, so a refused peer holds nothing here */
  private async refuse (framed: FramedStream, reason: string): Promise<void> {
    await failSession(framed, new SessionRefusedError(reason), 'refused')
  }

  /** A logger of its own for each session, so the lines of concurrent sessions can be told apart */
  private sessionLog (): Logger {
    return this.log.newScope(`session-${++this.sessionCount}`)
  }

  private async open (peer: PeerTarget, signal: AbortSignal, onProgress: TransferOptions['onProgress'], log: Logger, protocols: string[] = [this.protocol]): Promise<{ framed: FramedStream, remotePeer: PeerId }> {
    // libp2p's dial progress events (connection:open, dial-queue:...) reach the caller's onProgress too
    const connection = await this.components.libp2p.dial(peer, { signal, onProgress }).catch((err: unknown) => {
      throw dialFailure(err)
    })
    // negotiateFully: false would send the protocol name with the first frame;
    // libp2p 3.3 ignores it and negotiates in a round trip of its own
    const stream = await connection.newStream(protocols, { signal, runOnLimitedConnection: this.init.runOnLimitedConnection, negotiateFully: false })
    return { framed: this.frame(stream, this.budgets.bufferedBytes, log), remotePeer: connection.remotePeer }
  }

  /** Frames a CAR Mirror stream with this node's limits, idle timeout and buffer budget */
  private frame (stream: Stream, bufferBudget: Budget, log: Logger, receiveWindow?: number): FramedStream {
    return new FramedStream(stream, { limits: this.limits, idleTimeout: this.init.idleTimeout, bufferBudget, largeFrames: this.budgets.largeFrames, log, receiveWindow })
  }

  private async session (kind: 'pull' | 'push', options: TransferOptions, run: (signal: AbortSignal, stats: TransferStats) => Promise<void>, roots: CID[]): Promise<TransferStats> {
    const controller = new AbortController()
    const signal = options.signal == null ? controller.signal : AbortSignal.any([options.signal, controller.signal])
    this.outbound.add(controller)
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
      recordedHintBlocks: 0,
      durationMs: 0
    }
    try {
      await this.track(run(signal, stats))
      stats.durationMs = Date.now() - started
      this.log('%s of %c done in %d ms: %d blocks (%d bytes) received, %d sent, %d round trips, %d Bloom bytes', kind, roots[0], stats.durationMs, stats.blocksReceived, stats.blockBytesReceived, stats.blocksSent, stats.roundTrips, stats.bloomBytes)
      return stats
    } catch (err) {
      this.log('%s of %c failed after %d ms - %e', kind, roots[0], Date.now() - started, err)
      throw err
    } finally {
      stats.durationMs = Date.now() - started
      this.outbound.delete(controller)
    }
  }

  private progress (options: TransferOptions, stats: TransferStats, peer: PeerId): Pick<RunOptions, 'onSent' | 'onReceived' | 'onReceiverStep'> {
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
          onProgress?.(new CustomProgressEvent('car-mirror:block:received', { ...step.block, peer }))
        }
      }
    }
  }

  /** Adds what one session on `framed` did to `stats` (a pull that moved on to another provider ran several) */
  private collect (stats: TransferStats, framed: FramedStream, sender?: SenderSession, receiver?: ReceiverSession): void {
    stats.bytesSent += framed.bytesWritten
    stats.bytesReceived += framed.bytesRead
    if (sender != null) {
      stats.blocksSent += sender.counters.blocksSent
      stats.blockBytesSent += sender.counters.blockBytesSent
      stats.duplicateBlocks += sender.counters.duplicatesReported
      stats.roundTrips += sender.counters.passes + sender.counters.syncs
    }
    if (receiver != null) {
      stats.blocksReceived += receiver.counters.blocksReceived
      stats.blockBytesReceived += receiver.counters.blockBytesReceived
      stats.duplicateBlocks += receiver.counters.duplicateBlocks
      stats.roundTrips += 1 + receiver.counters.stragglerRounds
      stats.recordedHintBlocks += receiver.counters.recordedHintBlocks
    }
  }

  /** A session's shares of the node-wide budgets (the slots for walks and large frames, and the opened windows, stay node-wide) */
  private shareBudgets (): SessionBudgets {
    const { localWalks, largeFrames, windowBytes, ...shared } = this.budgets
    const shares = Object.fromEntries(Object.entries(shared).map(([name, budget]) => [name, new BudgetShare(budget)]))
    return { ...shares, localWalks, largeFrames, windowBytes } as SessionBudgets
  }

  private senderInit (roots: CID[], budgets: SessionBudgets = this.budgets): ConstructorParameters<typeof SenderSession>[0] {
    return {
      blockstore: this.store,
      roots,
      linkReader: this.linkReader,
      readAhead: this.init.readAhead,
      maxBlockSize: this.init.maxBlockSize,
      maxCidsPerMessage: this.init.maxCidsPerMessage,
      maxCheckBlocks: this.init.maxCheckBlocks,
      budgets
    }
  }

  private receiverInit (roots: CID[], hints: CID[] = [], budgets: SessionBudgets = this.budgets): Parameters<typeof ReceiverSession.create>[0] {
    return {
      blockstore: this.store,
      roots,
      hints,
      linkReader: this.linkReader,
      verifier: this.verifier,
      smallStoreBlocks: this.init.smallStoreBlocks,
      maxCidsPerMessage: this.init.maxCidsPerMessage,
      maxUnrequestedBlocks: this.init.maxUnrequestedBlocks,
      maxStragglerRounds: this.init.maxStragglerRounds,
      maxWants: this.init.maxWants,
      wantBudget: budgets.pendingWants,
      heldBudget: budgets.heldCids,
      maxLinksPerBlock: this.init.maxLinksPerBlock,
      maxExploreBlocks: this.init.maxExploreBlocks,
      onBlockStored: (cid) => { this.storeBloom.add(cid) },
      completeRecord: this.completeRecord
    }
  }

  /** A block was written to the store other than by a session (the mixin reports writes through `helia.blockstore`) */
  noteStored (cid: CID): void {
    this.storeBloom.add(cid)
  }

  /** The store's Bloom when it is at most `maxBytes` long (0: never); undefined otherwise */
  private async smallStoreBloom (maxBytes: number, signal: AbortSignal): Promise<BloomFilter | undefined> {
    if (maxBytes <= 0) {
      return undefined
    }
    const bloom = await this.storeBloom.get(signal)
    return bloom != null && bloom.bytes.byteLength <= maxBytes ? bloom : undefined
  }

  /** Records a complete session's DAG as held whole (stop() waits for it); never throws */
  private async recordWhole (receiver: ReceiverSession): Promise<void> {
    await this.track(receiver.recordWhole().then(recorded => {
      if (recorded) {
        this.log('recorded %c as held whole', receiver.roots[0])
      }
    }, err => {
      this.log.error('recording %c as held whole failed - %e', receiver.roots[0], err)
    }))
  }

  async recordComplete (roots: CID | CID[], options: AbortOptions = {}): Promise<boolean> {
    const rootList = Array.isArray(roots) ? roots : [roots]
    const generation = this.completeRecord.generation
    let all = true
    for (const root of rootList) {
      const cids: CID[] = []
      let whole = true
      const walk = async (): Promise<void> => {
        try {
          for await (const cid of walkHeldCids(this.store, [root], { signal: options.signal, offline: true, linkReader: this.linkReader, onMissing: () => { whole = false }, maxBlocks: this.init.maxHintBlocks })) {
            cids.push(cid)
          }
        } catch (err) {
          if ((err as Error).name !== LimitExceededError.name) {
            throw err
          }
          whole = false
        }
      }
      await this.budgets.localWalks.run(walk, options.signal)
      all = whole && await this.completeRecord.record(root, cids, { generation, signal: options.signal }) && all
    }
    return all
  }

  async forgetComplete (): Promise<void> {
    await this.completeRecord.forget()
  }
}

/**
 * The session of a full group to evict for a newcomer from `peer`: one of the
 * peer holding the most slots of the group (its stalest). A bigger holder's
 * session may go once it shows no progress for a while, or at once when the
 * holder has LARGE_HOLDING slots or more (a newcomer's first transfers come
 * before a heavy user's sixteenth); an equal or smaller holder's (a peer's
 * own) only after a long stall caused by its peer.
 */
function evictionVictim (members: InboundSession[], peer: string, now: number, evictAfter: number): InboundSession | undefined {
  const held = new Map<string, number>()
  for (const session of members) {
    held.set(session.peer, (held.get(session.peer) ?? 0) + 1)
  }
  const mine = held.get(peer) ?? 0
  let victim: InboundSession | undefined
  let victimHeld = 0
  for (const session of members) {
    const stalled = now - session.lastProgress
    const theirs = held.get(session.peer) ?? 0
    const evictable = theirs > mine + 1
      ? theirs >= LARGE_HOLDING || stalled >= evictAfter || (!session.progressed && stalled >= NEVER_PROGRESSED_GRACE_MS)
      : stalled >= evictAfter * PEER_EVICTION_FACTOR && session.waitsForPeer()
    if (evictable && (victim == null || theirs > victimHeld || (theirs === victimHeld && session.lastProgress < victim.lastProgress))) {
      victim = session
      victimHeld = theirs
    }
  }
  return victim
}

/** The remote IP address of a connection (what session slots are counted by besides the peer id), else the peer id */
function addressOf (remoteAddr: Multiaddr, peer: PeerId): string {
  const ip = remoteAddr.getComponents().find(component => component.name === 'ip4' || component.name === 'ip6')
  return ip?.value ?? peer.toString()
}

/**
 * The arguments of `pull` and `push`: `(peer, roots, options?)` has the roots
 * second; `(roots, options?)` names no peer
 */
function transferArgs<O> (args: unknown[]): { peer?: PeerTarget, rootList: CID[], options: O } {
  const named = isRoots(args[1])
  const roots = (named ? args[1] : args[0]) as CID | CID[]
  return {
    peer: named ? args[0] as PeerTarget : undefined,
    rootList: Array.isArray(roots) ? roots : [roots],
    options: ((named ? args[2] : args[1]) ?? {}) as O
  }
}

/** The error of a transfer that named no peer and found none that served it (`errors`: why each one tried failed) */
function noProvider (transfer: string, errors: Error[]): NoProviderError {
  return new NoProviderError(errors.length === 0
    ? `No peer that speaks CAR Mirror was given, connected or found for ${transfer}`
    : `None of the ${errors.length} peer(s) tried could serve ${transfer}`, errors)
}

/** True for a root or a list of roots (not a peer target or an options object) */
function isRoots (value: unknown): value is CID | CID[] {
  return CID.asCID(value) != null || (Array.isArray(value) && value.length > 0 && CID.asCID(value[0]) != null)
}

/** The targets by the peer they reach, each peer once (the first target naming it) */
function distinctTargets (targets: PeerTarget[]): Map<string, PeerTarget> {
  const distinct = new Map<string, PeerTarget>()
  for (const target of targets) {
    const key = targetKey(target)
    if (!distinct.has(key)) {
      distinct.set(key, target)
    }
  }
  return distinct
}

/** A key that names the peer a target reaches, when it says */
function targetKey (target: PeerTarget): string {
  const addrs = Array.isArray(target) ? target : [target]
  const first = addrs[0]
  if (isMultiaddr(first)) {
    // a /p2p/<id> component names the peer; otherwise the addresses are the key
    const id = first.getComponents().findLast(component => component.name === 'p2p')?.value
    return id ?? addrs.map(addr => addr.toString()).join(',')
  }
  return String(first)
}

/** The end of a session that received: its blocks, duplicates and straggler rounds */
function logReceiverEnd (log: Logger, receiver: ReceiverSession): void {
  const { blocksReceived, blockBytesReceived, duplicateBlocks, stragglerRounds, statusesSent, bloomBytesSent } = receiver.counters
  log('done: %d block(s) (%d bytes) received, %d duplicate(s), %d straggler round(s), %d status frame(s) with %d Bloom bytes', blocksReceived, blockBytesReceived, duplicateBlocks, stragglerRounds, statusesSent, bloomBytesSent)
}

/** The end of a session that sent: its blocks, passes and what the receiver held already */
function logSenderEnd (log: Logger, sender: SenderSession): void {
  const { blocksSent, blockBytesSent, passes, statusesReceived, duplicatesReported } = sender.counters
  log('done: %d block(s) (%d bytes) sent in %d pass(es), %d status frame(s) read, %d duplicate(s) reported', blocksSent, blockBytesSent, passes, statusesReceived, duplicatesReported)
}

/**
 * A dial's failure as an Error: libp2p's WebSockets transport rejects with
 * the socket's ErrorEvent (no name, no stack) when nothing listens at the
 * address; that becomes a DialError whose cause is the event
 */
function dialFailure (err: unknown): Error {
  if (err instanceof Error) {
    return err
  }
  const message = typeof (err as { message?: unknown })?.message === 'string' ? (err as { message: string }).message : String(err)
  const error = new DialError(`Dialling the peer failed: ${message}`)
  error.cause = err
  return error
}
