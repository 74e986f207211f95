/**
 * @packageDocumentation
 *
 * CAR Mirror for Helia and libp2p: mirror IPLD DAGs between peers over one
 * full-duplex libp2p stream. The receiver describes what it holds with a
 * Bloom filter and names the subgraph roots it misses; the sender streams
 * every block it cannot rule out as CAR sections; the receiver verifies and
 * stores each block and asks for stragglers on the same stream.
 *
 * @example Pull a DAG from another Helia node
 *
 * ```ts
 * import { createHelia } from 'helia'
 * import { withCarMirror } from 'helia-car-mirror'
 *
 * const helia = withCarMirror(createHelia())
 * await helia.start()
 * const stats = await helia.carMirror.pull(serverMultiaddr, root)
 * console.info(stats.blocksReceived, stats.bytesReceived)
 * ```
 *
 * @example Push to a node that allows it
 *
 * ```ts
 * const server = withCarMirror(createHelia(), { allowPush: (peer, roots) => trusted.has(peer.toString()) })
 * // on the client:
 * await client.carMirror.push(server.libp2p.getMultiaddrs(), root)
 * ```
 */

import { DefaultCarMirror } from './car-mirror.ts'
import { MissingLibp2pError, NotStartedError } from './errors.ts'
import { pullBeforePinning } from './pins.ts'
import { watchStore } from './watch-store.ts'
import type { ReceiveOutcome } from './core/frontier.ts'
import type { BlockDecoder, LoadCodec } from './core/links.ts'
import type { LoadHasher } from './core/verify.ts'
import type { Helia, HeliaMixin, Pins, Routing } from '@helia/interface'
import type { AbortOptions, ComponentLogger, Libp2p, Metrics, OpenConnectionProgressEvents, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Blockstore } from 'interface-blockstore'
import type { Datastore } from 'interface-datastore'
import type { CID } from 'multiformats/cid'
import type { MultihashHasher } from 'multiformats/hashes/interface'
import type { ProgressEvent, ProgressOptions } from 'progress-events'

/** Who to mirror with: a peer id the node can dial, or its addresses */
export type PeerTarget = PeerId | Multiaddr | Multiaddr[]

/** Progress of one block */
export interface BlockProgress {
  /** The block's CID */
  cid: CID
  /** The block's size in bytes */
  bytes: number
}

/** Progress of one received block, with what became of it */
export interface ReceivedBlockProgress extends BlockProgress {
  /** 'stored' (verified and written), 'duplicate' (held already) or 'unrequested' (dropped: the session did not ask for it) */
  outcome: ReceiveOutcome
  /** The peer that sent it (in a pull from several providers, the provider whose copy this is) */
  peer: PeerId
}

/** Progress of one status frame */
export interface StatusProgress {
  /** Subgraph roots it asked for */
  wants: number
  /** Size of its Bloom filter (0 when it carried none) */
  bloomBytes: number
}

/**
 * The progress events of a pull or push: libp2p's dial events, then one per
 * block and status frame
 *
 * @example
 *
 * ```ts
 * await helia.carMirror.pull(peer, root, {
 *   onProgress: (event) => {
 *     if (event.type === 'car-mirror:block:received') {
 *       console.info(event.detail.cid, event.detail.bytes, event.detail.outcome, event.detail.peer)
 *     }
 *   }
 * })
 * ```
 */
export type CarMirrorProgressEvents =
  | OpenConnectionProgressEvents
  | ProgressEvent<'car-mirror:block:sent', BlockProgress>
  | ProgressEvent<'car-mirror:block:received', ReceivedBlockProgress>
  | ProgressEvent<'car-mirror:status:sent', StatusProgress>
  | ProgressEvent<'car-mirror:status:received', StatusProgress>

/** Options of a pull or push: an abort signal, progress events and hints */
export interface TransferOptions extends AbortOptions, ProgressOptions<CarMirrorProgressEvents> {
  /**
   * Roots of related DAGs the receiver may already hold, such as the previous
   * version of the same data. Their held blocks go into the receiver's Bloom
   * filter so the sender skips them.
   */
  hints?: CID[]
}

/** Options of a pull */
export interface PullOptions extends TransferOptions {
  /**
   * Pin the roots once every block is held (a root pinned already stays as
   * it is). Helia's pinning walks the local store only: every block is here
   * by then. Needs Helia's `pins` (a node made with `withCarMirror` or the
   * `carMirror()` mixin has them).
   */
  pin?: boolean
  /**
   * Fetch the roots' own blocks only, nothing below them (a `pull` with
   * `dl: 0` on the wire). No Bloom is sent. Cannot be combined with `pin`.
   */
  shallow?: boolean
}

/**
 * How a pull from several providers at once (CAR Pool) shares the work
 *
 * @example
 *
 * ```ts
 * await helia.carMirror.pull(root, { providers: [serverA, serverB], pool: { stallTimeout: 5_000 } })
 * ```
 */
