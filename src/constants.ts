/** The libp2p protocol id of streaming CAR Mirror */
export const PROTOCOL_ID = '/car-mirror/stream/1.0.0'

/**
 * Appended to the protocol id, the id of a stream opened for a push
 * (`/car-mirror/stream/1.0.0/push`): the server knows blocks come its way
 * before the first frame arrives, and opens its receive window at once
 */
export const PUSH_PROTOCOL_SUFFIX = '/push'

/** Largest block accepted or sent (bytes): 2 MiB, above the usual 1 MiB chunk limit */
export const DEFAULT_MAX_BLOCK_SIZE = 2 * 1024 * 1024

/**
 * Largest Bloom filter accepted (bytes): the minimum every peer must accept
 * (PROTOCOL.md §6). It holds about 200,000 CIDs at the usual false positive
 * rate; receivers with more raise the rate rather than send a larger one.
 */
export const DEFAULT_MAX_BLOOM_BYTES = 1024 * 1024

/** Largest Bloom filter a receiver sends (bytes): the minimum every peer must accept */
export const MAX_SENT_BLOOM_BYTES = 1024 * 1024

/** Most hash functions a received Bloom filter may ask for (rs-car-mirror uses at most about 50) */
export const DEFAULT_MAX_BLOOM_HASH_COUNT = 64

/** Most CIDs in one control message (roots, wants, hints or missing CIDs) */
export const DEFAULT_MAX_CIDS_PER_MESSAGE = 10_000

/** A local store of at most this many blocks goes into the receiver's Bloom whole (spec §3.5.1) */
export const DEFAULT_SMALL_STORE_BLOCKS = 100_000

/** Most concurrent inbound CAR Mirror streams per connection */
export const DEFAULT_MAX_INBOUND_STREAMS = 32

/** Most concurrent outbound CAR Mirror streams per connection */
export const DEFAULT_MAX_OUTBOUND_STREAMS = 32

/** A session with no frame in either direction for this long is aborted (ms) */
export const DEFAULT_IDLE_TIMEOUT = 60_000

/** Block reads a sender keeps in flight ahead of the stream */
export const DEFAULT_READ_AHEAD = 16

/**
 * Block bytes besides its roots a pushing client with hints sends before
 * the server says it holds the roots (what the hints hold is skipped): the
 * receive window a server opens for a push at once (BLOCKS_RECEIVE_WINDOW),
 * what can go out in the first round trip. A push without hints sends only
 * its roots (see `coldCallBytes`)
 */
export const DEFAULT_COLD_CALL_BYTES = 4 * 1024 * 1024

/** Most roots one session may name */
export const DEFAULT_MAX_ROOTS = 1000

/** Most wants a sender keeps queued from status frames before it stops reading: one message's worth */
export const DEFAULT_MAX_QUEUED_WANTS = 10_000

/** Most blocks a receiver keeps track of as missing at the sender before it gives up */
export const DEFAULT_MAX_MISSING = 10_000

/** Most concurrent sessions a node serves, in total */
export const DEFAULT_MAX_SESSIONS = 256

/** Most concurrent sessions a node serves for one peer */
export const DEFAULT_MAX_SESSIONS_PER_PEER = 32

/** Most concurrent sessions a node serves for one remote IP address (peer ids cost nothing) */
export const DEFAULT_MAX_SESSIONS_PER_ADDRESS = 128

/**
 * A session that makes no progress (no block stored or sent, no new wants)
 * for this long is ended, whatever frames its peer sends (ms)
 */
export const DEFAULT_STALL_TIMEOUT = 120_000

/** When session slots run out, a session without progress for at least this long may be evicted to make room (ms) */
export const DEFAULT_EVICT_AFTER = 1000

/** Node-wide: bytes of received frames waiting to be handled; streams pause above it */
export const DEFAULT_BUFFERED_BYTES_BUDGET = 32 * 1024 * 1024

/** Node-wide: bytes of Bloom filters that senders hold */
export const DEFAULT_BLOOM_BYTES_BUDGET = 64 * 1024 * 1024

/** Node-wide: wants queued at senders or in the pass under way */
export const DEFAULT_QUEUED_WANTS_BUDGET = 200_000

/** Node-wide: bytes of blocks senders read ahead of their streams, and the block each is writing */
export const DEFAULT_READ_AHEAD_BYTES_BUDGET = 32 * 1024 * 1024

/** Node-wide: wants pending at receivers */
export const DEFAULT_PENDING_WANTS_BUDGET = 500_000

/** Per session: wants pending at a receiver */
export const DEFAULT_MAX_WANTS = 100_000

/** Node-wide: CIDs senders hold in walks: indexed to check that wants lie in the DAG, or queued to visit */
export const DEFAULT_INDEXED_CIDS_BUDGET = 500_000

/**
 * Node-wide: CIDs receivers keep from walks of their own store: the held
 * blocks a frontier finds there (below its roots or a received block), and
 * what hint walks find (one per held block, one more when the hinted DAG is
 * trusted whole). About 800 B each (a CID object, its key and the map entries), so the default holds about 160 MB
 */
