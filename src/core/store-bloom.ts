import { BloomFilter, defaultFalsePositiveRate } from './bloom/bloom-filter.ts'
import { Yielder } from './budget.ts'
import { bloomItem } from './messages.ts'
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

  constructor (init: StoreBloomInit) {
    this.init = init
    this.yielder = init.yielder ?? new Yielder()
  }

  /** The store's Bloom, listing the store first when there is none or it is stale; undefined for a store too large */
  async get (signal?: AbortSignal): Promise<BloomFilter | undefined> {
    if (this.init.maxBytes <= 0 || this.init.blockstore.getAll == null) {
      return undefined
    }
    if (Date.now() - this.builtAt < this.init.maxAgeMs && (this.bloom == null || this.bloom.count <= this.capacity)) {
      return this.bloom
    }
    this.building ??= this.build(signal).finally(() => { this.building = undefined })
    return this.building
  }

  /** Records a block a session stored since the listing */
  add (cid: CID): void {
    this.bloom?.add(bloomItem(cid))
  }

  private async build (signal?: AbortSignal): Promise<BloomFilter | undefined> {
    const list = async (): Promise<BloomFilter | undefined> => {
      // headroom for as many blocks again as the store holds, so adds keep the false-positive rate
      const items: Uint8Array[] = []
      let fits = true
      for await (const { cid } of this.init.blockstore.getAll?.({ signal }) ?? []) {
        items.push(bloomItem(cid))
        if ((items.length % ITEMS_PER_CHECK) === 0) {
          if (!this.fits(items.length)) {
            fits = false
            break
          }
          await this.yielder.maybeYield(signal)
        }
      }
      // an empty store has nothing to skip: the usual greeting (a clear) says so in two bytes
      if (!fits || items.length === 0 || !this.fits(items.length)) {
        return undefined
      }
      const capacity = items.length * 2 + 64
      const bloom = BloomFilter.forCapacity(capacity)
      for (const item of items) {
        bloom.add(item)
      }
      this.capacity = capacity
      return bloom
    }
    this.bloom = await (this.init.walkBudget?.run(list, signal) ?? list())
    this.builtAt = Date.now()
    return this.bloom
  }

  /** Whether a Bloom for `count` blocks, with headroom, stays within `maxBytes` */
  private fits (count: number): boolean {
    const capacity = count * 2 + 64
    return BloomFilter.optimalSize(capacity, defaultFalsePositiveRate(capacity), { powerOfTwo: true }).byteLength <= this.init.maxBytes
  }
}
