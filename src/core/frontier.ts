import * as raw from 'multiformats/codecs/raw'
import { DEFAULT_MAX_MISSING, HELD_WAIT_MS } from '../constants.ts'
import { BlocksNotAvailableError, BlockstoreError, LimitExceededError } from '../errors.ts'
import { hasBlock, readBlock } from './blocks.ts'
import { Yielder } from './budget.ts'
import { cidKey } from './cid-key.ts'
import { LinkReader } from './links.ts'
import { BlockVerifier } from './verify.ts'
import type { BlockReadOptions, BlockSink } from './blocks.ts'
import type { Budget } from './budget.ts'
import type { CID } from 'multiformats/cid'

/** The dag-cbor codec, whose links are CBOR tag 42 */
const DAG_CBOR_CODE = 0x71

/**
 * An upper bound on the links of a dag-cbor block: the times the bytes of
 * tag 42 (`d8 2a`) appear, counted up to `stopAfter + 1`
 */
function countLinkTags (bytes: Uint8Array, stopAfter: number): number {
  let count = 0
  for (let i = bytes.indexOf(0xd8); i >= 0 && i < bytes.byteLength - 1; i = bytes.indexOf(0xd8, i + 1)) {
    if (bytes[i + 1] === 0x2a && ++count > stopAfter) {
      break
    }
  }
  return count
}

/** What became of a block handed to {@link ReceiverFrontier.receive} */
export type ReceiveOutcome =
  /** it was wanted and verified, and is being written to the blockstore (see `settle`) */
  | 'stored'
  /** the receiver already held it (for example a Bloom false negative of the sender's view); not written */
  | 'duplicate'
  /** neither held nor wanted: the sender sent something this session never asked for; not written */
  | 'unrequested'

/** Where a {@link ReceiverFrontier} finds and stores blocks, how it reads and checks them, and its limits */
export interface ReceiverFrontierInit {
  /** Where held blocks are looked up and received blocks are written */
  blockstore: BlockSink
  /** Reads the links of held and received blocks; default a LinkReader with the built-in codecs */
  linkReader?: LinkReader
  /** Checks that received blocks hash to their CIDs; default a BlockVerifier with the built-in hashers */
  verifier?: BlockVerifier
  /** Blockstore writes that may overlap with receiving more blocks; default 16 */
  maxPendingWrites?: number
  /** Most wants at once; default no limit */
  maxWants?: number
  /** Node-wide count of wants, charged as wants are added */
  wantBudget?: Budget
  /** Most links one received block may have; default no limit */
  maxLinksPerBlock?: number
  /** Most held blocks the session may walk locally; default no limit */
  maxExploreBlocks?: number
  /**
   * Node-wide count of CIDs receivers keep from walks of their own store:
   * each held block the frontier finds in the store (below the roots, or
   * below a received block) takes one until `release`. When it is used up the frontier waits up to
   * HELD_WAIT_MS for room (the node may evict a stalled session that holds
   * some), then fails with LimitExceededError
   */
  heldBudget?: Budget
  /** Most blocks the sender may report missing before the session gives up; default DEFAULT_MAX_MISSING */
  maxMissing?: number
  /** Only the roots' own blocks: links of held and received blocks are not followed (a shallow pull) */
  shallow?: boolean
  /** Gives the event loop a turn during long local walks; default a new Yielder (10 ms slices) */
  yielder?: Yielder
  /** Called with each CID that becomes a want (a CAR Pool hands new wants to its providers this way) */
  onWant?(cid: CID): void
}

/** A shared set of keys of whole subgraphs, and the check under which its blocks need no store lookup (see `trustWholeSet`) */
interface WholeSet {
  keys: ReadonlySet<string>
  held?(): boolean
}

/**
 * The receiver's record of a session: for a set of roots, which reachable
 * blocks it holds and which are missing. The missing ones whose parents are
 * held (or that are roots) are the wants: the subgraph roots the receiver
 * asks the sender for.
 *
 * Each received block costs time proportional to its links (plus a local walk
 * of any subgraph it links to that the store already holds), never to the
 * size of the want set. Calls to `receive` must not overlap.
 *
 * @example
 *
 * ```ts
 * const frontier = await ReceiverFrontier.create([root], { blockstore })
 * while (!frontier.complete) {
 *   const { cid, bytes } = await nextBlockFromSender(frontier.wants())
 *   await frontier.receive(cid, bytes) // 'stored', 'duplicate' or 'unrequested'
 * }
 * ```
 */
