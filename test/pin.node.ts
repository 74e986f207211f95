/**
 * pull(..., { pin: true }): the pulled DAG is pinned once complete and
 * survives Helia's garbage collection; without it, gc() takes it away.
 */
import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { PinningUnavailableError, createCarMirror } from '../src/index.ts'
import { TREE_V1, addTree, dagCids } from './fixtures/dags.ts'
import { testNodes } from './fixtures/nodes.ts'
import { rejection } from './fixtures/rejection.ts'

describe('pull with pin', () => {
  const { node } = testNodes()

  it('pins the roots of a complete DAG, which then survives gc()', async () => {
    const server = await node()
    const client = await node()
    const root = await addTree(server, TREE_V1)
    const all = await dagCids(server.blockstore, root)
    const stats = await client.carMirror.pull(server.libp2p.getMultiaddrs(), root, { pin: true })
    expect(stats.blocksReceived).to.equal(all.length)
    expect(await client.pins.isPinned(root)).to.be.true()
    await client.gc()
    expect(await dagCids(client.blockstore, root)).to.deep.equal(all)
  })

  it('without pin, gc() removes what was pulled (the pin is what keeps it)', async () => {
    const server = await node()
    const client = await node()
    const root = await addTree(server, TREE_V1)
    await client.carMirror.pull(server.libp2p.getMultiaddrs(), root)
    expect(await client.pins.isPinned(root)).to.be.false()
    await client.gc()
    expect(await client.blockstore.has(root)).to.be.false()
  })

  it('a DAG held already is pinned without a session, and a pinned root stays pinned', async () => {
    const server = await node()
    const client = await node()
    const root = await addTree(server, TREE_V1)
    await client.carMirror.pull(server.libp2p.getMultiaddrs(), root, { pin: true })
    // pulled again: nothing to fetch, already pinned: no AlreadyPinnedError
    const again = await client.carMirror.pull(server.libp2p.getMultiaddrs(), root, { pin: true })
    expect(again.blocksReceived).to.equal(0)
    expect(again.bytesSent).to.equal(0)
    expect(await client.pins.isPinned(root)).to.be.true()
  })

  it('pin on a bare CAR Mirror without Helia\'s pins is a PinningUnavailableError before anything is sent', async () => {
    const server = await node()
    const client = await node()
    const root = await addTree(server, TREE_V1)
    const blockstore = new MemoryBlockstore()
    const bare = createCarMirror({ libp2p: client.libp2p, blockstore })
    const err = await rejection(bare.pull(server.libp2p.getMultiaddrs(), root, { pin: true }))
    expect(err).to.be.an.instanceOf(PinningUnavailableError)
    expect(await blockstore.has(root)).to.be.false()
  })
})
