import * as raw from 'multiformats/codecs/raw'
import { BlockNotFoundError, LimitExceededError } from '../errors.ts'
import { hasBlock, readBlock } from './blocks.ts'
import { Yielder } from './budget.ts'
import { cidKey, cidOfKey } from './cid-key.ts'
import { LinkReader } from './links.ts'
import type { BlockReadOptions, BlockSource } from './blocks.ts'
import type { Budget } from './budget.ts'
import type { CID } from 'multiformats/cid'

/** One block reached by a walk */
export interface WalkedBlock {
  /** The block's CID */
  cid: CID
  /** The block's data, as read from the store */
  bytes: Uint8Array
  /** The block's links in codec order, identity CIDs included */
  links: CID[]
  /** 0 for a root, 1 for its children, and so on (the first path found) */
  depth: number
}

/**
 * The order a walk visits blocks in: `breadth-first` (level by level) or
 * `preorder` (depth first, each block before its children, links in codec order)
 */
export type WalkOrder = 'breadth-first' | 'preorder'

export interface WalkOptions extends BlockReadOptions {
  /** Visit order; default 'breadth-first' */
  order?: WalkOrder

  /**
   * Asked just before a block is read. Returning true skips the block and
   * everything below it that is not reachable another way (the sender's
   * Bloom check). Asked again at visit time, so it may change its mind while
   * the walk runs. `key` is the CID's `cidKey`, made once by the walk.
   */
  skip?(cid: CID, depth: number, key: string): boolean

  /**
   * Called for a block the store does not hold; the walk then goes on without
   * it. Without this callback a missing block throws BlockNotFoundError.
   */
  onMissing?(cid: CID, depth: number): void

  /** Reads links; default a LinkReader with the built-in codecs */
  linkReader?: LinkReader

  /** How many block reads may be in flight ahead of the walk; default 8 */
  readAhead?: number

  /** Called with the links of every block read, identity blocks included */
  onLinks?(cid: CID, links: CID[]): void | Promise<void>

  /**
   * Asked once a block has been read, before its links are queued: returning
   * false drops the block and everything below it that is not reachable
   * another way. It may wait (a sender waiting for the receiver's Bloom).
   */
  admit?(cid: CID, depth: number, size: number): boolean | Promise<boolean>

  /**
   * Stop reading ahead while this many bytes of blocks that were read ahead
   * wait for the consumer; default no limit
   */
  maxReadAheadBytes?: number

  /** A node-wide count of CIDs held by walks: each CID the walk queues is charged to it */
  indexBudget?: Budget
  /** A node-wide budget that read-ahead bytes are charged to; no read ahead starts while it is used up */
  readAheadBudget?: Budget

  /** Most blocks the walk reads before it fails with LimitExceededError; default no limit */
  maxBlocks?: number

  /** Gives the event loop a turn during long walks; default a new Yielder (10 ms slices) */
  yielder?: Yielder
}

interface Pending {
  /** The CID as a compact key; `cid` is decoded from it when the walk gets near it */
  key: string
  cid?: CID
  depth: number
  read?: Promise<Uint8Array | undefined>
  /** Bytes charged to the read-ahead budgets once the read finished */
  charged?: number
  /** Set once the walk took or dropped the item: a read finishing later charges nothing */
  settled?: boolean
}

/**
 * Walks a DAG in a blockstore from one or more roots, yielding each reachable
 * block once. Identity CIDs are not yielded (their data is inline and never
 * sent) but their links are followed. Blocks are read ahead of the consumer,
 * in walk order.
 *
 * @example
 *
 * ```ts
 * for await (const block of walkDag(blockstore, [root], { skip: cid => bloom.hasCid(cid) })) {
 *   send(block.cid, block.bytes)
 * }
 * ```
 */
export async function * walkDag (store: BlockSource, roots: CID[], options: WalkOptions = {}): AsyncGenerator<WalkedBlock, void, undefined> {
  yield * walk(store, roots, options, false)
}

/**
 * Walks like {@link walkDag} but yields only the CIDs of held blocks, and
 * checks raw leaves with `has` instead of reading them: the cheap way to list
 * what a store holds of a DAG (for a Bloom filter).
 *
 * @example
 *
 * ```ts
 * for await (const cid of walkHeldCids(blockstore, [previousRoot], { onMissing: () => {} })) {
 *   bloom.add(bloomItem(cid))
 * }
 * ```
 */
export async function * walkHeldCids (store: BlockSource, roots: CID[], options: WalkOptions = {}): AsyncGenerator<CID, void, undefined> {
  for await (const block of walk(store, roots, options, true)) {
    yield block.cid
  }
}

/** A raw leaf that `has` found: links are empty, so no bytes are needed */
const HELD_LEAF = new Uint8Array(0)

async function hasLeaf (store: BlockSource, cid: CID, options: BlockReadOptions): Promise<Uint8Array> {
  if (await hasBlock(store, cid, options)) {
    return HELD_LEAF
  }
  throw new BlockNotFoundError(`Block ${cid} is not in the blockstore`)
}

/**
 * What a read in flight is charged at least (bytes): the usual largest
 * block (UnixFS's chunk size), so reads in flight overshoot a budget by at
 * most twice (blocks are at most 2 MiB) even before the walk has seen one.
 */
const MIN_SIZE_GUESS = 1024 * 1024

