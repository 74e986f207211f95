/**
 * localReads: the blockstore sessions use on a Helia node. Reads go to the
 * store under Helia's wrappers (no GC lock, no network), writes and deletes
 * still go through Helia's blockstore.
 */
import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { MemoryDatastore } from 'datastore-core/memory'
import { createHeliaLight } from 'helia'
import all from 'it-all'
import { concat } from 'uint8arrays/concat'
import { toString } from 'uint8arrays/to-string'
import { localReads } from '../src/local-store.ts'
import { getBytes, keys, rawBlock } from './fixtures/dag.ts'
import { rejection } from './fixtures/rejection.ts'
import type { Helia } from '@helia/interface'
import type { CID } from 'multiformats/cid'

/** Helia's BlockStorage holds its garbage collector's lock (mortice) in `lock` */
interface GcLocked {
  lock: { writeLock(): Promise<() => void> }
}

/** The multihashes of `cids`, as sorted hex */
function digests (cids: CID[]): string[] {
  return cids.map(cid => toString(cid.multihash.bytes, 'base16')).sort()
}

/** Lets queued promise callbacks and timers run */
async function turns (count: number = 3): Promise<void> {
  for (let i = 0; i < count; i++) {
    await new Promise(resolve => setTimeout(resolve, 0))
  }
}

describe('localReads', () => {
  let inner: MemoryBlockstore
  let helia: Helia

  beforeEach(async () => {
    inner = new MemoryBlockstore()
    helia = createHeliaLight({ blockstore: inner, datastore: new MemoryDatastore() })
    await helia.start()
  })

  afterEach(async () => {
    await helia.stop()
  })

  it('returns a store that wraps nothing as it is', () => {
    const store = new MemoryBlockstore()
    expect(localReads(store)).to.equal(store)
  })

  it('sees what Helia\'s blockstore holds, and Helia sees what is put through it', async () => {
    const store = localReads(helia.blockstore)
    const viaLocal = await rawBlock('put through localReads')
    const viaHelia = await rawBlock('put through helia.blockstore')
    const absent = await rawBlock('put nowhere')

    await store.put(viaLocal.cid, viaLocal.bytes)
    await helia.blockstore.put(viaHelia.cid, viaHelia.bytes)

    expect(await getBytes(helia.blockstore, viaLocal.cid)).to.equalBytes(viaLocal.bytes)
    expect(await getBytes(store, viaHelia.cid)).to.equalBytes(viaHelia.bytes)
    for (const block of [viaLocal, viaHelia, absent]) {
      expect(await store.has(block.cid), `has ${block.cid}`).to.equal(await helia.blockstore.has(block.cid))
    }
    expect(await store.has(absent.cid)).to.be.false()
    // the store lists blocks by multihash (its CIDs are raw): compare those
    const listed = await all(store.getAll())
    expect(digests(listed.map(pair => pair.cid))).to.deep.equal(digests([viaLocal.cid, viaHelia.cid]))
    const many = await all(store.getMany([viaHelia.cid, viaLocal.cid]))
    expect(keys(many.map(pair => pair.cid))).to.deep.equal(keys([viaHelia.cid, viaLocal.cid]))
    expect(concat(await all(many[0].bytes))).to.equalBytes(viaHelia.bytes)
    expect(concat(await all(many[1].bytes))).to.equalBytes(viaLocal.bytes)
  })

  it('reads while Helia\'s garbage collector holds its lock, and writes wait for the lock', async () => {
    const store = localReads(helia.blockstore)
    const held = await rawBlock('held before the collection')
    const written = await rawBlock('written during the collection')
    const writtenMany = await rawBlock('written with putMany during the collection')
    await helia.blockstore.put(held.cid, held.bytes)

    const release = await (helia.blockstore as unknown as GcLocked).lock.writeLock()
    const settled = new Set<string>()
    /** Starts `work` now and notes when it settles, so nothing waits on it while the lock is held */
    function track <T> (name: string, work: () => Promise<T>): Promise<T> {
      const running = work()
      void running.then(() => settled.add(name), () => settled.add(name))
      return running
    }
    const localHas = track('local has', async () => store.has(held.cid))
    const localGet = track('local get', async () => getBytes(store, held.cid))
    const localList = track('local getAll', async () => all(store.getAll()))
    const localMany = track('local getMany', async () => all(store.getMany([held.cid])))
    const heliaHas = track('helia has', async () => helia.blockstore.has(held.cid))
    const write = track('local put', async () => store.put(written.cid, written.bytes))
    const writeMany = track('local putMany', async () => all(store.putMany([writtenMany])))
    try {
      await turns()
      // the same lookup through Helia's blockstore waits for the lock: the reads above did not go through it
      expect([...settled].sort()).to.deep.equal(['local get', 'local getAll', 'local getMany', 'local has'])
      expect(await inner.has(written.cid)).to.be.false()
      expect(await inner.has(writtenMany.cid)).to.be.false()
    } finally {
      release()
    }
    expect(await localHas).to.be.true()
    expect(await localGet).to.equalBytes(held.bytes)
    expect(await localList).to.have.lengthOf(1)
    expect(keys((await localMany).map(pair => pair.cid))).to.deep.equal(keys([held.cid]))
    expect(await heliaHas).to.be.true()
    await write
    await writeMany
    expect(await inner.has(written.cid)).to.be.true()
    expect(await inner.has(writtenMany.cid)).to.be.true()
  })

  it('reads a missing block from the local store, not the network: the store\'s NotFoundError', async () => {
    const absent = await rawBlock('on no peer')
    const err = await rejection(all(localReads(helia.blockstore).get(absent.cid)))
    expect(err.name).to.equal('NotFoundError')
  })

  it('deletes through Helia\'s blockstore: a pinned block stays', async () => {
    const store = localReads(helia.blockstore)
    const pinned = await rawBlock('pinned')
    const loose = await rawBlock('not pinned')
    await store.put(pinned.cid, pinned.bytes)
    await store.put(loose.cid, loose.bytes)
    await all(helia.pins.add(pinned.cid))

    const err = await rejection((async () => { await store.delete(pinned.cid) })())
    expect(err.name).to.equal('BlockPinnedError')
    const errMany = await rejection(all(store.deleteMany([pinned.cid])))
    expect(errMany.name).to.equal('BlockPinnedError')
    expect(await inner.has(pinned.cid)).to.be.true()
    await store.delete(loose.cid)
    expect(await inner.has(loose.cid)).to.be.false()
  })
})