export class ReceiverFrontier {
  private readonly blockstore: BlockSink
  private readonly linkReader: LinkReader
  private readonly verifier: BlockVerifier
  private readonly wanted = new Map<string, CID>()
  private readonly unavailable = new Map<string, CID>()
  private readonly holding = new Map<string, CID>()
  private readonly init: ReceiverFrontierInit
  private readonly yielder: Yielder
  private explored = 0
  private charged = 0
  /** What the frontier took from `heldBudget` */
  private kept = 0
  private readonly foundInStore: CID[] = []
  /** How many of `foundInStore` lie outside the whole subgraphs (see `trustWhole`) */
  private foundOutside = 0
  /** Keys of held blocks whose whole subgraph a walk found held (see `trustWhole`) */
  private readonly whole = new Set<string>()
  /** Sets of keys of whole subgraphs shared with other sessions (see `trustWholeSet`) */
  private readonly wholeSets: WholeSet[] = []
  /** Held links into whole subgraphs that were not walked below */
  private trusted = 0
  private busy = false
  private readonly maxPendingWrites: number
  private readonly writes: Array<Promise<void>> = []
  private writeError?: Error

  private constructor (init: ReceiverFrontierInit) {
    this.init = init
    this.yielder = init.yielder ?? new Yielder()
    this.blockstore = init.blockstore
    this.linkReader = init.linkReader ?? new LinkReader()
    this.verifier = init.verifier ?? new BlockVerifier()
    this.maxPendingWrites = Math.max(1, init.maxPendingWrites ?? 16)
  }

  /**
   * Builds the frontier for `roots` from what the blockstore already holds:
   * held blocks are walked, and their missing children become wants.
   */
  static async create (roots: CID[], init: ReceiverFrontierInit, options: BlockReadOptions = {}): Promise<ReceiverFrontier> {
    const frontier = new ReceiverFrontier(init)
    await frontier.explore(roots, options)
    return frontier
  }

  /**
   * True when every block reachable from the roots is held. Never while a
   * block is being taken: its links are explored after it stops being a
   * want, and until then the wants are not the whole story (a CAR Pool's
   * other sessions look at a shared frontier meanwhile)
   */
  get complete (): boolean {
    return !this.busy && this.wanted.size === 0 && this.unavailable.size === 0
  }

  /** The blocks the sender said it cannot send, still missing */
  missing (): CID[] {
    return [...this.unavailable.values()]
  }

  /**
   * Takes the sender's word that it cannot send `cids`: those that are wanted
   * stop being wants (they are not asked for again); others are ignored.
   *
   * @throws {BlocksNotAvailableError} when more blocks are missing than the session keeps track of
   */
  markUnavailable (cids: CID[]): void {
    for (const cid of cids) {
      const key = cidKey(cid)
      if (this.wanted.has(key)) {
        this.unwant(key)
        this.unavailable.set(key, cid)
      }
    }
    const max = this.init.maxMissing ?? DEFAULT_MAX_MISSING
    if (this.unavailable.size > max) {
      const missing = this.missing()
      throw new BlocksNotAvailableError(`The sender does not hold ${missing.length} or more blocks, including ${missing[0]}`, missing.slice(0, max))
    }
  }

  /** Gives back what the session holds of the node-wide want budget; call when the session ends */
  release (): void {
    this.init.wantBudget?.release(this.charged)
    this.charged = 0
    this.init.heldBudget?.release(this.kept)
    this.kept = 0
  }

  /** How many subgraph roots are wanted */
  get wantCount (): number {
    return this.wanted.size
  }

  /**
   * How many reachable blocks are held (identity CIDs not counted), at
   * most: blocks of whole subgraphs (see `trustWhole`) count too, those the
   * session met count twice
   */
  get holdCount (): number {
    let size = this.holding.size + this.whole.size
    for (const { keys } of this.wholeSets) {
      size += keys.size
    }
    return size
  }

  /** The missing subgraph roots, oldest first */
  wants (): CID[] {
    return [...this.wanted.values()]
  }

  /** True when `cid` is a want: a missing root or link of a held block, not reported unavailable */
  isWanted (cid: CID): boolean {
    return this.wanted.has(cidKey(cid))
  }

  /** `isWanted` for a CID's `cidKey`, for a caller that has the key already */
  isWantedKey (key: string): boolean {
    return this.wanted.has(key)
  }

  /** True when `cid` is a held block reachable from the roots (found in the store or received) or in a whole subgraph (see `trustWhole`); identity CIDs: false */
  holds (cid: CID): boolean {
    const key = cidKey(cid)
    return this.holding.has(key) || (this.isWhole(key) && !this.wanted.has(key))
  }

  /** The held blocks reachable from the roots: what the receiver's Bloom should contain */
  held (): IterableIterator<CID> {
    return this.holding.values()
  }

