import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { MemoryDatastore } from 'datastore-core/memory'
import drain from 'it-drain'
import { LinkReader } from '../src/core/links.ts'
import { ReadCountingBlockstore } from './fixtures/dag.ts'
import { TREE_V1, TREE_V2, addTree, dagBlocks, treeVersions } from './fixtures/dags.ts'
import { testNodes } from './fixtures/nodes.ts'
import type { Block } from './fixtures/dag.ts'
import type { TreeVersions } from './fixtures/dags.ts'
import type { TestNode, TestNodeOptions } from './fixtures/nodes.ts'
import type { ServedSession } from '../src/index.ts'
import type { CID } from 'multiformats/cid'

interface Versions extends TreeVersions {
  server: TestNode
}

/** Checks that the store holds every block of `expected` under `root` and nothing else under it */
async function expectMirrored (node: TestNode, root: CID, expected: Map<string, Block>): Promise<void> {
  const walked = await dagBlocks(node.blockstore, root)
  expect([...walked.keys()].sort()).to.deep.equal([...expected.keys()].sort())
}

/** Waits until `done` holds, up to 5 s */
async function until (done: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000
  while (!done()) {
    if (Date.now() > deadline) {
      throw new Error('timed out waiting')
    }
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

describe('the record of DAGs held whole', function () {
  this.timeout(60_000)
  const { node, addr } = testNodes()

  async function versions (): Promise<Versions> {
    const server = await node()
    return { server, ...await treeVersions(server) }
  }

  /** A client that pulled v1 from the versions' server (and so recorded it), and a v1 block v2 shares */
  async function pulledV1 (options: TestNodeOptions): Promise<{ setup: Versions, client: TestNode, shared: Block }> {
    const setup = await versions()
    const client = await node(options)
    await client.carMirror.pull(addr(setup.server), setup.v1)
    return { setup, client, shared: sharedBlock(setup) }
  }

  /** A v1 block that v2 links to as well, below the root: a leaf of a file both versions share */
  function sharedBlock (setup: Versions): Block {
    const shared = [...setup.v1Blocks.values()].find(block => setup.v2Blocks.has(block.cid.toString()) && !block.cid.equals(setup.v1))
    if (shared == null) {
      throw new Error('v1 and v2 share no block')
    }
    return shared
  }

  it('a pull records its DAG: the next pull hinting it walks none of it and receives only the new blocks', async () => {
    const setup = await versions()
    const client = await node()
    const cold = await client.carMirror.pull(addr(setup.server), setup.v1)
    expect(cold.recordedHintBlocks).to.equal(0)

    const warm = await client.carMirror.pull(addr(setup.server), setup.v2, { hints: [setup.v1] })

    expect(warm.recordedHintBlocks).to.equal(setup.v1Blocks.size)
    expect(warm.blocksReceived).to.equal(setup.fresh.size)
    expect(warm.duplicateBlocks).to.equal(0)
    await expectMirrored(client, setup.v2, setup.v2Blocks)
  })

  it('a push server records what it received: the next push hinting it reads none of it there', async () => {
    const setup = await versions()
    const served: ServedSession[] = []
    const store = new ReadCountingBlockstore()
    const server = await node({ blockstore: store, allowPush: () => true, onSession: session => { served.push(session) } })
    await setup.server.carMirror.push(addr(server), setup.v1)
    const withLinks = [...setup.v1Blocks.values()].filter(block => block.cid.code !== 0x55 && !setup.fresh.has(block.cid.toString()))
    expect(withLinks).to.not.be.empty()
    const readsBefore = withLinks.map(block => store.readsOf(block.cid))

    const stats = await setup.server.carMirror.push(addr(server), setup.v2, { hints: [setup.v1] })

    await until(() => served.length === 2)
    // read before the checks below, which read the whole DAG
    expect(withLinks.map(block => store.readsOf(block.cid))).to.deep.equal(readsBefore)
    expect(served.map(session => session.recordedHintBlocks)).to.deep.equal([0, setup.v1Blocks.size])
    expect(stats.blocksSent).to.equal(setup.fresh.size)
    expect(stats.duplicateBlocks).to.equal(0)
    await expectMirrored(server, setup.v2, setup.v2Blocks)
  })

  it('lasts across a restart in Helia\'s datastore', async () => {
    const setup = await versions()
    const blockstore = new MemoryBlockstore()
    const datastore = new MemoryDatastore()
    const first = await node({ blockstore, datastore })
    await first.carMirror.pull(addr(setup.server), setup.v1)
    await first.stop()

    const again = await node({ blockstore, datastore })
    const warm = await again.carMirror.pull(addr(setup.server), setup.v2, { hints: [setup.v1] })

    expect(warm.recordedHintBlocks).to.equal(setup.v1Blocks.size)
    await expectMirrored(again, setup.v2, setup.v2Blocks)
  })

  it('a block deleted through helia.blockstore clears it: the next pull finds the block missing and fetches it again', async () => {
    const { setup, client, shared } = await pulledV1({ offlineRouting: true })
    await client.blockstore.delete(shared.cid)

    const warm = await client.carMirror.pull(addr(setup.server), setup.v2, { hints: [setup.v1] })

    expect(warm.recordedHintBlocks).to.equal(0)
    expect(await client.blockstore.has(shared.cid)).to.be.true()
    await expectMirrored(client, setup.v2, setup.v2Blocks)
  })

  it('deleteMany through helia.blockstore and helia.gc() clear it too', async () => {
    const { setup, client, shared } = await pulledV1({ offlineRouting: true })
    await drain(client.blockstore.deleteMany([shared.cid]))
    let warm = await client.carMirror.pull(addr(setup.server), setup.v2, { hints: [setup.v1] })
    expect(warm.recordedHintBlocks).to.equal(0)
    await expectMirrored(client, setup.v2, setup.v2Blocks)

    // v2 is recorded now; gc deletes every block (none is pinned), so v2 must not be trusted
    expect(await client.carMirror.recordComplete(setup.v2)).to.be.true()
    await client.gc()
    warm = await client.carMirror.pull(addr(setup.server), setup.v2, { hints: [setup.v2] })
    expect(warm.recordedHintBlocks).to.equal(0)
    await expectMirrored(client, setup.v2, setup.v2Blocks)
  })

  it('recordComplete records a DAG written another way, and refuses one with a missing block', async () => {
    const client = await node()
    const v1 = await addTree(client, TREE_V1)
    const server = await node()
    const v2 = await addTree(server, TREE_V2)
    await addTree(server, TREE_V1)
    expect(await client.carMirror.recordComplete(v1)).to.be.true()
    const stats = await client.carMirror.pull(addr(server), v2, { hints: [v1] })
    expect(stats.recordedHintBlocks).to.be.greaterThan(0)

    const partial = await node()
    const root = await addTree(partial, TREE_V1)
    const blocks = await dagBlocks(partial.blockstore, root)
    const leaf = [...blocks.values()].find(block => !block.cid.equals(root))
    await partial.carMirror.forgetComplete()
    // straight from the store under Helia's wrappers: the record would not hear of it
    await (partial.blockstore as unknown as { unwrap(): MemoryBlockstore }).unwrap().delete(leaf?.cid as CID)
    expect(await partial.carMirror.recordComplete(root)).to.be.false()
  })

  it('a block deleted while a warm pull runs is looked up again once the record forgets: the pull fetches it', async () => {
    const blockstore = new MemoryBlockstore()
    const { setup, client } = await pulledV1({ blockstore })
    // an old block that a new block below the root links to: the pull meets the link after its first block
    const reader = new LinkReader()
    const linked = new Map<string, Block>()
    for (const block of setup.fresh.values()) {
      if (!block.cid.equals(setup.v2)) {
        for (const link of await reader.links(block.cid, block.bytes)) {
          const old = setup.v1Blocks.get(link.toString())
          if (old != null) {
            linked.set(link.toString(), old)
          }
        }
      }
    }
    const rootLinks = new Set((await reader.links(setup.v2, setup.v2Blocks.get(setup.v2.toString())?.bytes ?? new Uint8Array())).map(String))
    const target = [...linked.values()].find(block => !rootLinks.has(block.cid.toString()))
    if (target == null) {
      throw new Error('no old block is linked from a new block below the root')
    }
    let deleted = false

    const warm = await client.carMirror.pull(addr(setup.server), setup.v2, {
      hints: [setup.v1],
      onProgress: (event) => {
        if (event.type === 'car-mirror:block:received' && !deleted) {
          deleted = true
          // gone at once from the store, and the record told (as a delete through Helia does, before it deletes)
          void client.carMirror.forgetComplete()
          void blockstore.delete(target.cid)
        }
      }
    })

    expect(deleted).to.be.true()
    // the record was trusted when the pull began
    expect(warm.recordedHintBlocks).to.equal(setup.v1Blocks.size)
    expect(await blockstore.has(target.cid)).to.be.true()
    await expectMirrored(client, setup.v2, setup.v2Blocks)
  })

  it('forgetComplete drops what a delete outside Helia made wrong', async () => {
    const blockstore = new MemoryBlockstore()
    const { setup, client, shared } = await pulledV1({ blockstore })
    // another handle on the same store: CAR Mirror cannot see this delete
    await blockstore.delete(shared.cid)
    await client.carMirror.forgetComplete()

    const warm = await client.carMirror.pull(addr(setup.server), setup.v2, { hints: [setup.v1] })

    expect(warm.recordedHintBlocks).to.equal(0)
    await expectMirrored(client, setup.v2, setup.v2Blocks)
  })

  it('maxCompleteRoots 0 turns it off', async () => {
    const setup = await versions()
    const client = await node({ maxCompleteRoots: 0 })
    await client.carMirror.pull(addr(setup.server), setup.v1)
    const warm = await client.carMirror.pull(addr(setup.server), setup.v2, { hints: [setup.v1] })
    expect(warm.recordedHintBlocks).to.equal(0)
    expect(await client.carMirror.recordComplete(setup.v1)).to.be.false()
    await expectMirrored(client, setup.v2, setup.v2Blocks)
  })
})
