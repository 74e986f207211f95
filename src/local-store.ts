import type { Blockstore } from 'interface-blockstore'

/** A blockstore that wraps another and hands it out (Helia's blockstores do) */
interface Wrapping {
  unwrap(): unknown
}

function isWrapping (store: unknown): store is Wrapping {
  return typeof (store as Partial<Wrapping> | undefined)?.unwrap === 'function'
}

/**
 * The blockstore sessions use: reads (`has`, `get`, `getAll`) go to the
 * innermost store that `store` wraps, writes (`put`) go through `store`
 * itself. Helia's blockstore takes its garbage collector's lock and checks
 * for a network fetch on every call, which costs more than the read itself
 * when a session walks thousands of small blocks; a session's reads never
 * fetch from the network (`offline`), and a write still waits for a running
 * collection as before. A store that wraps nothing is used as it is.
 *
 * @example
 *
 * ```ts
 * const store = localReads(helia.blockstore)
 * await store.has(cid) // straight to the store under Helia's wrappers
 * await store.put(cid, bytes) // through Helia's blockstore
 * ```
 */
export function localReads (store: Blockstore): Blockstore {
  let inner: unknown = store
  while (isWrapping(inner)) {
    const next = inner.unwrap()
    if (next == null || next === inner) {
      break
    }
    inner = next
  }
  if (inner === store) {
    return store
  }
  const reader = inner as Blockstore
  return {
    has: async (cid, options) => reader.has(cid, options),
    get: (cid, options) => reader.get(cid, options),
    getAll: (options) => reader.getAll(options),
    getMany: (cids, options) => reader.getMany(cids, options),
    put: async (cid, bytes, options) => store.put(cid, bytes, options),
    putMany: (source, options) => store.putMany(source, options),
    delete: async (cid, options) => store.delete(cid, options),
    deleteMany: (source, options) => store.deleteMany(source, options)
  }
}
