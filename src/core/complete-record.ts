import { CID } from 'multiformats/cid'
import { concat } from 'uint8arrays/concat'
import { Yielder } from './budget.ts'
import { cidKey } from './cid-key.ts'
import { bloomOfInSlices } from './messages.ts'
import type { BloomFilter } from './bloom/bloom-filter.ts'

/**
 * Where a `CompleteRecord` keeps its entries: string keys, byte values (a
 * Helia datastore fits, through a small adapter). `get` gives undefined for
 * a key it does not hold.
 */
export interface CompleteRecordStorage {
  /** The bytes stored under `key`, or undefined when there are none */
  get(key: string, options?: { signal?: AbortSignal }): Promise<Uint8Array | undefined>
  /** Stores `value` under `key`, replacing what was there */
  put(key: string, value: Uint8Array, options?: { signal?: AbortSignal }): Promise<void>
  /** Removes `key` and its bytes (nothing happens for a key not stored) */
  delete(key: string, options?: { signal?: AbortSignal }): Promise<void>
}

/** A `CompleteRecordStorage` in memory: the record lasts as long as the process */
export class MemoryRecordStorage implements CompleteRecordStorage {
  private readonly entries = new Map<string, Uint8Array>()

  /** The bytes stored under `key`, or undefined */
  async get (key: string): Promise<Uint8Array | undefined> {
    return this.entries.get(key)
  }

  /** Stores `value` under `key` */
  async put (key: string, value: Uint8Array): Promise<void> {
    this.entries.set(key, value)
  }

  /** Removes `key` */
  async delete (key: string): Promise<void> {
    this.entries.delete(key)
  }

  /** How many keys it holds (the index counts as one) */
  get size (): number {
    return this.entries.size
  }
}

/** How a {@link CompleteRecord} keeps its entries, and how many */
export interface CompleteRecordInit {
  /** Where entries are kept; default a `MemoryRecordStorage` */
  storage?: CompleteRecordStorage
  /** Roots kept; recording one more forgets the one recorded longest ago */
  maxRoots: number
  /** Most CIDs one root's entry may list: a larger DAG is not recorded */
  maxCids: number
  /**
   * Build the Bloom of a DAG (see `bloomUnder`) of at most this many bytes
   * as soon as it is recorded, in the background: the next transfer that
   * hints it then finds it ready. Default: built on first use only
   */
  eagerBloomBytes?: number
  /** Gives the event loop a turn while large entries are packed and unpacked; default a new Yielder */
  yielder?: Yielder
}

/** The key of the list of recorded roots, newest first */
export const COMPLETE_INDEX_KEY = '/car-mirror/complete'

/** The key of one root's entry: every CID of its DAG, packed */
export function completeEntryKey (root: CID): string {
  return `${COMPLETE_INDEX_KEY}/${root.toString()}`
}

/** A recorded DAG's list in memory, and the set of its CIDs' keys once a session asked for it */
interface CachedDag {
  cids: CID[]
  keys?: Promise<ReadonlySet<string>>
  /** Blooms of the list, by their largest size in bytes */
  blooms?: Map<number, Promise<BloomFilter>>
}

/** CIDs per turn-check while packing or unpacking an entry */
const CIDS_PER_CHECK = 1024

/**
 * A lasting record of DAGs this node holds whole: for each recorded root,
 * the CIDs of every block under it. A session given a recorded root as a
 * hint trusts its subgraph instead of walking it again, which is most of the
 * local work of a warm transfer (the spec's cross-session state, §4).
 *
 * Correct only while no block under a recorded root is deleted: `forget`
 * clears the whole record, and must be called whenever blocks are deleted
 * (CarMirror does so for deletes through Helia's blockstore and `gc`). A
 * recording that began before a `forget` is dropped (see `generation`).
 * Bounded: `maxRoots` entries of at most `maxCids` CIDs each.
 *
 * @example
 *
 * ```ts
 * const record = new CompleteRecord({ maxRoots: 64, maxCids: 100_000 })
 * const generation = record.generation
 * // ... a session finds every block under root held, listing them in cids
 * await record.record(root, cids, { generation })
 * await record.cidsUnder(root) // cids, without a walk
 * record.forget() // a block was deleted
 * ```
 */
