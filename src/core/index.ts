/**
 * @packageDocumentation
 *
 * The transport-free building blocks of CAR Mirror, for people writing their
 * own transport or tools: the message codec, the sender and receiver session
 * state machines, the receiver's have/want frontier, DAG walks and link
 * readers, block verification and the fetch planner. Most users need only the
 * root export (`withCarMirror`, `createCarMirror`, the broker, the errors and
 * `BloomFilter`); what is here may change between minor versions more often.
 *
 * @example Walk a DAG held in a blockstore
 *
 * ```ts
 * import { walkDag } from 'helia-car-mirror/core'
 *
 * let bytes = 0
 * for await (const block of walkDag(helia.blockstore, [root])) {
 *   bytes += block.bytes.byteLength
 * }
 * ```
 *
 * @example Encode and decode a message frame body
 *
 * ```ts
 * import { decodeMessage, encodeMessage } from 'helia-car-mirror/core'
 *
 * const [body] = encodeMessage({ type: 'keepalive' })
 * decodeMessage(body) // { type: 'keepalive' }
 * ```
 */

export { encodeMessage, decodeMessage, bloomItem } from './messages.ts'
export type { Message, MessageLimits, ErrorCode, PullMessage, PushMessage, HeaderMessage, BlockMessage, StatusMessage, IdleMessage, SyncMessage, DoneMessage, MissingMessage, KeepaliveMessage, ErrorMessage } from './messages.ts'
export { SenderSession } from './sender.ts'
export type { SenderSessionInit, SenderBudgets, SenderCounters } from './sender.ts'
export { ReceiverSession } from './receiver.ts'
export type { ReceiverSessionInit, ReceiverCounters, ReceiverStep } from './receiver.ts'
export { BloomFilter, InvalidBloomError, MAX_BLOOM_BYTES, MAX_HASH_COUNT, defaultFalsePositiveRate } from './bloom/bloom-filter.ts'
export type { BloomSize, OptimalSizeOptions, HasBytes } from './bloom/bloom-filter.ts'
export { Budget, BudgetShare, Yielder } from './budget.ts'
export { Wakeup } from './signal.ts'
export { readBlock, hasBlock } from './blocks.ts'
export type { BlockSource, BlockSink, BlockReadOptions } from './blocks.ts'
export { LinkReader, BUILT_IN_CODECS } from './links.ts'
export type { BlockDecoder, LoadCodec, LinkReaderInit } from './links.ts'
export { BlockVerifier, BUILT_IN_HASHERS, BLAKE3_CODE, blake3 } from './verify.ts'
export type { BlockVerifierInit, LoadHasher } from './verify.ts'
export { walkDag } from './walk.ts'
export type { WalkedBlock, WalkOptions, WalkOrder } from './walk.ts'
export { ReceiverFrontier } from './frontier.ts'
export type { ReceiveOutcome, ReceiverFrontierInit } from './frontier.ts'
export { FetchPlanner, blockKind } from './fetch-plan.ts'
export type { FetchPlan, FetchPlannerInit, BlockKind } from './fetch-plan.ts'
export { Shard, bucketOf, MAX_SHARD_BUCKETS } from './pool/shard.ts'
export { ShardPlanner, DEFAULT_POOL_BUCKETS } from './pool/shard-planner.ts'
export type { ShardPlannerInit, BucketMove, BucketBacklog } from './pool/shard-planner.ts'
export { PoolReceiver, PoolMember } from './pool/pool-receiver.ts'
export type { PoolReceiverInit, PoolProviderState } from './pool/pool-receiver.ts'
export { CompleteRecord, MemoryRecordStorage, COMPLETE_INDEX_KEY, completeEntryKey } from './complete-record.ts'
export type { CompleteRecordInit, CompleteRecordStorage } from './complete-record.ts'
