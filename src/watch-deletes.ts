import type { Helia } from '@helia/interface'

/**
 * Calls `onDelete` before any block is deleted through `helia.blockstore`
 * (`delete`, `deleteMany`) or `helia.gc()`, so a record of what the store
 * holds is dropped before it can be wrong. Returns a function that stops
 * watching.
 *
 * @example
 *
 * ```ts
 * const unwatch = beforeDeletes(helia, () => { record.forget() })
 * await helia.gc() // record.forget() was called first
 * unwatch()
 * ```
 */
export function beforeDeletes (helia: Pick<Helia, 'blockstore' | 'gc'>, onDelete: () => void): () => void {
  const store = helia.blockstore
  const { delete: deleteOne, deleteMany } = store
  const gc = helia.gc
  const watchedDelete: typeof deleteOne = async function (this: unknown, cid, options) {
    onDelete()
    return deleteOne.call(this, cid, options)
  }
  const watchedDeleteMany: typeof deleteMany = function (this: unknown, source, options) {
    onDelete()
    return deleteMany.call(this, source, options)
  }
  const watchedGc: typeof gc = async function (this: unknown, options) {
    onDelete()
    return gc.call(this, options)
  }
  store.delete = watchedDelete
  store.deleteMany = watchedDeleteMany
  helia.gc = watchedGc
  return () => {
    // another wrapper added since stays in place
    if (store.delete === watchedDelete) {
      store.delete = deleteOne
    }
    if (store.deleteMany === watchedDeleteMany) {
      store.deleteMany = deleteMany
    }
    if (helia.gc === watchedGc) {
      helia.gc = gc
    }
  }
}
