/**
 * Blocks of the on-disk dataset stores, for children that serve them from
 * memory (./worker.ts, ./pool/node.ts)
 */

import { MemoryBlockstore } from 'blockstore-core/memory'
import { FsBlockstore } from 'blockstore-fs'
import { readBlock } from '../src/core/index.ts'
import type { CID } from 'multiformats/cid'

/** Blocks of on-disk stores, loaded once per process */
const cache = new Map<string, Array<{ cid: CID, bytes: Uint8Array }>>()

/**
 * Every block of the FsBlockstore at `dir`, read once per process
 *
 * @example
 *
 * ```ts
 * for (const { cid, bytes } of await loadBlocks(dir)) await memory.put(cid, bytes)
 * ```
 */
export async function loadBlocks (dir: string): Promise<Array<{ cid: CID, bytes: Uint8Array }>> {
  let blocks = cache.get(dir)
  if (blocks == null) {
    const store = new FsBlockstore(dir)
    await store.open()
    blocks = []
    for await (const { cid } of store.getAll()) {
      blocks.push({ cid, bytes: await readBlock(store, cid) })
    }
    cache.set(dir, blocks)
  }
  return blocks
}

/**
 * A MemoryBlockstore holding the blocks of the on-disk store at `from` (none
 * without it), and how many it holds
 *
 * @example
 *
 * ```ts
 * const { store, blocks } = await memoryStoreOf(datasetDir)
 * ```
 */
export async function memoryStoreOf (from?: string): Promise<{ store: MemoryBlockstore, blocks: number }> {
  const store = new MemoryBlockstore()
  let blocks = 0
  for (const { cid, bytes } of from != null ? await loadBlocks(from) : []) {
    await store.put(cid, bytes)
    blocks++
  }
  return { store, blocks }
}
