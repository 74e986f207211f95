import type { CID } from 'multiformats/cid'

export interface RecentRootsInit {
  /** Peers remembered; the one heard from longest ago is forgotten first. Default 1,024 */
  maxPeers?: number
  /** Roots remembered per peer, newest first. Default 4 */
  maxRootsPerPeer?: number
}

/**
 * The roots of the DAGs each peer last exchanged with this node (the CAR
 * Mirror spec's cross-session memory, §4): a push that names no hints is
 * likely the next version of one of them, so a push server walks them as
 * implicit hints. A wrong memory costs a walk of at most `maxHintBlocks`
 * blocks and a larger Bloom, never a missing block; it reveals nothing the
 * peer did not already exchange. Bounded: `maxPeers` x `maxRootsPerPeer` CIDs.
 *
 * @example
 *
 * ```ts
 * const recent = new RecentRoots()
 * recent.remember(peer, [root])
 * recent.of(peer) // [root]
 * ```
 */
export class RecentRoots {
  private readonly maxPeers: number
  private readonly maxRootsPerPeer: number
  private readonly roots = new Map<string, CID[]>()

  constructor (init: RecentRootsInit = {}) {
    this.maxPeers = Math.max(1, init.maxPeers ?? 1024)
    this.maxRootsPerPeer = Math.max(1, init.maxRootsPerPeer ?? 4)
  }

  /** Records that `peer` just exchanged the DAGs under `roots` (a completed push or pull) */
  remember (peer: string, roots: CID[]): void {
    const known = this.roots.get(peer) ?? []
    const fresh = roots.slice(0, this.maxRootsPerPeer)
    const kept = known.filter(cid => !fresh.some(root => root.equals(cid)))
    this.roots.delete(peer)
    this.roots.set(peer, [...fresh, ...kept].slice(0, this.maxRootsPerPeer))
    if (this.roots.size > this.maxPeers) {
      const oldest = this.roots.keys().next().value
      if (oldest != null) {
        this.roots.delete(oldest)
      }
    }
  }

  /** The roots `peer` exchanged most recently, newest first (none for a peer not heard from) */
  of (peer: string): CID[] {
    return [...(this.roots.get(peer) ?? [])]
  }
}
