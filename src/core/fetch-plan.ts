import * as dagPb from '@ipld/dag-pb'
import { cidKey } from './cid-key.ts'
import type { CID } from 'multiformats/cid'

/**
 * What a fetched block says about the blocks below it:
 * - `file`: a UnixFS file (or raw node) with links: whoever reads it reads them all
 * - `directory`: a UnixFS directory or HAMT shard: a reader by path takes one link
 * - `other`: anything else (no links, or not UnixFS)
 */
export type BlockKind = 'file' | 'directory' | 'other'

/** A pull the block broker should start: its roots, and whether only their own blocks (`shallow`) */
export interface FetchPlan {
  /** The CIDs to pull, the one a caller asked for first */
  roots: CID[]
  /** True: only the roots' own blocks (a pull with `dl: 0`); false: their whole subgraphs */
  shallow: boolean
}

/** Limits of a {@link FetchPlanner} */
export interface FetchPlannerInit {
  /** Most roots one planned pull names; default 1,000 (the protocol's minimum) */
  maxRoots?: number
  /** Most child-to-parent links remembered; the oldest are forgotten first. Default 100,000 */
  maxRemembered?: number
}

/** What the planner remembers of a block it saw: its kind, its links and which of them were asked for */
interface Parent {
  cid: CID
  kind: BlockKind
  links: CID[]
  asked: Set<string>
  /** Its links were all fetched at once already */
  batched: boolean
}

/** dag-pb's multicodec code */
const DAG_PB_CODE = 0x70

/** UnixFS `Data.Type` values: Raw, Directory, File, Metadata, Symlink, HAMTShard */
const UNIXFS_DIRECTORY = 1
const UNIXFS_FILE = 2
const UNIXFS_RAW = 0
const UNIXFS_HAMT = 5

/**
 * The block broker's policy against over-fetching, free of any transport.
 * A block of a kind not known yet is fetched alone when it may be a
 * directory (dag-pb), and with its whole subgraph otherwise; once a block
 * shows what it is (see `learn`), a file's subgraph is fetched whole, and a
 * directory's children are fetched together once a caller asks for a second
 * one of them (it is walking the directory, not following one path).
 *
 * @example
 *
 * ```ts
 * const planner = new FetchPlanner()
 * const plan = planner.plan(cid) // { roots: [cid], shallow: true } for a dag-pb block not seen yet
 * // ...the block arrives:
 * const next = planner.learn(cid, bytes, true) // { roots: [cid], shallow: false } when it is a file with links
 * ```
 */
export class FetchPlanner {
  private readonly maxRoots: number
  private readonly maxRemembered: number
  /** Parent of each remembered child, by the child's key */
  private readonly parents = new Map<string, Parent>()

  constructor (init: FetchPlannerInit = {}) {
    this.maxRoots = Math.max(1, init.maxRoots ?? 1000)
    this.maxRemembered = Math.max(1, init.maxRemembered ?? 100_000)
  }

  /** The pull that fetches `cid`, which a caller asked for and no pull under way brings */
  plan (cid: CID): FetchPlan {
    const key = cidKey(cid)
    const parent = this.parents.get(key)
    if (parent?.kind === 'file') {
      // a file's blocks are all read: fetch what is left under it
      return { roots: [parent.cid], shallow: false }
    }
    if (parent?.kind === 'directory') {
      parent.asked.add(key)
      if (parent.asked.size >= 2 && !parent.batched) {
        // a second child of one directory: the caller walks it (ls, a recursive export), fetch the children together
        parent.batched = true
        const others = parent.links.filter(link => !link.equals(cid)).slice(0, this.maxRoots - 1)
        return { roots: [cid, ...others], shallow: true }
      }
    }
    return { roots: [cid], shallow: cid.code === DAG_PB_CODE }
  }

  /**
   * Takes a block a shallow pull brought; `asked` says whether a caller asked
   * for it. Returns the pull to start next, if any: the whole subgraph of a
   * file a caller asked for.
   */
  learn (cid: CID, bytes: Uint8Array, asked: boolean): FetchPlan | undefined {
    const { kind, links } = blockKind(cid, bytes)
    if (kind === 'other' || links.length === 0) {
      return undefined
    }
    const parent: Parent = { cid, kind, links, asked: new Set(), batched: false }
    for (const link of links) {
      this.remember(cidKey(link), parent)
    }
    return kind === 'file' && asked ? { roots: [cid], shallow: false } : undefined
  }

  private remember (key: string, parent: Parent): void {
    this.parents.delete(key)
    this.parents.set(key, parent)
    if (this.parents.size > this.maxRemembered) {
      // Maps iterate in insertion order: the first key is the oldest
      const oldest = this.parents.keys().next().value
      if (oldest != null) {
        this.parents.delete(oldest)
      }
    }
  }
}

/**
 * A block's kind and links: dag-pb blocks are read as UnixFS (a node whose
 * `Data` does not parse is `other`); any other codec is `other`
 */
export function blockKind (cid: CID, bytes: Uint8Array): {
  /** What the block says about the blocks below it */
  kind: BlockKind
  /** The block's links in link order when it is dag-pb; empty for other codecs and for bytes that do not decode */
  links: CID[]
} {
  if (cid.code !== DAG_PB_CODE) {
    return { kind: 'other', links: [] }
  }
  let node: dagPb.PBNode
  try {
    node = dagPb.decode(bytes)
  } catch {
    return { kind: 'other', links: [] }
  }
  const links = node.Links.map(link => link.Hash)
  const type = node.Data == null ? undefined : unixfsType(node.Data)
  switch (type) {
    case UNIXFS_DIRECTORY:
    case UNIXFS_HAMT:
      return { kind: 'directory', links }
    case UNIXFS_FILE:
    case UNIXFS_RAW:
      return { kind: 'file', links }
    default:
      return { kind: 'other', links }
  }
}

/**
 * The `Type` (field 1, a varint) of a UnixFS `Data` protobuf message, or
 * undefined when the bytes are not such a message
 */
export function unixfsType (data: Uint8Array): number | undefined {
  let offset = 0
  const varint = (): number | undefined => {
    let value = 0
    for (let shift = 0; shift < 49 && offset < data.byteLength; shift += 7) {
      const byte = data[offset++]
      value += (byte & 0x7f) * 2 ** shift
      if (byte < 0x80) {
        return value
      }
    }
    return undefined
  }
  while (offset < data.byteLength) {
    const tag = varint()
    if (tag == null) {
      return undefined
    }
    const field = Math.floor(tag / 8)
    const wireType = tag % 8
    if (wireType === 0) {
      const value = varint()
      if (value == null) {
        return undefined
      }
      if (field === 1) {
        return value
      }
    } else if (wireType === 2) {
      const length = varint()
      if (length == null || offset + length > data.byteLength) {
        return undefined
      }
      offset += length
    } else if (wireType === 1 || wireType === 5) {
      offset += wireType === 1 ? 8 : 4
    } else {
      return undefined
    }
  }
  return undefined
}
