import type { Helia } from '@helia/interface'

/** What `watchStore` calls */
export interface StoreWatcher {
  /** Before any block is deleted through `helia.blockstore` (`delete`, `deleteMany`) or `helia.gc()` */
  beforeDelete(): void
  /** After a block is written through `helia.blockstore` (`put`, `putMany`) */
  afterPut(cid: Parameters<Helia['blockstore']['put']>[0]): void
}

/**
 * Watches the writes and deletes made through `helia.blockstore` and
 * `helia.gc()`, so what CAR Mirror remembers of the store (the Bloom of a
 * small store, the record of DAGs held whole) follows them. Returns a
 * function that stops watching.
 *
 * @example
 *
 * ```ts
 * const unwatch = watchStore(helia, { beforeDelete: () => { record.forget() }, afterPut: cid => { storeBloom.add(cid) } })
 * await helia.gc() // record.forget() was called first
 * unwatch()
 * ```
 */
export function watchStore (helia: Pick<Helia, 'blockstore' | 'gc'>, watcher: StoreWatcher): () => void {
  const store = helia.blockstore
  const { delete: deleteOne, deleteMany, put, putMany } = store
  const gc = helia.gc
  const watchedDelete: typeof deleteOne = async function (this: unknown, cid, options) {
    watcher.beforeDelete()
    return deleteOne.call(this, cid, options)
  }
  const watchedDeleteMany: typeof deleteMany = function (this: unknown, source, options) {
    watcher.beforeDelete()
    return deleteMany.call(this, source, options)
  }
  const watchedGc: typeof gc = async function (this: unknown, options) {
    watcher.beforeDelete()
    return gc.call(this, options)
  }
  const watchedPut: typeof put = async function (this: unknown, cid, bytes, options) {
    const stored = await put.call(this, cid, bytes, options)
    watcher.afterPut(cid)
    return stored
  }
  const watchedPutMany: typeof putMany = async function * (this: unknown, source, options) {
    for await (const cid of putMany.call(this, source, options)) {
      watcher.afterPut(cid)
      yield cid
    }
  }
  store.delete = watchedDelete
  store.deleteMany = watchedDeleteMany
  store.put = watchedPut
  store.putMany = watchedPutMany
  helia.gc = watchedGc
  return () => {
    // another wrapper added since stays in place
    if (store.delete === watchedDelete) {
      store.delete = deleteOne
    }
    if (store.deleteMany === watchedDeleteMany) {
      store.deleteMany = deleteMany
    }
    if (store.put === watchedPut) {
      store.put = put
    }
    if (store.putMany === watchedPutMany) {
      store.putMany = putMany
    }
    if (helia.gc === watchedGc) {
      helia.gc = gc
    }
  }
}