export interface PoolOptions {
  /**
   * Buckets the block space is cut into: more let work move between
   * providers in smaller pieces (1 to 1024)
   *
   * @default 256 (DEFAULT_POOL_BUCKETS)
   */
  buckets?: number
  /**
   * A provider that sends nothing for this long while it has blocks to send
   * is dropped, and its buckets go to the others (ms)
   *
   * @default 10_000 (DEFAULT_POOL_STALL_TIMEOUT)
   */
  stallTimeout?: number
  /**
   * Most providers a pull pools when it finds them itself: connected peers
   * that speak CAR Mirror join the `providers` given until there are this
   * many (the `providers` given are all used however many they are)
   *
   * @default 4 (DEFAULT_POOL_MAX_PROVIDERS)
   */
  maxProviders?: number
}

/** What one provider of a pull from several at once did */
export interface PoolProviderStats {
  /** The provider: its peer id (or its addresses when they name none) */
  peer: string
  /** Blocks it sent that were read and verified, duplicates included */
  blocksReceived: number
  /** Their bytes, without framing */
  blockBytesReceived: number
  /** Blocks it sent that had already arrived from another provider (or were held) */
  duplicateBlocks: number
  /** The buckets it owned at the end (none once dropped) */
  buckets: number[]
  /** Why it was dropped: it failed, stalled, sent a forged or unrequested block, or lacked blocks */
  error?: Error
}

/** Where a pull that names no peer looks for one */
export interface FindProvidersOptions {
  /**
   * Peers to try first, in this order (the option Helia's own calls take);
   * then connected peers whose identified protocols include CAR Mirror, then
   * providers that `helia.routing.findProviders(root)` finds. A pull of a
   * whole DAG that has two or more distinct peers among these and the
   * connected peers that speak CAR Mirror (up to `pool.maxProviders`) pulls
   * from all of them at once (CAR Pool; addresses naming the same `/p2p/`
   * peer count as one): each sends a shard of the DAG's leaves, a fast one
   * takes work from a slow one, and a failing one's share goes to the
   * others; when all of them fail, the pull goes on with the providers
   * routing finds, one after the other. `pool: false` tries every peer one
   * after the other instead.
   */
  providers?: PeerTarget[]
  /**
   * How a pull from several `providers` at once shares the work; `false`
   * tries them one after the other
   */
  pool?: PoolOptions | false
  /**
   * Most providers found through routing that are tried
   *
   * @default 3 (DEFAULT_MAX_ROUTED_PROVIDERS)
   */
  maxRoutedProviders?: number
}

/** What one pull or push did, seen from the client */
export interface TransferStats {
  /** The roots the session mirrored */
  roots: CID[]
  /** Blocks written to the stream (a push) */
  blocksSent: number
  /** Blocks read from the stream and verified (a pull), held ones included */
  blocksReceived: number
  /** Block bytes sent, without framing */
  blockBytesSent: number
  /** Block bytes received, without framing */
  blockBytesReceived: number
  /** Bytes written to the stream, framing and control frames included */
  bytesSent: number
  /** Bytes read from the stream, framing and control frames included */
  bytesReceived: number
  /** Blocks that reached the receiver although it already held them */
  duplicateBlocks: number
  /** Bloom filter bytes carried by status frames, both directions */
  bloomBytes: number
  /** Status frames (a pull request included), both directions */
  statusFrames: number
  /** Times the client waited for the other side: the request's answer, then each straggler round */
  roundTrips: number
  /** Blocks under a pull's hints that the record of DAGs held whole listed, so no local walk read them (see `maxCompleteRoots`) */
  recordedHintBlocks: number
  /** From the call to its end, dialling included (ms) */
  durationMs: number
  /** A pull from several providers at once (CAR Pool): what each one did */
  providers?: PoolProviderStats[]
}

/** A session another peer opened on this node, once it has ended */
export interface ServedSession {
  /** What the peer asked for; 'unknown' when its first frame was neither a pull nor a push (or never came) */
  kind: 'pull' | 'push' | 'unknown'
  /** The peer that opened the session */
  peer: PeerId
  /** The roots its first frame named (empty when unknown) */
  roots: CID[]
  /**
   * 'done': every block the peer asked for was sent, or every pushed block is
   * held; 'refused': too many sessions, or `allowPull`/`allowPush` said no;
   * 'failed': anything else (`error` says what)
   */
  outcome: 'done' | 'refused' | 'failed'
  /** Why the session failed or was refused */
  error?: Error
  /** Blocks sent (a pull) */
  blocksSent: number
  /** Block bytes sent, without framing */
  blockBytesSent: number
  /** Blocks received and verified (a push), already held ones included */
  blocksReceived: number
  /** Block bytes received, without framing */
  blockBytesReceived: number
  /** Blocks under a push's hints that the record of DAGs held whole listed, so no local walk read them (see `maxCompleteRoots`) */
  recordedHintBlocks: number
  /** From the first frame to the end (ms) */
  durationMs: number
}