export class CompleteRecord {
  private readonly storage: CompleteRecordStorage
  private readonly maxRoots: number
  private readonly maxCids: number
  private readonly yielder: Yielder
  private readonly eagerBloomBytes?: number
  /** Recorded roots that lookups trust, newest first, once read from storage (empty after a forget) */
  private index?: CID[]
  /** The roots the stored index names, as last read or written: a forget deletes their entries */
  private stored?: CID[]
  private forgotten = 0
  /** Changes to storage, one at a time */
  private queue: Promise<unknown> = Promise.resolve()
  /**
   * Entries read or written lately, oldest first, at most `maxCids` CIDs in
   * all (with their keys' sets, once asked for): sessions that hint the same
   * root share one list and one set
   */
  private readonly cached = new Map<string, CachedDag>()
  private cachedCids = 0
  /** Entries read from storage one at a time, so lookups of many roots at once hold at most one list besides the cache */
  private reads: Promise<unknown> = Promise.resolve()
  /** Reads under way, by root: lookups of the same root wait for one */
  private readonly reading = new Map<string, Promise<CID[] | undefined>>()

  constructor (init: CompleteRecordInit) {
    this.storage = init.storage ?? new MemoryRecordStorage()
    this.maxRoots = Math.max(0, init.maxRoots)
    this.maxCids = Math.max(0, init.maxCids)
    this.yielder = init.yielder ?? new Yielder()
    this.eagerBloomBytes = init.eagerBloomBytes
  }

  /**
   * Grows by one on each `forget`: read it before a walk or a session whose
   * result will be recorded, and pass it to `record`, so that a block deleted
   * meanwhile drops the recording
   */
  get generation (): number {
    return this.forgotten
  }

  /**
   * Every CID of the DAG under `root` when it is recorded whole (the root
   * first), otherwise undefined. The list is shared with other callers:
   * do not change it.
   */
  async cidsUnder (root: CID, options: { signal?: AbortSignal } = {}): Promise<readonly CID[] | undefined> {
    if (this.maxRoots === 0) {
      return undefined
    }
    const generation = this.forgotten
    // recordings and forgets asked for before this lookup come first
    await this.queue
    const index = await this.loadIndex(options)
    if (!index.some(cid => cid.equals(root))) {
      return undefined
    }
    const key = root.toString()
    const cached = this.cached.get(key)
    if (cached != null) {
      return cached.cids
    }
    let read = this.reading.get(key)
    if (read == null) {
      read = this.readEntry(root, options).finally(() => { this.reading.delete(key) })
      this.reading.set(key, read)
    }
    const cids = await read
    return generation === this.forgotten ? cids : undefined
  }

  /**
   * The `cidKey`s of every CID under `root` when it is recorded whole,
   * otherwise undefined: one set shared by every session that trusts the DAG
   * (see ReceiverFrontier.trustWholeSet), built on the first call
   */
  async keysUnder (root: CID, options: { signal?: AbortSignal } = {}): Promise<ReadonlySet<string> | undefined> {
    // built once for every caller: no one caller's abort may end it
    return this.sharedUnder(root, options, cached => {
      cached.keys ??= this.keysOf(cached.cids, {})
      return cached.keys
    })
  }

