import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { BlockNotFoundError, LimitExceededError } from '../errors.ts'
import { readBlock } from './blocks.ts'
import { Yielder } from './budget.ts'
import { cidKey, cidOfKey } from './cid-key.ts'
import { LinkReader } from './links.ts'
import type { BlockReadOptions, BlockSource } from './blocks.ts'
import type { Budget } from './budget.ts'

export interface DagMembershipInit {
  blockstore: BlockSource
  roots: CID[]
  linkReader?: LinkReader
  /** Most blocks the membership walk may read in this session; default no limit */
  maxBlocks?: number
  /** Node-wide count of CIDs indexed by membership walks; charged as links are learned by the walk */
  indexBudget?: Budget
  /** Node-wide concurrency of local walks; the walk holds one unit while it runs */
  walkBudget?: Budget
  yielder?: Yielder
}

/**
 * Knows which CIDs lie in the DAG under a session's roots, so a sender
 * serves nothing outside what it was allowed to. It learns links from the
 * blocks the session sends (`learn`), and for a CID it has not seen it goes
 * on walking the DAG's interior blocks from where it last stopped: each block
 * is read at most once per session, however wants arrive.
 *
 * @example
 *
 * ```ts
 * const dag = new DagMembership({ blockstore, roots })
 * const { inside, outside } = await dag.split(wants)
 * ```
 */
export class DagMembership {
  private readonly init: DagMembershipInit
  private readonly linkReader: LinkReader
  private readonly yielder: Yielder
  /** The roots and every link read so far */
  private readonly known = new Set<string>()
  /** Interior blocks whose links have been read */
  private readonly expanded = new Set<string>()
  /**
   * Known interior blocks whose links have not been read yet, in
   * breadth-first order, as strings: a CID decoded from a block is a view
   * into it and would keep the whole block in memory
   */
  private readonly pending: string[] = []
  private pendingHead = 0
  private blocksRead = 0
  private indexed = 0

  constructor (init: DagMembershipInit) {
    this.init = init
    this.linkReader = init.linkReader ?? new LinkReader()
    this.yielder = init.yielder ?? new Yielder()
    for (const root of init.roots) {
      this.add(root)
    }
  }

  /** How many CIDs are known to be in the DAG */
  get size (): number {
    return this.known.size
  }

  /** Records the links of a block of the DAG read elsewhere (by the sending walk) */
  async learn (cid: CID, links: CID[], signal?: AbortSignal): Promise<void> {
    this.expanded.add(cidKey(cid))
    for (let i = 0; i < links.length; i++) {
      if ((i & 0x3ff) === 0x3ff) {
        await this.yielder.maybeYield(signal)
      }
      this.add(links[i])
    }
  }

  /** True when `cid` is known to be in the DAG, without walking */
  knows (cid: CID): boolean {
    return this.known.has(cidKey(cid))
  }

  /**
   * Splits `cids` into those in the DAG and those outside it (or under a
   * block the store lacks), walking no more of the DAG than it must.
   *
   * @throws {LimitExceededError} when the walk goes over its block budget or the node's index budget
   */
  async split (cids: CID[], options: BlockReadOptions = {}): Promise<{ inside: CID[], outside: CID[] }> {
    const unknown = new Set<string>()
    for (const cid of cids) {
      if (!this.knows(cid)) {
        unknown.add(cidKey(cid))
      }
    }
    if (unknown.size > 0 && this.pendingHead < this.pending.length) {
      const search = async (): Promise<void> => { await this.search(unknown, options) }
      await (this.init.walkBudget?.run(search, options.signal) ?? search())
    }
    const inside: CID[] = []
    const outside: CID[] = []
    for (const cid of cids) {
      (this.knows(cid) ? inside : outside).push(cid)
    }
    return { inside, outside }
  }

  /** Gives back what this session charged to the node-wide index budget */
  release (): void {
    this.init.indexBudget?.release(this.indexed)
    this.indexed = 0
  }

  private async search (unknown: Set<string>, options: BlockReadOptions): Promise<void> {
    const maxBlocks = this.init.maxBlocks ?? Infinity
    while (unknown.size > 0 && this.pendingHead < this.pending.length) {
      await this.yielder.maybeYield(options.signal)
      const key = this.pending[this.pendingHead++]
      if (this.pendingHead > 1024 && this.pendingHead * 2 > this.pending.length) {
        this.pending.splice(0, this.pendingHead)
        this.pendingHead = 0
      }
      if (this.expanded.has(key)) {
        continue
      }
      const cid = cidOfKey(key)
      this.expanded.add(key)
      if (++this.blocksRead > maxBlocks) {
        throw new LimitExceededError(`Checking wants would read more than ${maxBlocks} blocks of the DAG`)
      }
      let bytes: Uint8Array
      try {
        bytes = await readBlock(this.init.blockstore, cid, { ...options, offline: true })
      } catch (err) {
        if ((err as Error).name === BlockNotFoundError.name) {
          continue
        }
        throw err
      }
      const links = await this.linkReader.links(cid, bytes)
      for (let i = 0; i < links.length; i++) {
        if ((i & 0x3ff) === 0x3ff) {
          await this.yielder.maybeYield(options.signal)
        }
        if (this.add(links[i])) {
          unknown.delete(cidKey(links[i]))
        }
      }
    }
  }

  /** Adds a CID; true when it was new */
  private add (cid: CID): boolean {
    const key = cidKey(cid)
    if (this.known.has(key)) {
      return false
    }
    if (this.init.indexBudget != null) {
      this.init.indexBudget.charge(1)
      this.indexed++
    }
    this.known.add(key)
    if (cid.code !== raw.code) {
      this.pending.push(key)
    }
    return true
  }
}
