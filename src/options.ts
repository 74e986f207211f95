/**
 * A node's options with every default filled in, resolved once when the node
 * is made: the rest of the glue reads `init.maxSessions`, never
 * `init.maxSessions ?? DEFAULT_MAX_SESSIONS`.
 */

import { DEFAULT_BLOOM_BYTES_BUDGET, DEFAULT_BUFFERED_BYTES_BUDGET, DEFAULT_EVICT_AFTER, DEFAULT_HELD_CIDS_BUDGET, DEFAULT_IDLE_TIMEOUT, DEFAULT_INDEXED_CIDS_BUDGET, DEFAULT_LARGE_FRAMES, DEFAULT_LOCAL_WALKS, DEFAULT_MAX_BLOCK_SIZE, DEFAULT_MAX_BLOOM_BYTES, DEFAULT_MAX_BLOOM_HASH_COUNT, DEFAULT_MAX_CHECK_BLOCKS, DEFAULT_MAX_CIDS_PER_MESSAGE, DEFAULT_MAX_COMPLETE_ROOTS, DEFAULT_MAX_EXPLORE_BLOCKS, DEFAULT_MAX_HINT_BLOCKS, DEFAULT_MAX_INBOUND_STREAMS, DEFAULT_MAX_LINKS_PER_BLOCK, DEFAULT_MAX_OUTBOUND_STREAMS, DEFAULT_MAX_ROOTS, DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_ADDRESS, DEFAULT_MAX_SESSIONS_PER_PEER, DEFAULT_MAX_STRAGGLER_ROUNDS, DEFAULT_MAX_UNREQUESTED_BLOCKS, DEFAULT_MAX_WANTS, DEFAULT_PENDING_WANTS_BUDGET, DEFAULT_QUEUED_WANTS_BUDGET, DEFAULT_READ_AHEAD, DEFAULT_READ_AHEAD_BYTES_BUDGET, DEFAULT_SMALL_STORE_BLOCKS, DEFAULT_STALL_TIMEOUT, DEFAULT_STORE_BLOOM_BYTES, DEFAULT_WINDOW_BYTES_BUDGET, PROTOCOL_ID } from './constants.ts'
import type { BudgetInit, CarMirrorInit } from './index.ts'

/** The options that are hooks or lists, or whose default depends on the call: no single default value stands in for them */
type Optional = 'allowPull' | 'allowPush' | 'pushQuota' | 'onSession' | 'codecs' | 'loadCodec' | 'hashers' | 'loadHasher' | 'coldCallBytes'

/** {@link CarMirrorInit} with every default filled in */
export type ResolvedCarMirrorInit = Required<Omit<CarMirrorInit, Optional | 'budgets'>> & Pick<CarMirrorInit, Optional> & {
  budgets: Required<BudgetInit>
}

/**
 * Fills in every default of `init` (the DEFAULT_* constants)
 *
 * @example
 *
 * ```ts
 * resolveCarMirrorInit({ maxSessions: 8 }).idleTimeout // DEFAULT_IDLE_TIMEOUT
 * ```
 */
export function resolveCarMirrorInit (init: CarMirrorInit = {}): ResolvedCarMirrorInit {
  const budgets = init.budgets ?? {}
  return {
    ...init,
    protocol: init.protocol ?? PROTOCOL_ID,
    maxRoots: init.maxRoots ?? DEFAULT_MAX_ROOTS,
    maxSessions: init.maxSessions ?? DEFAULT_MAX_SESSIONS,
    maxSessionsPerPeer: init.maxSessionsPerPeer ?? DEFAULT_MAX_SESSIONS_PER_PEER,
    maxSessionsPerAddress: init.maxSessionsPerAddress ?? DEFAULT_MAX_SESSIONS_PER_ADDRESS,
    stallTimeout: init.stallTimeout ?? DEFAULT_STALL_TIMEOUT,
    evictAfter: init.evictAfter ?? DEFAULT_EVICT_AFTER,
    maxCheckBlocks: init.maxCheckBlocks ?? DEFAULT_MAX_CHECK_BLOCKS,
    maxHintBlocks: init.maxHintBlocks ?? DEFAULT_MAX_HINT_BLOCKS,
    maxExploreBlocks: init.maxExploreBlocks ?? DEFAULT_MAX_EXPLORE_BLOCKS,
    maxWants: init.maxWants ?? DEFAULT_MAX_WANTS,
    maxLinksPerBlock: init.maxLinksPerBlock ?? DEFAULT_MAX_LINKS_PER_BLOCK,
    maxUnrequestedBlocks: init.maxUnrequestedBlocks ?? DEFAULT_MAX_UNREQUESTED_BLOCKS,
    maxStragglerRounds: init.maxStragglerRounds ?? DEFAULT_MAX_STRAGGLER_ROUNDS,
    maxBlockSize: init.maxBlockSize ?? DEFAULT_MAX_BLOCK_SIZE,
    maxBloomBytes: init.maxBloomBytes ?? DEFAULT_MAX_BLOOM_BYTES,
    maxBloomHashCount: init.maxBloomHashCount ?? DEFAULT_MAX_BLOOM_HASH_COUNT,
    maxCidsPerMessage: init.maxCidsPerMessage ?? DEFAULT_MAX_CIDS_PER_MESSAGE,
    smallStoreBlocks: init.smallStoreBlocks ?? DEFAULT_SMALL_STORE_BLOCKS,
    storeBloomBytes: init.storeBloomBytes ?? DEFAULT_STORE_BLOOM_BYTES,
    maxCompleteRoots: init.maxCompleteRoots ?? DEFAULT_MAX_COMPLETE_ROOTS,
    // unset: each push picks it by whether it has hints (see pushTo in car-mirror.ts)
    coldCallBytes: init.coldCallBytes,
    readAhead: init.readAhead ?? DEFAULT_READ_AHEAD,
    idleTimeout: init.idleTimeout ?? DEFAULT_IDLE_TIMEOUT,
    maxInboundStreams: init.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS,
    maxOutboundStreams: init.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS,
    runOnLimitedConnection: init.runOnLimitedConnection ?? false,
    broker: init.broker ?? true,
    budgets: {
      bufferedBytes: budgets.bufferedBytes ?? DEFAULT_BUFFERED_BYTES_BUDGET,
      bloomBytes: budgets.bloomBytes ?? DEFAULT_BLOOM_BYTES_BUDGET,
      queuedWants: budgets.queuedWants ?? DEFAULT_QUEUED_WANTS_BUDGET,
      readAheadBytes: budgets.readAheadBytes ?? DEFAULT_READ_AHEAD_BYTES_BUDGET,
      pendingWants: budgets.pendingWants ?? DEFAULT_PENDING_WANTS_BUDGET,
      indexedCids: budgets.indexedCids ?? DEFAULT_INDEXED_CIDS_BUDGET,
      heldCids: budgets.heldCids ?? DEFAULT_HELD_CIDS_BUDGET,
      localWalks: budgets.localWalks ?? DEFAULT_LOCAL_WALKS,
      largeFrames: budgets.largeFrames ?? DEFAULT_LARGE_FRAMES,
      windowBytes: budgets.windowBytes ?? DEFAULT_WINDOW_BYTES_BUDGET
    }
  }
}
