import { BloomFilter, defaultFalsePositiveRate } from './bloom/bloom-filter.ts'
import { Yielder } from './budget.ts'
import { bloomItem } from './messages.ts'
import { untilAborted } from './signal.ts'
import type { Budget } from './budget.ts'
import type { Blockstore } from 'interface-blockstore'
import type { CID } from 'multiformats/cid'

export interface StoreBloomInit {
  /** The store to list; without `getAll` there is never a Bloom */
  blockstore: Partial<Pick<Blockstore, 'getAll'>>
  /** Largest Bloom kept, bytes: a store that needs a larger one gets none. 0 turns the cache off */
  maxBytes: number
  /** A Bloom older than this is built again from the store, ms */
  maxAgeMs: number
  /** Node-wide concurrency of local walks: listing the store holds one unit */
  walkBudget?: Budget
  yielder?: Yielder
}

/** Most blocks stored while a listing runs that it keeps to add to its Bloom */
const MAX_STORED_WHILE_LISTING = 100_000

/** Most blocks listed per turn-check while listing the store */
const ITEMS_PER_CHECK = 256

/**
 * A Bloom filter of every block in a small store, listed at most once per
 * `maxAgeMs` and kept up to date with the blocks sessions store meanwhile
 * (`add`). A push server sends it as its greeting when the push names no
 * hints, so a client that does not know what the server holds still skips
 * it. Blocks written by other means, or deleted, since the listing cost at
 * most a resent block or a straggler round, never a missing block. A store
 * too large for `maxBytes` gets no Bloom; finding that out lists at most as
 * many blocks as fit.
 *
 * @example
 *
 * ```ts
 * const cache = new StoreBloom({ blockstore, maxBytes: 64 * 1024, maxAgeMs: 60_000 })
 * const bloom = await cache.get() // undefined for a large store
 * cache.add(cid) // a session stored a block
 * ```
 */
export class StoreBloom {
  private readonly init: StoreBloomInit
  private readonly yielder: Yielder
  private bloom?: BloomFilter
  /** Items the current Bloom was sized for; past them it is built again */
  private capacity = 0
  private builtAt = -Infinity
  private building?: Promise<BloomFilter | undefined>
  /** Blocks stored while a listing runs: it may have passed them */
  private storedWhileListing?: Uint8Array[]

  constructor (init: StoreBloomInit) {
    this.init = init
    this.yielder = init.yielder ?? new Yielder()
  }

  /**
   * The store's Bloom; undefined for a store too large. The first call lists
   * the store; later ones get the Bloom at once, and when it is stale (older
   * than `maxAgeMs`, or holding more blocks than it was sized for) a new
   * listing runs in the background and replaces it once done. A listing is
   * shared by every caller: `signal` ends only this caller's wait.
   */
  async get (signal?: AbortSignal): Promise<BloomFilter | undefined> {
    if (this.init.maxBytes <= 0 || this.init.blockstore.getAll == null) {
      return undefined
    }
    if (Date.now() - this.builtAt < this.init.maxAgeMs && (this.bloom == null || this.bloom.count <= this.capacity)) {
      return this.current()
    }
    const listed = this.builtAt > -Infinity
    this.building ??= this.build().finally(() => { this.building = undefined })
    if (listed) {
      // stale but still right (a block written by other means or deleted since costs a resent block or a straggler round)
      this.building.catch(() => {})
      return this.current()
    }
    await untilAborted(this.building, signal)
    return this.current()
  }

  /** The Bloom, unless it holds nothing: an empty store has nothing to skip (the usual greeting, a clear, says so in two bytes) */
  private current (): BloomFilter | undefined {
    return this.bloom?.count === 0 ? undefined : this.bloom
  }

  /** Lists the store in the background, so the first `get` finds the Bloom ready */
  warm (): void {
    this.get().catch(() => {})
  }

  /** Records a block stored since the listing (or during it) */
  add (cid: CID): void {
    this.bloom?.add(bloomItem(cid))
    if (this.storedWhileListing != null && this.storedWhileListing.length <= MAX_STORED_WHILE_LISTING) {
      // one past the most: the listing is given up (it is tried again after maxAgeMs)
      this.storedWhileListing.push(bloomItem(cid))
    }
  }

  /** Lists the store: no caller's signal ends it, since every caller shares it */
  private async build (): Promise<BloomFilter | undefined> {
    const list = async (): Promise<BloomFilter | undefined> => {
      const items: Uint8Array[] = []
      this.storedWhileListing = []
      let fits = true
      for await (const { cid } of this.init.blockstore.getAll?.() ?? []) {
        items.push(bloomItem(cid))
        if ((items.length % ITEMS_PER_CHECK) === 0) {
          if (!this.fits(items.length)) {
            fits = false
            break
          }
          await this.yielder.maybeYield()
        }
      }
      if (this.storedWhileListing.length > MAX_STORED_WHILE_LISTING) {
        fits = false
      }
      for (const item of this.storedWhileListing.splice(0)) {
        items.push(item)
      }
      // an empty store gets a small Bloom all the same, for the blocks stored next
      if (!fits || !this.fits(items.length)) {
        return undefined
      }
      const capacity = storeBloomCapacity(items.length)
      const bloom = BloomFilter.forCapacity(capacity)
      for (const item of items) {
        bloom.add(item)
      }
      this.capacity = capacity
      return bloom
    }
    try {
      this.bloom = await (this.init.walkBudget?.run(list) ?? list())
    } finally {
      this.storedWhileListing = undefined
      // a listing that failed is not tried again before maxAgeMs
      this.builtAt = Date.now()
    }
    return this.bloom
  }

  /** Whether a Bloom for `count` blocks, with headroom, stays within `maxBytes` */
  private fits (count: number): boolean {
    return storeBloomBytesFor(count) <= this.init.maxBytes
  }
}

/**
 * The bytes of a `StoreBloom` of a store of `blocks` blocks (sized with
 * headroom for as many again)
 *
 * @example
 *
 * ```ts
 * new StoreBloom({ blockstore, maxBytes: storeBloomBytesFor(100_000), maxAgeMs: 60_000 })
 * ```
 */
export function storeBloomBytesFor (blocks: number): number {
  if (blocks <= 0) {
    return 0
  }
  const capacity = storeBloomCapacity(blocks)
  return BloomFilter.optimalSize(capacity, defaultFalsePositiveRate(capacity), { powerOfTwo: true }).byteLength
}

/** Items a store Bloom is sized for: headroom for as many blocks again as the store holds, so adds keep the false-positive rate */
function storeBloomCapacity (blocks: number): number {
  return blocks * 2 + 64
}