  /**
   * The held blocks that were already in the store rather than received in
   * this session, in the order they were found: what the sender cannot know
   * the receiver holds.
   */
  foundHeld (): readonly CID[] {
    return this.foundInStore
  }

  /**
   * How many held blocks found in the store lie outside the whole subgraphs
   * (see `trustWhole`): what a Bloom of those subgraphs does not cover.
   * It only grows.
   */
  get foundOutsideWhole (): number {
    return this.foundOutside
  }

  /**
   * True when a held link was trusted whole (see `trustWhole`) rather than
   * walked: then `held()` does not list the blocks below it
   */
  get trustedWhole (): boolean {
    return this.trusted > 0
  }

  /**
   * Records blocks whose whole subgraphs are held, because a walk of the
   * store just found every block under them (the hint walk): a link to one is
   * held without walking below it again. A block deleted later is found
   * missing only by a later session, as with any walk.
   */
  async trustWhole (cids: Iterable<CID>, options: { signal?: AbortSignal } = {}): Promise<void> {
    let count = 0
    for (const cid of cids) {
      if ((++count & 0x3ff) === 0) {
        // a hint walk may have found a hundred thousand blocks
        await this.yielder.maybeYield(options.signal)
      }
      this.whole.add(cidKey(cid))
    }
  }

  /**
   * Like `trustWhole`, for a set of keys (`cidKey`) that other sessions share
   * and this one must not change: the node's record of DAGs held whole keeps
   * one per recorded DAG, so trusting it costs a session nothing per block.
   * With `held`, a link into the set is taken as held without a store
   * lookup while `held()` returns true (the record passes a check that no
   * block was deleted since the set was read)
   */
  trustWholeSet (keys: ReadonlySet<string>, options: { held?(): boolean } = {}): void {
    this.wholeSets.push({ keys, held: options.held })
  }

  /**
   * Whether the block of `key` lies in a whole subgraph, and if so whether
   * it needs no store lookup: 'held' when a set holding it came with a
   * `held` check (see `trustWholeSet`) that still passes. Other whole blocks
   * are looked up when a received block links to them, so a block deleted
   * since they were found whole is wanted again.
   */
  private wholeness (key: string): 'none' | 'look-up' | 'held' {
    let found: 'none' | 'look-up' = this.whole.has(key) ? 'look-up' : 'none'
    for (const { keys, held } of this.wholeSets) {
      if (keys.has(key)) {
        if (held?.() === true) {
          return 'held'
        }
        found = 'look-up'
      }
    }
    return found
  }

  /** True when the block of `key` lies in a whole subgraph (see `trustWhole`, `trustWholeSet`) */
  private isWhole (key: string): boolean {
    if (this.whole.has(key)) {
      return true
    }
    for (const { keys } of this.wholeSets) {
      if (keys.has(key)) {
        return true
      }
    }
    return false
  }

  /**
   * Takes a block from the sender. A wanted block is verified against its
   * CID, its links are decoded, and only then is it written to the
   * blockstore (the write may finish later: see `settle`); its missing
   * children become wants. Anything else is not
   * written and is reported as 'duplicate' or 'unrequested'.
   *
   * @throws {HashMismatchError | UnsupportedHashError} when a wanted block does not verify
   * @throws {UnknownCodecError | InvalidBlockError} when its links cannot be read
   */
  async receive (cid: CID, bytes: Uint8Array, options: BlockReadOptions = {}): Promise<ReceiveOutcome> {
    const key = cidKey(cid)
    if (!this.wanted.has(key)) {
      return this.holding.has(key) || this.isWhole(key) ? 'duplicate' : 'unrequested'
    }

    if (this.busy) {
      throw new Error('ReceiverFrontier.receive calls must not overlap')
    }
    this.busy = true
    try {
      options.signal?.throwIfAborted()
      this.throwWriteError()
      await this.verifier.verify(cid, bytes)
      const maxLinks = this.init.maxLinksPerBlock ?? Infinity
      if (cid.code === DAG_CBOR_CODE && maxLinks !== Infinity && countLinkTags(bytes, maxLinks) > maxLinks) {
        // decoding a link bomb takes longer than refusing it
        throw new LimitExceededError(`Block ${cid} has more than ${maxLinks} links`)
      }
      const links = await this.linkReader.links(cid, bytes)
      if (links.length > maxLinks) {
        throw new LimitExceededError(`Block ${cid} has ${links.length} links, more than the limit of ${maxLinks}`)
      }
      this.write(cid, bytes)
      this.unwant(key)
      this.holding.set(key, cid)
      if (this.init.shallow !== true) {
        await this.explore(links, options)
      }
      if (this.writes.length >= this.maxPendingWrites) {
        await this.writes.shift()
        this.throwWriteError()
      }
      return 'stored'
    } finally {
      this.busy = false
    }
  }