export const DEFAULT_HELD_CIDS_BUDGET = 200_000

/** How long a receiver waits for room in the held-CIDs budget before its session fails (ms) */
export const HELD_WAIT_MS = 2000

/** Node-wide: local walks (want checks, hint walks) running at once */
export const DEFAULT_LOCAL_WALKS = 2

/**
 * Node-wide: received control frames over 16 KiB (long CID lists) being
 * decoded and taken in at once: each holds up to 10,000 decoded CIDs while
 * it is handled in slices
 */
export const DEFAULT_LARGE_FRAMES = 1

/** Per session: blocks a sender reads to check wants */
export const DEFAULT_MAX_CHECK_BLOCKS = 1_000_000

/** Per session: blocks a push server reads under the hints */
export const DEFAULT_MAX_HINT_BLOCKS = 100_000

/** Per session: held blocks a receiver walks to find what it holds */
export const DEFAULT_MAX_EXPLORE_BLOCKS = 1_000_000

/** Most links of one received block */
export const DEFAULT_MAX_LINKS_PER_BLOCK = 10_000

/** Push quota bytes charged for each link a pushed block adds to the wants */
export const PUSH_QUOTA_BYTES_PER_LINK = 64

/** Most block bytes one push session may write into the store, unless `pushQuota` says otherwise (1 GiB) */
export const DEFAULT_MAX_PUSH_BYTES = 1024 * 1024 * 1024

/** Most blocks a receiver tolerates that the session never asked for before it ends the session */
export const DEFAULT_MAX_UNREQUESTED_BLOCKS = 16

/** Most straggler rounds in one session; honest sessions need a handful (at most about the DAG's depth) */
export const DEFAULT_MAX_STRAGGLER_ROUNDS = 100

/** How long a client remembers an interrupted push, to resume it without a cold call (ms) */
export const RESUME_MEMORY_MS = 10 * 60_000

/** A pull that names no peer tries at most this many providers found through routing */
export const DEFAULT_MAX_ROUTED_PROVIDERS = 3

/** Largest Bloom of its whole store a push server sends as its greeting to a push without hints (64 KiB: stores of about 10,000 blocks) */
export const DEFAULT_STORE_BLOOM_BYTES = 64 * 1024

/** DAGs a node records as held whole (each a list of up to maxHintBlocks CIDs in its datastore); 0 turns the record off */
export const DEFAULT_MAX_COMPLETE_ROOTS = 64

/** How long a push server's Bloom of its store is used before the store is listed again, ms */
export const STORE_BLOOM_MAX_AGE_MS = 60_000

/**
 * How far ahead a peer may send on a stream whose direction towards this
 * node carries control frames only (a pull being served, a push being made):
 * yamux's first receive window, which otherwise grows to 16 MiB, and a
 * stream this node stops reading still takes in a whole window. The cost: a
 * status whose Bloom is larger than this (up to 1 MiB) arrives in a round
 * trip per window
 */
export const CONTROL_RECEIVE_WINDOW = 256 * 1024

/**
 * Receive window a node opens at once on a stream that brings it blocks (a
 * pull it makes, a push it accepted), in bytes, while the node's
 * `windowBytes` budget has room: yamux starts a stream at 256 KiB and
 * widens it only as data arrives, so a warm transfer of a little more than
 * that took an extra round trip
 */
export const BLOCKS_RECEIVE_WINDOW = 4 * 1024 * 1024

/**
 * A stream that brings blocks keeps its receive window at about this many
 * ms of the rate its bytes arrive at (see `FramedStream.paceReceiveWindow`):
 * what waits on the way to this node, and anything queued behind it on the
 * connection (libp2p's connection monitor's ping, which aborts the
 * connection after 5 s), waits about that long. Larger than any round trip
 * the window must cover, so a window that limits the rate still grows.
 */
export const PACED_WINDOW_MS = 1000

/** The least a paced receive window shrinks to, bytes (yamux's first window) */
export const PACED_WINDOW_MIN = 256 * 1024

/** How often a paced receive window measures the rate its bytes arrive at (ms) */
export const PACED_WINDOW_PERIOD_MS = 100

/**
 * Node-wide: bytes of receive window opened at once on streams that bring
 * blocks, beyond yamux's first 256 KiB, until they close (four streams at
 * `BLOCKS_RECEIVE_WINDOW`). A peer may send that far ahead of what the node
 * reads without being asked to, so it is bounded for the whole node
 */
export const DEFAULT_WINDOW_BYTES_BUDGET = 16 * 1024 * 1024

/** A CAR Pool provider that sends nothing for this long while it has blocks to send is dropped (ms) */
export const DEFAULT_POOL_STALL_TIMEOUT = 10_000

/**
 * Most providers a pull that names no peer pulls from at once, counting the
 * connected peers that speak CAR Mirror it adds to the `providers` given
 * (those given are all used)
 */
export const DEFAULT_POOL_MAX_PROVIDERS = 4