  /**
   * A Bloom of every CID under `root` when it is recorded whole, built as
   * `bloomOfInSlices(cids, maxBytes)` would on the first call and then shared
   * (do not add to it); otherwise undefined
   */
  async bloomUnder (root: CID, maxBytes: number, options: { signal?: AbortSignal } = {}): Promise<BloomFilter | undefined> {
    // built once for every caller: no one caller's abort may end it
    return this.sharedUnder(root, options, cached => {
      cached.blooms ??= new Map()
      let bloom = cached.blooms.get(maxBytes)
      if (bloom == null) {
        bloom = bloomOfInSlices(cached.cids, maxBytes, { yielder: this.yielder })
        cached.blooms.set(maxBytes, bloom)
      }
      return bloom
    })
  }

  /**
   * What `build` makes of the cached entry of `root` (kept on the entry, so
   * built once), when `root` is recorded whole and not forgotten meanwhile;
   * otherwise undefined
   */
  private async sharedUnder<T> (root: CID, options: { signal?: AbortSignal }, build: (cached: CachedDag) => Promise<T>): Promise<T | undefined> {
    const generation = this.forgotten
    const cids = await this.cidsUnder(root, options)
    const cached = this.cached.get(root.toString())
    if (cids == null || cached == null || cached.cids !== cids) {
      return undefined
    }
    const built = await build(cached)
    return generation === this.forgotten ? built : undefined
  }

  private async keysOf (cids: readonly CID[], options: { signal?: AbortSignal }): Promise<ReadonlySet<string>> {
    const keys = new Set<string>()
    for (let i = 0; i < cids.length; i++) {
      if ((i % CIDS_PER_CHECK) === CIDS_PER_CHECK - 1) {
        await this.yielder.maybeYield(options.signal)
      }
      keys.add(cidKey(cids[i]))
    }
    return keys
  }

  private async readEntry (root: CID, options: { signal?: AbortSignal }): Promise<CID[] | undefined> {
    const generation = this.forgotten
    const read = this.reads.then(async () => {
      const packed = await this.storage.get(completeEntryKey(root), options)
      if (packed == null || generation !== this.forgotten) {
        return undefined
      }
      const cids = await this.unpack(packed, options)
      if (cids == null || cids.length > this.maxCids || generation !== this.forgotten || !cids[0]?.equals(root)) {
        // a damaged entry (or one larger than this node keeps), or forgotten meanwhile: the caller walks instead
        return undefined
      }
      this.cache(root, cids)
      return cids
    })
    this.reads = read.catch(() => {})
    return read
  }

  /** Keeps `cids` as the newest cached entry, dropping the oldest past `maxCids` CIDs in all */
  private cache (root: CID, cids: CID[]): void {
    const key = root.toString()
    this.uncache(key)
    this.cached.set(key, { cids })
    this.cachedCids += cids.length
    for (const oldest of this.cached.keys()) {
      if (this.cachedCids <= this.maxCids || oldest === key) {
        break
      }
      this.uncache(oldest)
    }
  }

  private uncache (key: string): void {
    const old = this.cached.get(key)
    if (old != null) {
      this.cached.delete(key)
      this.cachedCids -= old.cids.length
    }
  }

  /**
   * Records that every block under `root` is held: `cids` lists each of them
   * (identity CIDs may be left out), or is a function that lists them, called
   * in turn. Lookups made after this call wait for it. Skipped, returning
   * false, when it began before a `forget` (`generation` is older) or the DAG
   * is larger than `maxCids`.
   */
  async record (root: CID, cids: CID[] | (() => Promise<CID[]>), options: { generation: number, signal?: AbortSignal }): Promise<boolean> {
    if (this.maxRoots === 0 || options.generation !== this.forgotten) {
      return false
    }
    // queued at once, before any await: a lookup made after this call finds it
    return this.serially(async () => {
      const given = typeof cids === 'function' ? await cids() : cids
      if (given.length + 1 > this.maxCids || options.generation !== this.forgotten) {
        return false
      }
      const list = [root, ...given.filter(cid => !cid.equals(root))]
      const packed = await this.pack(list, options)
      const stored = await this.storedIndex(options)
      if (options.generation !== this.forgotten) {
        return false
      }
      // the entry before the index that names it: the index never names an entry that is not there
      await this.storage.put(completeEntryKey(root), packed, options)
      const next = [root, ...stored.filter(cid => !cid.equals(root))]
      const evicted = next.splice(this.maxRoots)
      await this.storage.put(COMPLETE_INDEX_KEY, concat(next.map(cid => cid.bytes)), options)
      // known to a forget asked for meanwhile, which runs next and deletes it
      this.stored = next
      for (const old of evicted) {
        this.uncache(old.toString())
        await this.storage.delete(completeEntryKey(old), options)
      }
      if (options.generation !== this.forgotten) {
        return false
      }
      this.index = next
      this.cache(root, list)
      if (this.eagerBloomBytes != null) {
        // a Bloom being built is cached at once: the next lookup waits for it rather than building another
        this.bloomUnder(root, this.eagerBloomBytes).catch(() => {})
      }
      return true
    })
  }

