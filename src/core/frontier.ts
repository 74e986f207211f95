import * as raw from 'multiformats/codecs/raw'
import { BlockstoreError } from '../errors.ts'
import { hasBlock, readBlock } from './blocks.ts'
import { LinkReader } from './links.ts'
import { BlockVerifier } from './verify.ts'
import type { BlockReadOptions, BlockSink } from './blocks.ts'
import type { CID } from 'multiformats/cid'

/** What became of a block handed to {@link ReceiverFrontier.receive} */
export type ReceiveOutcome =
  /** it was wanted and verified, and is being written to the blockstore (see `settle`) */
  | 'stored'
  /** the receiver already held it (for example a Bloom false negative of the sender's view); not written */
  | 'duplicate'
  /** neither held nor wanted: the sender sent something this session never asked for; not written */
  | 'unrequested'

export interface ReceiverFrontierInit {
  /** Where held blocks are looked up and received blocks are written */
  blockstore: BlockSink
  linkReader?: LinkReader
  verifier?: BlockVerifier
  /** Blockstore writes that may overlap with receiving more blocks; default 16 */
  maxPendingWrites?: number
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
  private readonly holding = new Map<string, CID>()
  private readonly foundInStore: CID[] = []
  private busy = false
  private readonly maxPendingWrites: number
  private readonly writes: Array<Promise<void>> = []
  private writeError?: Error

  private constructor (init: ReceiverFrontierInit) {
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

  /** True when every block reachable from the roots is held */
  get complete (): boolean {
    return this.wanted.size === 0
  }

  /** How many subgraph roots are wanted */
  get wantCount (): number {
    return this.wanted.size
  }

  /** How many reachable blocks are held (identity CIDs not counted) */
  get holdCount (): number {
    return this.holding.size
  }

  /** The missing subgraph roots, oldest first */
  wants (): CID[] {
    return [...this.wanted.values()]
  }

  isWanted (cid: CID): boolean {
    return this.wanted.has(cid.toString())
  }

  holds (cid: CID): boolean {
    return this.holding.has(cid.toString())
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
    const key = cid.toString()
    if (!this.wanted.has(key)) {
      return this.holding.has(key) ? 'duplicate' : 'unrequested'
    }

    if (this.busy) {
      throw new Error('ReceiverFrontier.receive calls must not overlap')
    }
    this.busy = true
    try {
      options.signal?.throwIfAborted()
      this.throwWriteError()
      await this.verifier.verify(cid, bytes)
      const links = await this.linkReader.links(cid, bytes)
      this.write(cid, bytes)
      this.wanted.delete(key)
      this.holding.set(key, cid)
      await this.explore(links, options)
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
        const key = cid.toString()
        if (this.holding.has(key) || this.wanted.has(key)) {
          continue
        }

        if (!await hasBlock(this.blockstore, cid, options)) {
          this.wanted.set(key, cid)
          continue
        }

        // raw blocks have no links: knowing the store holds one is enough
        const links = cid.code === raw.code ? [] : await this.linkReader.links(cid, await readBlock(this.blockstore, cid, options))
        if (LinkReader.inlineBytes(cid) == null) {
          this.holding.set(key, cid)
          this.foundInStore.push(cid)
        }
        for (let i = links.length - 1; i >= 0; i--) {
          stack.push(links[i])
        }
      }
    } catch (err) {
      // keep the frontier honest: what was not explored is still wanted
      for (const unexplored of [cid, ...stack]) {
        if (unexplored != null && !this.holding.has(unexplored.toString())) {
          this.wanted.set(unexplored.toString(), unexplored)
        }
      }
      throw err
    }
  }
}