/**
 * Decides whether a peer may pull or push a DAG. A thrown error counts as
 * a refusal.
 */
export interface AuthorizeSession {
  (peer: PeerId, roots: CID[]): boolean | Promise<boolean>
}

/**
 * Options of a CAR Mirror node: who may pull and push, limits on what a peer
 * may make this node hold, timeouts and tuning. Every option has a default
 * that suits a public server.
 *
 * @example
 *
 * ```ts
 * const helia = withCarMirror(await createHelia(), {
 *   allowPush: (peer) => trusted.has(peer.toString()),
 *   maxSessions: 64,
 *   idleTimeout: 30_000
 * })
 * ```
 */
export interface CarMirrorInit {
  /**
   * Protocol id to serve and dial
   *
   * @default '/car-mirror/stream/1.0.0' (PROTOCOL_ID)
   */
  protocol?: string
  /**
   * Who may pull
   *
   * @default everyone
   */
  allowPull?: AuthorizeSession
  /**
   * Who may push (a refused pusher gets a SessionRefusedError)
   *
   * @default nobody
   */
  allowPush?: AuthorizeSession
  /**
   * Most block bytes an allowed push may write
   *
   * @default 1 GiB (DEFAULT_MAX_PUSH_BYTES)
   */
  pushQuota?(peer: PeerId, roots: CID[]): number | Promise<number>
  /**
   * Called once each session another peer opened here has ended (served,
   * refused or failed), for logs and metrics. An error it throws is logged
   * and ignored.
   *
   * @example
   *
   * ```ts
   * const helia = withCarMirror(node, {
   *   onSession: s => { console.info(`${s.kind} of ${s.roots[0]} by ${s.peer}: ${s.outcome}`) }
   * })
   * ```
   */
  onSession?(session: ServedSession): void
  /**
   * Most roots one session may name
   *
   * @default 1,000 (DEFAULT_MAX_ROOTS)
   */
  maxRoots?: number
  /**
   * Most sessions served at once
   *
   * @default 256 (DEFAULT_MAX_SESSIONS)
   */
  maxSessions?: number
  /**
   * Most sessions served at once for one peer
   *
   * @default 32 (DEFAULT_MAX_SESSIONS_PER_PEER)
   */
  maxSessionsPerPeer?: number
  /**
   * Most sessions served at once for one remote IP address
   *
   * @default 128 (DEFAULT_MAX_SESSIONS_PER_ADDRESS)
   */
  maxSessionsPerAddress?: number
  /**
   * An inbound session that makes no progress (no block sent or stored, no
   * new wants) for this long is ended, whatever frames its peer sends, ms
   *
   * @default 120,000 ms (DEFAULT_STALL_TIMEOUT)
   */
  stallTimeout?: number
  /**
   * When session slots run out, the session without progress for longest is
   * evicted if that has lasted this long, ms
   *
   * @default 1,000 ms (DEFAULT_EVICT_AFTER)
   */
  evictAfter?: number
  /** Node-wide budgets; see {@link BudgetInit} */
  budgets?: BudgetInit
  /**
   * Most blocks a sender reads to check that wants lie in the DAG
   *
   * @default 1,000,000 (DEFAULT_MAX_CHECK_BLOCKS)
   */
  maxCheckBlocks?: number
  /**
   * Most blocks a push server walks under a push's hints
   *
   * @default 100,000 (DEFAULT_MAX_HINT_BLOCKS)
   */
  maxHintBlocks?: number
  /**
   * Most held blocks a receiver walks to find what it holds
   *
   * @default 1,000,000 (DEFAULT_MAX_EXPLORE_BLOCKS)
   */
  maxExploreBlocks?: number
  /**
   * Most wants a receiver keeps at once in one session
   *
   * @default 100,000 (DEFAULT_MAX_WANTS)
   */
  maxWants?: number
  /**
   * Most links one received block may have
   *
   * @default 10,000 (DEFAULT_MAX_LINKS_PER_BLOCK)
   */
  maxLinksPerBlock?: number
  /**
   * Most received blocks a session tolerates that it never asked for
   *
   * @default 16 (DEFAULT_MAX_UNREQUESTED_BLOCKS)
   */
  maxUnrequestedBlocks?: number
  /**
   * Most straggler rounds a session runs before it gives up
   *
   * @default 100 (DEFAULT_MAX_STRAGGLER_ROUNDS)
   */
  maxStragglerRounds?: number
  /**
   * Largest block sent or accepted, bytes
   *
   * @default 2 MiB (DEFAULT_MAX_BLOCK_SIZE)
   */
  maxBlockSize?: number
  /**
   * Largest Bloom filter accepted, bytes
   *
   * @default 1 MiB (DEFAULT_MAX_BLOOM_BYTES)
   */
  maxBloomBytes?: number
  /**
   * Most hash functions a received Bloom may use
   *
   * @default 64 (DEFAULT_MAX_BLOOM_HASH_COUNT)
   */
  maxBloomHashCount?: number
  /**
   * Most CIDs in one control message
   *
   * @default 10,000 (DEFAULT_MAX_CIDS_PER_MESSAGE)
   */
  maxCidsPerMessage?: number
  /**
   * A local store of at most this many blocks goes into a pull's Bloom whole;
   * 0 turns it off. The node keeps that Bloom: it lists its store when it
   * starts and at most once a minute after, and adds the blocks written
   * through `helia.blockstore` and by sessions meanwhile
   *
   * @default 100,000 (DEFAULT_SMALL_STORE_BLOCKS)
   */
  smallStoreBlocks?: number
  /**
   * Largest Bloom of its whole store a push server sends as its greeting to
   * a push that names no hints, so the client skips what the server holds
   * (the store is listed at most once a minute; a larger store gets the
   * usual Bloom of what it holds under the roots). It shows an allowed
   * pusher which blocks the store holds; 0 turns it off.
   *
   * @default 64 KiB, about 10,000 blocks (DEFAULT_STORE_BLOOM_BYTES)
   */
  storeBloomBytes?: number
  /**
   * DAGs the node records as held whole, in Helia's datastore: a pull or a
   * push whose hints (named, or implicit) are recorded trusts their blocks
   * without walking them, which is most of a warm transfer's local work.
   * A session that completes records its roots; so does `recordComplete`.
   * Deletes through `helia.blockstore` and `helia.gc()` clear the record;
   * after deleting blocks any other way (or any delete at all, with
   * `createCarMirror`, which sees none), call `forgetComplete()`. Each entry
   * lists at most `maxHintBlocks` CIDs; 0 turns the record off.
   *
   * @default 64 (DEFAULT_MAX_COMPLETE_ROOTS)
   */
  maxCompleteRoots?: number
  /**
   * Block bytes a push sends, besides its roots, before the server says it
   * holds the roots (with a Bloom of what else it holds). Unset, it depends
   * on the push: one with hints (given, or the roots last
   * exchanged with that peer) sends up to 1 MiB at once, skipping what the
   * hints hold, since the rest is likely new; one without hints sends only
   * its roots, since the server may hold everything else, and goes on when
   * the server says what it holds (a round trip later). Set, it
   * applies to every push: a client that pushes mostly new data without
   * hints may set it to save that round trip.
   *
   * @default 4 MiB with hints (DEFAULT_COLD_CALL_BYTES), 0 without (roots only)
   */
  coldCallBytes?: number
  /**
   * Block reads a sender keeps in flight
   *
   * @default 16 (DEFAULT_READ_AHEAD)
   */
  readAhead?: number
  /**
   * A stream with no traffic for this long is aborted, ms
   *
   * @default 60,000 ms (DEFAULT_IDLE_TIMEOUT)
   */
  idleTimeout?: number
  /**
   * Most CAR Mirror streams a remote peer may open on one connection at once
   *
   * @default 32 (DEFAULT_MAX_INBOUND_STREAMS)
   */
  maxInboundStreams?: number
  /**
   * Most CAR Mirror streams this node opens on one connection at once
   *
   * @default 32 (DEFAULT_MAX_OUTBOUND_STREAMS)
   */
  maxOutboundStreams?: number
  /**
   * Serve and open CAR Mirror streams on limited connections too (such as
   * circuit relay v2 ones, which cap bytes and time), which libp2p does not
   * by default
   *
   * @default false
   */
  runOnLimitedConnection?: boolean
  /**
   * Add the `car-mirror` block broker to the Helia node (`withCarMirror` and
   * the `carMirror()` mixin), so blocks Helia fetches (`pins.add`,
   * `@helia/unixfs`, sessions) come over CAR Mirror, and make
   * `helia.pins.add(root)` fetch the whole DAG in one CAR Mirror pull,
   * pinning each block as it is verified
   *
   * @default true
   */
  broker?: boolean
  /** Decoders for codecs beyond dag-pb, raw, dag-cbor and dag-json */
  codecs?: BlockDecoder[]
  /** Finds decoders for other codecs; defaults to Helia's `getCodec` */
  loadCodec?: LoadCodec
  /** Hashers beyond sha2-256, sha2-512, blake3 and identity */
  hashers?: MultihashHasher[]
  /** Finds other hashers; defaults to Helia's `getHasher` */
  loadHasher?: LoadHasher
}

