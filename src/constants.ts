/** The libp2p protocol id of streaming CAR Mirror */
export const PROTOCOL_ID = '/car-mirror/stream/1.0.0'

/** Largest block accepted or sent (bytes): 2 MiB, above the usual 1 MiB chunk limit */
export const DEFAULT_MAX_BLOCK_SIZE = 2 * 1024 * 1024

/** Largest Bloom filter accepted (bytes); a store of a million CIDs needs 4 MiB */
export const DEFAULT_MAX_BLOOM_BYTES = 8 * 1024 * 1024

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
 * Block bytes a pushing client sends before the server's first status: enough
 * to fill about one round trip of a fast link, so a warm push resends little
 * that the server already holds
 */
export const DEFAULT_COLD_CALL_BYTES = 1024 * 1024

/** Most roots one session may name */
export const DEFAULT_MAX_ROOTS = 1000

/** Most wants a sender keeps queued from status frames */
export const DEFAULT_MAX_QUEUED_WANTS = 100_000

/** Most concurrent sessions a node serves, in total */
export const DEFAULT_MAX_SESSIONS = 256

/** Most concurrent sessions a node serves for one peer */
export const DEFAULT_MAX_SESSIONS_PER_PEER = 32

/** Most block bytes one push session may write into the store, unless `pushQuota` says otherwise (1 GiB) */
export const DEFAULT_MAX_PUSH_BYTES = 1024 * 1024 * 1024

/** Most blocks a receiver tolerates that the session never asked for before it ends the session */
export const DEFAULT_MAX_UNREQUESTED_BLOCKS = 16

/** Most straggler rounds in one session; honest sessions need a handful (at most about the DAG's depth) */
export const DEFAULT_MAX_STRAGGLER_ROUNDS = 100

/** How long a client remembers an interrupted push, to resume it without a cold call (ms) */
export const RESUME_MEMORY_MS = 10 * 60_000