async function * walk (store: BlockSource, roots: CID[], options: WalkOptions, leafCheck: boolean): AsyncGenerator<WalkedBlock, void, undefined> {
  const order = options.order ?? 'breadth-first'
  const readAhead = Math.max(1, options.readAhead ?? 8)
  const linkReader = options.linkReader ?? new LinkReader()
  const yielder = options.yielder ?? new Yielder()
  const maxReadAheadBytes = options.maxReadAheadBytes ?? Infinity
  const maxBlocks = options.maxBlocks ?? Infinity
  let readAheadBytes = 0
  let blocksRead = 0
  const seen = new Set<string>()
  // breadth-first takes from the front of `next` (at `head`), preorder from the back
  const next: Pending[] = []
  let head = 0

  // breadth-first marks a block seen when it is queued; preorder when it is
  // visited, so a block shared by two parents comes right after the first
  // queued blocks are held as keys, not CIDs: a CID decoded from a block is a
  // view into it and would keep the whole parent block in memory
  const enqueue = async (cids: CID[], depth: number): Promise<void> => {
    const fresh: Pending[] = []
    for (let i = 0; i < cids.length; i++) {
      if ((i & 0x3ff) === 0x3ff) {
        await yielder.maybeYield(options.signal)
      }
      const cid = cids[i]
      const key = cidKey(cid)
      if (!seen.has(key)) {
        if (order === 'breadth-first') {
          seen.add(key)
        }
        fresh.push({ key, depth })
      }
    }
    index(fresh.length)
    for (const item of order === 'preorder' ? fresh.reverse() : fresh) {
      next.push(item)
    }
  }

  // every CID the walk holds (queued, or seen in preorder) is charged to the node's index budget
  let indexed = 0
  const index = (count: number): void => {
    options.indexBudget?.charge(count)
    indexed += count
  }

  // a read in flight is charged the size of the largest block seen so far
  // (at least MIN_SIZE_GUESS), then its real size once it is read
  let sizeGuess = MIN_SIZE_GUESS
  const charge = (item: Pending, bytes: number): void => {
    uncharge(item)
    item.settled = false
    item.charged = bytes
    readAheadBytes += bytes
    options.readAheadBudget?.force(bytes)
  }

  const read = (item: Pending): Promise<Uint8Array | undefined> => {
    if (item.read == null) {
      charge(item, sizeGuess)
    }
    item.read ??= (leafCheck && cidOf(item).code === raw.code ? hasLeaf(store, cidOf(item), options) : readBlock(store, cidOf(item), options)).then(bytes => {
      sizeGuess = Math.max(sizeGuess, bytes.byteLength)
      // until the walk takes it, a block read ahead is held here
      if (item.settled !== true) {
        charge(item, bytes.byteLength)
      }
      return bytes
    }, err => {
      uncharge(item)
      if ((err as Error).name === BlockNotFoundError.name && options.onMissing != null) {
        return undefined
      }
      throw err
    })
    return item.read
  }

  function uncharge (item: Pending): void {
    item.settled = true
    if (item.charged != null) {
      readAheadBytes -= item.charged
      options.readAheadBudget?.release(item.charged)
      item.charged = undefined
    }
  }

  const startReads = (): void => {
    const count = Math.min(readAhead, next.length - head)
    for (let i = 0; i < count; i++) {
      const budget = options.readAheadBudget
      if (readAheadBytes + sizeGuess > maxReadAheadBytes || (budget != null && budget.used + sizeGuess > budget.limit)) {
        return
      }
      const item = order === 'preorder' ? next[next.length - 1 - i] : next[head + i]
      if (item.read == null && options.skip?.(cidOf(item), item.depth, item.key) !== true) {
        // a failed read ahead is reported when the walk reaches the block
        read(item).catch(() => {})
      }
    }
  }

  // blocks read ahead that the walk never takes (it ended early) give their bytes back
  const releaseAll = (): void => {
    for (let i = head; i < next.length; i++) {
      uncharge(next[i])
    }
  }

  await enqueue(roots, 0)

  const take = (): Pending => {
    if (order === 'preorder') {
      return next.pop() as Pending
    }
    const item = next[head++]
    if (head > 1024 && head * 2 > next.length) {
      next.splice(0, head)
      head = 0
    }
    return item
  }

  /** The block taken last: charged until the consumer takes the next */
  let current: Pending | undefined
  try {
    while (next.length > head) {
      options.signal?.throwIfAborted()
      if (yielder.due) {
        await yielder.maybeYield(options.signal)
      }
      const item = take()
      if (order === 'preorder') {
        const key = item.key
        if (seen.has(key)) {
          uncharge(item)
          continue
        }
        seen.add(key)
        index(1)
      }

      if (options.skip?.(cidOf(item), item.depth, item.key) === true) {
        uncharge(item)
        continue
      }

      startReads()
      // the block stays charged until the consumer asks for the next one
      // (a sender: until it has been written to the stream)
      current = item
      const bytes = await read(item)
      if (bytes == null) {
        uncharge(item)
        options.onMissing?.(cidOf(item), item.depth)
        continue
      }
      if (++blocksRead > maxBlocks) {
        throw new LimitExceededError(`The walk read more than ${maxBlocks} blocks`)
      }
      if (options.admit != null && !await options.admit(cidOf(item), item.depth, bytes.byteLength)) {
        uncharge(item)
        continue
      }

      const links = await linkReader.links(cidOf(item), bytes)
      await options.onLinks?.(cidOf(item), links)
      await enqueue(links, item.depth + 1)

      if (LinkReader.inlineBytes(cidOf(item)) == null) {
        yield { cid: cidOf(item), bytes, links, depth: item.depth }
      }
      uncharge(item)
    }
  } finally {
    if (current != null) {
      uncharge(current)
    }
    releaseAll()
    options.indexBudget?.release(indexed)
  }
}

function cidOf (item: Pending): CID {
  item.cid ??= cidOfKey(item.key)
  return item.cid
}