/**
 * Node-wide budgets: what all sessions together may make the node hold.
 * A session that would go over waits (its stream stops being read) or ends
 * with a `limit` error.
 */
export interface BudgetInit {
  /**
   * Bytes of received frames waiting to be handled; streams pause above it
   *
   * @default 32 MiB (DEFAULT_BUFFERED_BYTES_BUDGET)
   */
  bufferedBytes?: number
  /**
   * Bytes of Bloom filters that senders hold
   *
   * @default 64 MiB (DEFAULT_BLOOM_BYTES_BUDGET)
   */
  bloomBytes?: number
  /**
   * Wants queued at senders or in the pass under way
   *
   * @default 200,000 (DEFAULT_QUEUED_WANTS_BUDGET)
   */
  queuedWants?: number
  /**
   * Bytes of blocks read ahead of streams (each session's block being written counts too)
   *
   * @default 32 MiB (DEFAULT_READ_AHEAD_BYTES_BUDGET)
   */
  readAheadBytes?: number
  /**
   * Wants pending at receivers
   *
   * @default 500,000 (DEFAULT_PENDING_WANTS_BUDGET)
   */
  pendingWants?: number
  /**
   * CIDs held by walks: indexed to check wants, or queued by senders' walks
   *
   * @default 500,000 (DEFAULT_INDEXED_CIDS_BUDGET)
   */
  indexedCids?: number
  /**
   * CIDs receivers keep from walks of their own store: each held block a
   * session's frontier finds there (below its roots, or below a block it
   * received) until the session ends, and what hint walks find (one per
   * held block, one more when the hinted DAG is trusted whole). Apart from
   * `indexedCids`, so that pushes holding what they found cannot starve
   * pulls. A frontier that finds it used up waits up to 2 s for room (the
   * node evicts a stalled session that holds some), then its session ends
   * with `LimitExceededError`; a hint walk that finds it used up stops and
   * keeps nothing (hints only save bytes)
   *
   * @default 200,000 (DEFAULT_HELD_CIDS_BUDGET)
   */
  heldCids?: number
  /**
   * Local walks (want checks, hint walks) at once
   *
   * @default 2 (DEFAULT_LOCAL_WALKS)
   */
  localWalks?: number
  /**
   * Received control frames over 16 KiB (long CID lists) decoded and taken in at once
   *
   * @default 1 (DEFAULT_LARGE_FRAMES)
   */
  largeFrames?: number
  /**
   * Bytes of receive window opened at once on streams that bring blocks (a
   * pull this node makes, a push it accepted), beyond yamux's first
   * 256 KiB, held until the stream closes. Each such stream asks for 4 MiB
   * so that a transfer of more than 256 KiB needs no extra round trip for
   * room; a stream that finds no room starts with yamux's window, which
   * widens as data arrives. 0 opens none
   *
   * @default 16 MiB (DEFAULT_WINDOW_BYTES_BUDGET)
   */
  windowBytes?: number
}