  /**
   * Forgets every recorded DAG, at once for later lookups (the stored
   * entries are deleted in the background: the returned promise settles
   * then). Call it when blocks may have been deleted.
   */
  async forget (): Promise<void> {
    this.forgotten++
    this.cached.clear()
    this.cachedCids = 0
    this.index = []
    // after every recording asked for before it: it deletes what they stored
    await this.serially(async () => {
      const stored = await this.storedIndex()
      if (stored.length === 0) {
        return
      }
      await this.storage.put(COMPLETE_INDEX_KEY, new Uint8Array(0))
      this.stored = []
      for (const root of stored) {
        await this.storage.delete(completeEntryKey(root))
      }
    })
  }

  /** The recorded roots, newest first */
  async roots (options: { signal?: AbortSignal } = {}): Promise<CID[]> {
    return [...await this.loadIndex(options)]
  }

  private async serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn)
    this.queue = run.catch(() => {})
    return run
  }

  private async loadIndex (options: { signal?: AbortSignal }): Promise<CID[]> {
    if (this.index == null) {
      const generation = this.forgotten
      const stored = await this.storedIndex(options)
      // a forget meanwhile has set the index already
      if (this.index == null && generation === this.forgotten) {
        this.index = stored.slice(0, this.maxRoots)
      }
    }
    return this.index ?? []
  }

  /** The roots the stored index names, read from storage the first time */
  private async storedIndex (options: { signal?: AbortSignal } = {}): Promise<CID[]> {
    if (this.stored == null) {
      const packed = await this.storage.get(COMPLETE_INDEX_KEY, options)
      const read = packed == null ? [] : await this.unpack(packed, options) ?? []
      // a write meanwhile knows better
      this.stored ??= read
    }
    return this.stored
  }

  private async pack (cids: CID[], options: { signal?: AbortSignal }): Promise<Uint8Array> {
    let length = 0
    for (const cid of cids) {
      length += cid.bytes.byteLength
    }
    const packed = new Uint8Array(length)
    let offset = 0
    for (let i = 0; i < cids.length; i++) {
      if ((i % CIDS_PER_CHECK) === CIDS_PER_CHECK - 1) {
        await this.yielder.maybeYield(options.signal)
      }
      packed.set(cids[i].bytes, offset)
      offset += cids[i].bytes.byteLength
    }
    return packed
  }

  /** The CIDs packed one after another, or undefined when the bytes are not that */
  private async unpack (packed: Uint8Array, options: { signal?: AbortSignal }): Promise<CID[] | undefined> {
    const cids: CID[] = []
    let rest = packed
    try {
      while (rest.byteLength > 0) {
        if ((cids.length % CIDS_PER_CHECK) === CIDS_PER_CHECK - 1) {
          await this.yielder.maybeYield(options.signal)
        }
        const [cid, remainder] = CID.decodeFirst(rest)
        cids.push(cid)
        rest = remainder
      }
    } catch (err) {
      options.signal?.throwIfAborted()
      return undefined
    }
    return cids
  }
}