  /**
   * Waits until every received block is in the blockstore. Writes overlap
   * with receiving (up to `maxPendingWrites` at once); call this before
   * telling the sender the session is complete.
   *
   * @throws {BlockstoreError} when a blockstore write failed
   */
  async settle (): Promise<void> {
    await Promise.all(this.writes.splice(0))
    this.throwWriteError()
  }

  private write (cid: CID, bytes: Uint8Array): void {
    // no abort signal: a verified block is worth keeping even if the session is aborted
    const written = (async () => {
      await this.blockstore.put(cid, bytes)
    })().catch(err => {
      this.writeError ??= new BlockstoreError(`Writing ${cid} to the blockstore failed: ${(err as Error).message}`, { cause: err })
    })
    this.writes.push(written)
  }

  private throwWriteError (): void {
    if (this.writeError != null) {
      throw this.writeError
    }
  }

  /**
   * Visits `cids` and everything below them that the store holds: held
   * blocks join `holding`, missing ones become wants. Each block is visited
   * at most once per session.
   */
  private async explore (cids: CID[], options: BlockReadOptions): Promise<void> {
    const stack = [...cids].reverse()
    let cid: CID | undefined
    try {
      while ((cid = stack.pop()) != null) {
        options.signal?.throwIfAborted()
        const key = cidKey(cid)
        if (this.holding.has(key) || this.wanted.has(key) || this.unavailable.has(key)) {
          continue
        }

        if (this.yielder.due) {
          await this.yielder.maybeYield(options.signal)
        }
        const wholeness = this.wholeness(key)
        const inWhole = wholeness !== 'none'
        if (wholeness !== 'held' && !await hasBlock(this.blockstore, cid, options)) {
          this.want(key, cid)
          continue
        }
        if (++this.explored > (this.init.maxExploreBlocks ?? Infinity)) {
          throw new LimitExceededError(`Finding what the store holds would walk more than ${this.init.maxExploreBlocks} blocks`)
        }

        // raw blocks have no links: knowing the store holds one is enough (so is any block of a shallow session or a whole subgraph)
        const links = cid.code === raw.code || this.init.shallow === true || inWhole ? [] : await this.linkReader.links(cid, await readBlock(this.blockstore, cid, options))
        if (LinkReader.inlineBytes(cid) == null) {
          if (!this.tryKeep()) {
            await this.waitToKeep(options)
          }
          this.holding.set(key, cid)
          this.foundInStore.push(cid)
          if (!inWhole) {
            this.foundOutside++
          } else if (cid.code !== raw.code) {
            this.trusted++
          }
        }
        for (let i = links.length - 1; i >= 0; i--) {
          stack.push(links[i])
        }
      }
    } catch (err) {
      // keep the frontier honest: what was not explored is still wanted
      for (const unexplored of [cid, ...stack]) {
        if (unexplored != null && !this.holding.has(cidKey(unexplored)) && !this.wanted.has(cidKey(unexplored))) {
          this.wanted.set(cidKey(unexplored), unexplored)
        }
      }
      throw err
    }
  }

  /** Takes one from the node's held budget for a held block found in the store, if it fits (or there is no budget) */
  private tryKeep (): boolean {
    const budget = this.init.heldBudget
    if (budget != null && !budget.tryTake(1)) {
      return false
    }
    this.kept++
    return true
  }

  /**
   * Waits a moment for room in the node's held budget, then takes one:
   * waiting lets the node evict a stalled session that holds some (see
   * CarMirror's eviction)
   *
   * @throws {LimitExceededError} when no room came
   */
  private async waitToKeep (options: BlockReadOptions): Promise<void> {
    const budget = this.init.heldBudget as Budget
    const waited = AbortSignal.timeout(HELD_WAIT_MS)
    try {
      await budget.acquire(1, options.signal == null ? waited : AbortSignal.any([options.signal, waited]))
    } catch (err) {
      options.signal?.throwIfAborted()
      throw new LimitExceededError(`The node's ${budget.name} budget (${budget.limit}) is used up: the session cannot keep what it finds in the store`, { cause: err })
    }
    this.kept++
  }

  private want (key: string, cid: CID): void {
    const max = this.init.maxWants ?? Infinity
    if (this.wanted.size >= max) {
      throw new LimitExceededError(`The session would want more than ${max} blocks at once`)
    }
    this.init.wantBudget?.charge(1)
    this.charged++
    this.wanted.set(key, cid)
    this.init.onWant?.(cid)
  }

  private unwant (key: string): void {
    if (this.wanted.delete(key) && this.charged > 0) {
      this.charged--
      this.init.wantBudget?.release(1)
    }
  }
}