/** The names of the node-wide budgets, plus `sessions` (inbound session slots) */
export type BudgetName = keyof BudgetInit | 'sessions'

/** What the node holds now, against its budgets */
export interface CarMirrorStats {
  /** Sessions running now: served for other peers and started here */
  sessions: {
    /** Served for other peers */
    inbound: number
    /** Started here */
    outbound: number
  }
  /** Each node-wide budget: how much is held now, the most held at once since the node started, and its limit */
  budgets: Record<BudgetName, {
    /** Held now */
    used: number
    /** The most held at once since the node started (it may pass the limit by what a budget lets through before it waits, such as the frame still arriving) */
    peak: number
    /** The most the node holds */
    limit: number
  }>
  /** What the `car-mirror` block broker has done since the node started */
  broker: BrokerStats
}

/** Counters of the `car-mirror` block broker */
export interface BrokerStats {
  /** Blocks Helia asked it for */
  retrieves: number
  /** Pulls it started */
  pulls: number
  /** Of those, pulls of the roots' own blocks only (`shallow`) */
  shallowPulls: number
  /** Retrieves served by a pull already under way, or by another retrieve of the same block */
  joined: number
  /** Blocks its pulls received */
  blocksReceived: number
  /** Block bytes its pulls received, without framing */
  blockBytesReceived: number
  /** Bytes its pulls read from streams, framing and control frames included */
  bytesReceived: number
  /** Pulls that failed (another broker, such as Bitswap, may have served the block) */
  failures: number
}

