import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { bloomItem } from '../../src/core/messages.ts'
import { ReceiverSession } from '../../src/core/receiver.ts'
import { StoreBloom } from '../../src/core/store-bloom.ts'
import { pbBlock, putAll, rawBlock } from '../fixtures/dag.ts'
import type { Block } from '../fixtures/dag.ts'
import type { AbortOptions } from '@libp2p/interface'
import type { Pair } from 'interface-blockstore'

async function rawBlocks (count: number, label: string): Promise<Block[]> {
  return Promise.all(Array.from({ length: count }, async (_, i) => rawBlock(`${label} ${i}`)))
}

/** A store whose listing is a snapshot taken when it begins, as a directory listing is, and takes a few turns of the event loop */
class SnapshotListingStore extends MemoryBlockstore {
  async * getAll (options?: AbortOptions): AsyncGenerator<Pair> {
    const pairs: Pair[] = []
    for await (const pair of super.getAll(options)) {
      pairs.push(pair)
    }
    for (let i = 0; i < pairs.length; i++) {
      if (i % 100 === 0) {
        await new Promise(resolve => setTimeout(resolve, 0))
      }
      yield pairs[i]
    }
  }
}

describe('core/store-bloom', () => {
  it('holds every block of a small store, and blocks added since the listing', async () => {
    const store = new MemoryBlockstore()
    const held = await rawBlocks(300, 'held')
    await putAll(store, held)
    const cache = new StoreBloom({ blockstore: store, maxBytes: 64 * 1024, maxAgeMs: 60_000 })
    const bloom = await cache.get()
    expect(bloom).to.not.be.undefined()
    for (const block of held) {
      expect(bloom?.has(bloomItem(block.cid)), String(block.cid)).to.be.true()
    }
    const later = await rawBlock('stored by a session later')
    expect(bloom?.has(bloomItem(later.cid))).to.be.false()
    cache.add(later.cid)
    expect((await cache.get())?.has(bloomItem(later.cid))).to.be.true()
  })

  it('lists the store once per maxAge, in the background once it has a Bloom: a block written by other means shows once that listing is done', async () => {
    const store = new MemoryBlockstore()
    await putAll(store, await rawBlocks(10, 'first'))
    const cache = new StoreBloom({ blockstore: store, maxBytes: 64 * 1024, maxAgeMs: 50 })
    const first = await cache.get()
    const other = await rawBlock('written by other means')
    await putAll(store, [other])
    expect(await cache.get()).to.equal(first)
    expect(first?.has(bloomItem(other.cid))).to.be.false()
    await new Promise(resolve => setTimeout(resolve, 80))
    // stale: given at once, while a new listing runs
    expect(await cache.get()).to.equal(first)
    let next = first
    for (let i = 0; i < 100 && next === first; i++) {
      await new Promise(resolve => setTimeout(resolve, 5))
      next = await cache.get()
    }
    expect(next).to.not.equal(first)
    expect(next?.has(bloomItem(other.cid))).to.be.true()
  })

  it('gives no Bloom for a store too large for maxBytes, or when turned off', async () => {
    const store = new MemoryBlockstore()
    await putAll(store, await rawBlocks(2000, 'many'))
    // 2,000 blocks with headroom need more than 4 KiB at the default false-positive rate
    expect(await new StoreBloom({ blockstore: store, maxBytes: 4 * 1024, maxAgeMs: 60_000 }).get()).to.be.undefined()
    expect(await new StoreBloom({ blockstore: store, maxBytes: 0, maxAgeMs: 60_000 }).get()).to.be.undefined()
    expect(await new StoreBloom({ blockstore: {}, maxBytes: 64 * 1024, maxAgeMs: 60_000 }).get()).to.be.undefined()
    // an empty store: nothing to skip, so no Bloom (a push server then greets with a clear)
    expect(await new StoreBloom({ blockstore: new MemoryBlockstore(), maxBytes: 64 * 1024, maxAgeMs: 60_000 }).get()).to.be.undefined()
  })

  it('a push server with a store Bloom greets with it, and sends it again only to answer a sync', async () => {
    const store = new MemoryBlockstore()
    const leaf = await rawBlock('leaf the server holds')
    await putAll(store, [leaf])
    const storeBloom = await new StoreBloom({ blockstore: store, maxBytes: 64 * 1024, maxAgeMs: 60_000 }).get()
    // one link held, one not: the session goes on after the root arrives
    const missing = await rawBlock('leaf the client still sends')
    const root = await pbBlock('root the client pushes', [leaf.cid, missing.cid])
    const receiver = await ReceiverSession.create({ blockstore: store, roots: [root.cid], smallStoreBlocks: 0, announceRoots: true, storeBloom })
    const greeting = await receiver.pushGreeting()
    expect(greeting.bloom).to.equal(storeBloom)
    await receiver.receive({ type: 'header', roots: [root.cid] })
    // the root arrives: the receiver finds the leaf held, which the store Bloom already covers
    const step = await receiver.receive({ type: 'block', cid: root.cid, bytes: root.bytes })
    // the status saying it holds the roots leaves the store Bloom in place: no bb at all
    const statuses = step.replies.filter(reply => reply.type === 'status')
    expect(statuses).to.have.lengthOf(1)
    expect(statuses[0]).to.deep.include({ rootsHeld: true })
    expect(statuses[0]).to.not.have.property('bloom')
    const sync = await receiver.receive({ type: 'sync', statuses: receiver.counters.statusesSent })
    expect(sync.replies).to.have.lengthOf(1)
    expect(sync.replies[0].type === 'status' && sync.replies[0].bloom).to.equal(storeBloom)
  })
  it('an empty store gives no Bloom until a block is stored; then it holds that block without a new listing', async () => {
    const store = new MemoryBlockstore()
    const cache = new StoreBloom({ blockstore: store, maxBytes: 64 * 1024, maxAgeMs: 60_000 })
    expect(await cache.get()).to.be.undefined()
    const stored = await rawBlock('the first block')
    await putAll(store, [stored])
    cache.add(stored.cid)
    expect((await cache.get())?.has(bloomItem(stored.cid))).to.be.true()
  })

  it('holds a block stored while the listing ran, which the listing may have passed', async () => {
    const store = new SnapshotListingStore()
    await putAll(store, await rawBlocks(600, 'listed'))
    const cache = new StoreBloom({ blockstore: store, maxBytes: 64 * 1024, maxAgeMs: 60_000 })
    cache.warm()
    // the listing has begun (it yields every 256 blocks): a session stores a block now
    await new Promise(resolve => setTimeout(resolve, 0))
    const during = await rawBlock('stored during the listing')
    await putAll(store, [during])
    cache.add(during.cid)
    expect((await cache.get())?.has(bloomItem(during.cid))).to.be.true()
  })
})