/** What CAR Mirror needs from its host: a libp2p node and a blockstore */
export interface CarMirrorComponents {
  /** The libp2p node that serves the protocol and dials peers (with `getConnections` and `peerStore`, a pull may name no peer) */
  libp2p: Pick<Libp2p, 'handle' | 'unhandle' | 'dial'> & Partial<Pick<Libp2p, 'getConnections' | 'peerStore'>> & {
    /** libp2p's metrics: CAR Mirror registers its session and budget gauges there */
    metrics?: Metrics
  }
  /** Where received blocks are written (after verification) and sent blocks are read */
  blockstore: Blockstore
  /** Helia's or libp2p's logger; default `defaultLogger()` of `@libp2p/logger` */
  logger?: ComponentLogger
  /** Decoders of codecs besides dag-pb, dag-cbor, dag-json and raw (Helia's `getCodec`) */
  getCodec?: LoadCodec
  /** Hashers besides sha2-256, sha2-512, blake3 and identity (Helia's `getHasher`) */
  getHasher?: LoadHasher
  /** Helia's datastore: where the record of DAGs held whole is kept (see `maxCompleteRoots`); without one it lasts until the process ends */
  datastore?: Pick<Datastore, 'get' | 'put' | 'delete'>
  /** Helia's pins, for `pull(..., { pin: true })` */
  pins?: Pick<Pins, 'add' | 'isPinned'>
  /** Helia's routing: where a pull that names no peer finds providers */
  routing?: Pick<Routing, 'findProviders'>
}

/** The CAR Mirror API of a node */
export interface CarMirror {
  /** The libp2p protocol id in use */
  readonly protocol: string

  /** Sessions running now: served for other peers (inbound) and started here (outbound) */
  readonly activeSessions: {
    /** Served for other peers */
    inbound: number
    /** Started here */
    outbound: number
  }

  /**
   * Sessions and the use of every node-wide budget now
   *
   * @example
   *
   * ```ts
   * const { budgets } = helia.carMirror.stats()
   * console.info(budgets.bloomBytes.used, budgets.bloomBytes.limit)
   * ```
   */
  stats(): CarMirrorStats

  /**
   * Walks the DAGs under `roots` in the local store and, when every block is
   * held, records them as held whole (see `maxCompleteRoots`), so later
   * transfers that hint them need not walk them. A completed pull or push
   * records its roots by itself: call this for DAGs that arrived another way
   * (an import, a CAR file). Resolves true when every root was recorded.
   *
   * @example
   *
   * ```ts
   * const { cid } = await importer(...) // or any DAG written to helia.blockstore
   * await helia.carMirror.recordComplete(cid)
   * await helia.carMirror.push(server, nextVersion, { hints: [cid] }) // no walk of cid's DAG
   * ```
   */
  recordComplete(roots: CID | CID[], options?: AbortOptions): Promise<boolean>

  /**
   * Forgets every DAG recorded as held whole. Deletes through
   * `helia.blockstore` and `helia.gc()` do this by themselves; call it after
   * deleting blocks any other way (straight from the store under Helia), or a
   * later transfer may trust a DAG that lost blocks.
   *
   * @example
   *
   * ```ts
   * await otherHandleToTheSameStore.delete(cid)
   * await helia.carMirror.forgetComplete()
   * ```
   */
  forgetComplete(): Promise<void>

  /** Starts serving the protocol */
  start(): Promise<void>

  /** True between `start()` and `stop()` */
  isStarted(): boolean

  /** Stops serving, aborts running sessions and resolves once they have ended */
  stop(): Promise<void>

  /**
   * Mirrors the DAG under `roots` from `peer` into the local blockstore.
   * Resolves when every block is held, verified.
   *
   * @throws {BlocksNotAvailableError} when the peer lacks some blocks (`err.cids` names them)
   * @throws {SessionRefusedError} when the peer does not allow the pull
   * @throws {PinningUnavailableError} when `pin` is set on a node without Helia's pins
   *
   * @example
   *
   * ```ts
   * // the DAG, verified and pinned: it survives helia.gc()
   * await helia.carMirror.pull(server, root, { pin: true })
   * ```
   */
  pull(peer: PeerTarget, roots: CID | CID[], options?: PullOptions): Promise<TransferStats>

  /**
   * Mirrors the DAG under `roots` from a peer found for it: the `providers`
   * given, then connected peers that speak CAR Mirror, then providers that
   * routing finds for the first root. A provider that cannot be reached,
   * does not speak the protocol, refuses or fails is dropped, and the next
   * one goes on from what arrived.
   *
   * @throws {NoProviderError} when no provider was found, or every one failed (`err.errors` says why)
   * @throws {PinningUnavailableError} when `pin` is set on a node without Helia's pins
   *
   * @example
   *
   * ```ts
   * // a peer that is connected, or that routing finds
   * await helia.carMirror.pull(root, { pin: true })
   * ```
   */
  pull(roots: CID | CID[], options?: PullOptions & FindProvidersOptions): Promise<TransferStats>

  /**
   * Mirrors the local DAG under `roots` to `peer`, which must allow pushes.
   * Resolves when the peer says it holds every block.
   *
   * @throws {SessionRefusedError} when the peer does not allow the push
   * @throws {BlockNotFoundError | BlocksNotAvailableError} when the local store lacks blocks
   */
  push(peer: PeerTarget, roots: CID | CID[], options?: TransferOptions): Promise<TransferStats>

  /**
   * Mirrors the local DAG under `roots` to a peer found for it: the
   * `providers` given, then connected peers that speak CAR Mirror, then
   * providers that routing finds for the first hint (peers that hold the
   * previous version), else for the first root. A peer that cannot be
   * reached, refuses the push or fails is dropped and the next one tried;
   * a failure of the local store ends the push at once.
   *
   * @throws {NoProviderError} when no peer was found, or every one failed (`err.errors` says why)
   *
   * @example
   *
   * ```ts
   * // to the connected server that allows it, or one routing finds holding the previous version
   * await helia.carMirror.push(newRoot, { hints: [previousRoot] })
   * ```
   */
  push(roots: CID | CID[], options?: TransferOptions & FindProvidersOptions): Promise<TransferStats>
}

/**
 * CAR Mirror on a plain libp2p node and blockstore, without Helia. Call
 * `start()` to serve the protocol.
 *
 * @example
 *
 * ```ts
 * const mirror = createCarMirror({ libp2p, blockstore })
 * await mirror.start()
 * await mirror.pull(peerId, root)
 * ```
 */
export function createCarMirror (components: CarMirrorComponents, init: CarMirrorInit = {}): CarMirror {
  return new DefaultCarMirror(components, init)
}

/** A Helia node with libp2p, as made by `withLibp2p` or `createHelia` */
export interface HeliaWithLibp2p extends Helia {
  /** The node's libp2p */
  libp2p: Libp2p
}

/** A Helia node with CAR Mirror */
export interface HeliaWithCarMirror {
  /** Pull and push DAGs, and the node's CAR Mirror stats */
  carMirror: CarMirror
}

/**
 * A Helia mixin that sets `helia.carMirror` when the node starts (Helia 7's
 * equivalent of `helia.use(carMirror())`). Add it after libp2p.
 *
 * @example
 *
 * ```ts
 * helia.addMixin(carMirror({ allowPush: () => true }))
 * await helia.start()
 * await (helia as HeliaWithCarMirror).carMirror.pull(peer, root)
 * ```
 */
export function carMirror (init: CarMirrorInit = {}): HeliaMixin<HeliaWithLibp2p & Partial<HeliaWithCarMirror>> {
  let mirror: DefaultCarMirror | undefined
  let unwatch: (() => void) | undefined
  const create = async (helia: HeliaWithLibp2p & Partial<HeliaWithCarMirror>): Promise<void> => {
    mirror ??= new DefaultCarMirror({
      libp2p: helia.libp2p,
      blockstore: helia.blockstore,
      logger: helia.logger,
      getCodec: helia.getCodec,
      getHasher: helia.getHasher,
      datastore: helia.datastore,
      pins: helia.pins,
      routing: helia.routing
    }, init)
    helia.carMirror = mirror
    await mirror.start()
    if (unwatch == null) {
      const log = helia.logger.forComponent('helia:car-mirror')
      const started = mirror
      unwatch = watchStore(helia, {
        // a deleted block may lie under a DAG recorded whole: the record goes first
        beforeDelete: () => {
          started.forgetComplete().catch(err => { log.error('clearing the record of whole DAGs failed - %e', err) })
        },
        // the Bloom of a small store holds blocks written since it was listed
        afterPut: cid => { started.noteStored(cid) }
      })
    }
    if (init.broker !== false) {
      if (!helia.hasBlockBroker(mirror.broker.name)) {
        helia.addBlockBroker(mirror.broker)
      }
      pullBeforePinning(helia.pins, mirror.broker, helia.logger.forComponent('helia:car-mirror:pins'))
    }
  }
  return {
    name: 'car-mirror',
    start: async (helia) => {
      if (!('libp2p' in helia)) {
        throw new MissingLibp2pError('CAR Mirror needs a Helia node with libp2p: use createHelia(), or add withLibp2p() before withCarMirror()')
      }
      let libp2pReady = true
      try {
        void helia.libp2p
      } catch (err) {
        if ((err as Error).name !== 'NotStartedError') {
          throw err
        }
        libp2pReady = false
      }
      if (libp2pReady) {
        await create(helia)
        return
      }
      // libp2p's mixin was added after this one and starts later: begin once the whole node has started
      const helper = helia as unknown as { events?: EventTarget, logger: HeliaWithLibp2p['logger'] }
      helper.events?.addEventListener('start', () => {
        create(helia).catch(err => { helper.logger.forComponent('helia:car-mirror').error('starting CAR Mirror failed - %e', err) })
      }, { once: true })
    },
    stop: async () => {
      unwatch?.()
      unwatch = undefined
      await mirror?.stop()
    }
  }
}

/**
 * Returns the Helia node with a typed `carMirror` property. Until
 * `helia.start()` has made it ready, using it throws NotStartedError.
 * The node must have libp2p (`createHelia()`, or `withLibp2p` in any
 * order); without it `start()` throws MissingLibp2pError.
 *
 * @example
 *
 * ```ts
 * const helia = withCarMirror(createHelia(), { allowPush: async (peer) => allowed(peer) })
 * await helia.start()
 * const stats = await helia.carMirror.pull(peer, root)
 * ```
 */
export function withCarMirror<H extends Helia> (helia: H, init: CarMirrorInit = {}): H & HeliaWithCarMirror {
  const mixin = carMirror(init)
  const node = helia as H & Partial<HeliaWithCarMirror>
  // a stand-in until start() replaces it: any use says what to do instead of failing on undefined
  node.carMirror = new Proxy({} as CarMirror, {
    get: (_, property) => {
      // symbols (util.inspect, Symbol.toStringTag) and `then` are looked up by
      // logging and promise code that must not fail on a node not started yet
      if (typeof property === 'symbol' || property === 'then') {
        return undefined
      }
      if (property === 'isStarted') {
        // the one question a node not started yet can answer
        return () => false
      }
      throw new NotStartedError(`helia.carMirror.${String(property)} was used before helia.start() made CAR Mirror ready`)
    }
  })
  helia.addMixin(mixin as unknown as HeliaMixin)
  // Helia stops its mixins in the order they were added, libp2p's (usually
  // first) before this one: CAR Mirror stops first instead, so a session that
  // just ended here gets its done frame to the other side before the
  // connections close
  const stopHelia = helia.stop.bind(helia)
  node.stop = async (options) => {
    if (node.carMirror?.isStarted() === true) {
      await node.carMirror.stop()
    }
    return stopHelia(options)
  }
  return node as H & HeliaWithCarMirror
}

export { DEFAULT_STORE_BLOOM_BYTES, DEFAULT_MAX_COMPLETE_ROOTS, DEFAULT_MAX_SESSIONS_PER_ADDRESS, DEFAULT_STALL_TIMEOUT, DEFAULT_EVICT_AFTER, DEFAULT_BUFFERED_BYTES_BUDGET, DEFAULT_BLOOM_BYTES_BUDGET, DEFAULT_QUEUED_WANTS_BUDGET, DEFAULT_READ_AHEAD_BYTES_BUDGET, DEFAULT_PENDING_WANTS_BUDGET, DEFAULT_INDEXED_CIDS_BUDGET, DEFAULT_HELD_CIDS_BUDGET, DEFAULT_LOCAL_WALKS, DEFAULT_LARGE_FRAMES, DEFAULT_WINDOW_BYTES_BUDGET, DEFAULT_MAX_ROUTED_PROVIDERS, DEFAULT_MAX_CHECK_BLOCKS, DEFAULT_MAX_HINT_BLOCKS, DEFAULT_MAX_EXPLORE_BLOCKS, DEFAULT_MAX_WANTS, DEFAULT_MAX_LINKS_PER_BLOCK, DEFAULT_MAX_MISSING, MAX_SENT_BLOOM_BYTES, DEFAULT_POOL_STALL_TIMEOUT, DEFAULT_POOL_MAX_PROVIDERS } from './constants.ts'
export { DEFAULT_POOL_BUCKETS } from './core/pool/shard-planner.ts'
export { PROTOCOL_ID, PUSH_PROTOCOL_SUFFIX, DEFAULT_MAX_BLOCK_SIZE, DEFAULT_MAX_BLOOM_BYTES, DEFAULT_MAX_BLOOM_HASH_COUNT, DEFAULT_MAX_CIDS_PER_MESSAGE, DEFAULT_SMALL_STORE_BLOCKS, DEFAULT_IDLE_TIMEOUT, DEFAULT_READ_AHEAD, DEFAULT_COLD_CALL_BYTES, DEFAULT_MAX_ROOTS, DEFAULT_MAX_QUEUED_WANTS, DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_PEER, DEFAULT_MAX_PUSH_BYTES, DEFAULT_MAX_UNREQUESTED_BLOCKS, DEFAULT_MAX_STRAGGLER_ROUNDS } from './constants.ts'
export { BloomFilter, InvalidBloomError } from './core/bloom/bloom-filter.ts'
export type { BloomSize, OptimalSizeOptions, HasBytes } from './core/bloom/bloom-filter.ts'
// the types the init options and progress events name; the building blocks
// themselves are exported by `helia-car-mirror/core`
export type { BlockDecoder, LoadCodec } from './core/links.ts'
export type { LoadHasher } from './core/verify.ts'
export type { ReceiveOutcome } from './core/frontier.ts'
export { CarMirrorBlockBroker } from './broker.ts'
export type { BrokerHost, CarMirrorBlockBrokerInit, PullTaps } from './broker.ts'
export type { BrokerPullOptions } from './car-mirror.ts'
export * from './errors.ts'
