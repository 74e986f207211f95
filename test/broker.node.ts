/**
 * CAR Mirror as a Helia block broker: `pins.add`, `unixfs.cat` and plain
 * `blockstore.get` on a node whose broker is CAR Mirror fetch what they
 * need from a connected peer, the `providers` given or what routing finds,
 * move only what was asked for (a path's directories, not their siblings),
 * share pulls between concurrent readers, and leave the race to Bitswap
 * when no provider speaks CAR Mirror.
 */
import { unixfs } from '@helia/unixfs'
import * as dagPb from '@ipld/dag-pb'
import { expect } from 'aegir/chai'
import all from 'it-all'
import { base32 } from 'multiformats/bases/base32'
import { concat } from 'uint8arrays/concat'
import { PROTOCOL_ID } from '../src/index.ts'
import { getBytes } from './fixtures/dag.ts'
import { TREE_V1, addLargeFile, addTree, allBlocks, dagBlocks, dagCids, fileContent, pseudoRandomBytes, putBlocks, totalBytes } from './fixtures/dags.ts'
import { FaultyBlockstore } from './fixtures/faulty-blockstore.ts'
import { connectTo, routerTo, testNodes } from './fixtures/nodes.ts'
import { rejection } from './fixtures/rejection.ts'
import { KiB, eventually, sleep } from './hostile/helpers.ts'
import type { ServedSession } from '../src/index.ts'
import type { TestNode } from './fixtures/nodes.ts'
import type { CatOptions } from '@helia/unixfs'
import type { Blockstore } from 'interface-blockstore'
import type { CID } from 'multiformats/cid'

const BITSWAP_PROTOCOL = '/ipfs/bitswap/1.2.0'

/** A deep file of TREE_V1: five directories down (root, src, lib, deep, deeper), 600 KiB in three chunks, with siblings at every level */
const DEEP_PATH = 'src/lib/deep/deeper/deepest.bin'

/** The whole content of a UnixFS file (or of `options.path` under a directory) read through Helia's blockstore */
async function cat (node: TestNode, cid: CID, options: CatOptions = {}): Promise<Uint8Array> {
  return concat(await all(unixfs(node).cat(cid, options)))
}

/** The CIDs of the directories from `root` down `path` (root included) and of the entry `path` names, read from a store that holds them */
async function pathCids (store: Pick<Blockstore, 'get'>, root: CID, path: string): Promise<CID[]> {
  const cids = [root]
  for (const name of path.split('/')) {
    const directory = dagPb.decode(await getBytes(store, cids[cids.length - 1]))
    const link = directory.Links.find(link => link.Name === name)
    if (link == null) {
      throw new Error(`no ${name} under ${path}`)
    }
    cids.push(link.Hash)
  }
  return cids
}

/** A block's multihash as text: a blockstore is keyed by multihash, so what `getAll` lists comes back with the raw codec */
function hashOf (cid: CID): string {
  return base32.encode(cid.multihash.bytes)
}

/** The multihashes of every block in a node's store */
async function storeHashes (node: TestNode): Promise<string[]> {
  return (await allBlocks(node.blockstore)).map(block => hashOf(block.cid))
}

describe('CAR Mirror block broker', () => {
  const { node } = testNodes()

  it('pins.add on a node whose only broker is CAR Mirror pulls a deep tree from a connected peer, once per block, and the DAG survives gc()', async () => {
    const server = await node()
    const client = await node()
    const root = await addTree(server, TREE_V1)
    const blocks = await dagCids(server.blockstore, root)
    await connectTo(client, server)

    await all(client.pins.add(root))

    expect(await dagCids(client.blockstore, root)).to.deep.equal(blocks)
    expect(await client.pins.isPinned(root)).to.be.true()
    const { broker } = client.carMirror.stats()
    // the whole DAG in one pull, each block once
    expect(broker.pulls).to.equal(1)
    expect(broker.blocksReceived).to.equal(blocks.length)
    await client.gc()
    expect(await dagCids(client.blockstore, root)).to.deep.equal(blocks)
  })

  it('unixfs cat of a multi-block file from a connected peer returns its bytes, each block received once', async () => {
    const server = await node()
    const client = await node()
    const file = await addLargeFile(server, 700 * KiB, 1001)
    const blocks = await dagCids(server.blockstore, file)
    // a dag-pb file node over three 256 KiB raw leaves
    expect(blocks).to.have.lengthOf(4)
    await connectTo(client, server)

    expect(await cat(client, file)).to.equalBytes(pseudoRandomBytes(700 * KiB, 1001))

    expect(await dagCids(client.blockstore, file)).to.deep.equal(blocks)
    const { broker } = client.carMirror.stats()
    expect(broker.blocksReceived).to.equal(blocks.length)
    // the file node alone, then everything under it: not one pull per leaf
    expect(broker.pulls).to.be.at.most(2)
  })

  it('unixfs cat of a path deep in a directory moves only the directories on the path and the file, no sibling', async () => {
    const server = await node()
    const client = await node()
    const root = await addTree(server, TREE_V1)
    const tree = await dagCids(server.blockstore, root)
    const onPath = await pathCids(server.blockstore, root, DEEP_PATH)
    const directories = onPath.slice(0, -1)
    const fileBlocks = [...(await dagBlocks(server.blockstore, onPath[onPath.length - 1])).values()].map(block => block.cid)
    const expected = [...directories, ...fileBlocks].map(hashOf).sort()
    expect(directories).to.have.lengthOf(5)
    expect(fileBlocks).to.have.lengthOf(4)
    // the siblings are most of the tree: fetching any of them would show
    expect(tree.length).to.be.above(expected.length + 20)
    await connectTo(client, server)
    const before = await storeHashes(client)

    const bytes = await cat(client, root, { path: DEEP_PATH })

    expect(bytes).to.equalBytes(fileContent(TREE_V1.find(file => file.path === DEEP_PATH) ?? TREE_V1[0]))
    // pulls still under way after cat returned would show now
    await sleep(300)
    const added = (await storeHashes(client)).filter(hash => !before.includes(hash)).sort()
    expect(added).to.deep.equal(expected)
    const { broker } = client.carMirror.stats()
    expect(broker.shallowPulls).to.be.at.least(1)
    expect(broker.blocksReceived).to.equal(expected.length)
  })

  it('cat with providers given reaches a peer not connected before', async () => {
    const server = await node()
    const client = await node()
    const file = await addLargeFile(server, 520 * KiB, 1002)
    const blocks = await dagCids(server.blockstore, file)

    // nothing connected, no providers, routing finds none: nowhere to fetch from
    const none = await rejection(cat(client, file, { signal: AbortSignal.timeout(10_000) }))
    expect(none.name).to.equal('LoadBlockFailedError')
    expect(client.libp2p.getConnections(server.libp2p.peerId)).to.be.empty()

    const bytes = await cat(client, file, { providers: [server.libp2p.getMultiaddrs()] })

    expect(bytes).to.equalBytes(pseudoRandomBytes(520 * KiB, 1002))
    expect(await dagCids(client.blockstore, file)).to.deep.equal(blocks)
    expect(client.carMirror.stats().broker.blocksReceived).to.equal(blocks.length)
  })

  it('cat with two providers given pulls from both at once (CAR Pool), each sending part of the file', async () => {
    const sent = new Map<string, number>()
    const onSession = (name: string) => (session: ServedSession): void => {
      sent.set(name, (sent.get(name) ?? 0) + session.blockBytesSent)
    }
    // both read each block in 5 ms: their stores pace them, not loopback
    // buffers, so little is in flight when one takes work from the other
    const stores = [new FaultyBlockstore(), new FaultyBlockstore()]
    for (const store of stores) {
      store.delay = 5
    }
    const a = await node({ onSession: onSession('a'), blockstore: stores[0] })
    const b = await node({ onSession: onSession('b'), blockstore: stores[1] })
    const client = await node()
    const file = await addLargeFile(a, 4 * 1024 * KiB, 1003)
    await putBlocks(b.blockstore, (await dagBlocks(a.blockstore, file)).values())

    const bytes = await cat(client, file, { providers: [a.libp2p.getMultiaddrs(), b.libp2p.getMultiaddrs()] })

    expect(bytes).to.equalBytes(pseudoRandomBytes(4 * 1024 * KiB, 1003))
    // the servers count a session once it has ended (the first may be a shallow pull of the root);
    // how the leaves split depends on which connection is up first (a faster provider takes work from a slower one)
    expect(await eventually(() => (sent.get('a') ?? 0) > 0 && (sent.get('b') ?? 0) > 0), `a sent ${sent.get('a')}, b sent ${sent.get('b')}`).to.be.true()
    expect(Math.min(sent.get('a') ?? 0, sent.get('b') ?? 0)).to.be.at.least(256 * KiB)
    // at most two leaves of 256 KiB twice (in flight when work moved), and the root's block from each session
    expect((sent.get('a') ?? 0) + (sent.get('b') ?? 0)).to.be.below(4.5 * 1024 * KiB + 4 * KiB)
  })

  it('pins.add and cat reach a provider that routing finds, with no connection before', async () => {
    const server = await node()
    const root = await addTree(server, TREE_V1)
    const file = await addLargeFile(server, 600 * KiB, 1003)
    const asked: string[] = []
    const router = routerTo(server, asked)

    const pinner = await node({ routers: [router] })
    await all(pinner.pins.add(root))
    expect(await dagCids(pinner.blockstore, root)).to.deep.equal(await dagCids(server.blockstore, root))
    expect(await pinner.pins.isPinned(root)).to.be.true()
    expect(asked).to.include(root.toString())

    const reader = await node({ routers: [router] })
    expect(await cat(reader, file)).to.equalBytes(pseudoRandomBytes(600 * KiB, 1003))
    expect(asked).to.include(file.toString())
    expect(reader.carMirror.stats().broker.blocksReceived).to.equal((await dagCids(server.blockstore, file)).length)
  })

  it('a peer without CAR Mirror is served by Bitswap: CAR Mirror finds no provider and Bitswap wins the race', async () => {
    const server = await node({ carMirror: false, bitswap: true })
    const client = await node({ bitswap: true })
    const file = await addLargeFile(server, 600 * KiB, 1004)
    await connectTo(client, server, BITSWAP_PROTOCOL)
    expect((await client.libp2p.peerStore.get(server.libp2p.peerId)).protocols).to.not.include(PROTOCOL_ID)

    const started = Date.now()
    const bytes = await cat(client, file, { signal: AbortSignal.timeout(10_000) })

    expect(bytes).to.equalBytes(pseudoRandomBytes(600 * KiB, 1004))
    expect(Date.now() - started).to.be.below(5000)
    const { broker } = client.carMirror.stats()
    // CAR Mirror was asked, and received nothing: Bitswap brought every block
    expect(broker.retrieves).to.be.at.least(1)
    expect(broker.blocksReceived).to.equal(0)
    // and its pull ended, failed, rather than hanging on a peer that cannot answer
    expect(await eventually(() => client.carMirror.stats().broker.failures >= 1), 'a failed CAR Mirror pull').to.be.true()
  })

  it('pins.add from a peer without CAR Mirror: the pull fails, Helia\'s walk goes on over Bitswap, and the DAG is pinned whole', async () => {
    const server = await node({ carMirror: false, bitswap: true })
    const client = await node({ bitswap: true })
    const root = await addTree(server, TREE_V1)
    const blocks = await dagCids(server.blockstore, root)
    await connectTo(client, server, BITSWAP_PROTOCOL)

    const pinned = await all(client.pins.add(root, { signal: AbortSignal.timeout(20_000) }))

    expect(await dagCids(client.blockstore, root)).to.deep.equal(blocks)
    expect(new Set(pinned.map(String))).to.have.property('size', blocks.length)
    expect(await client.pins.isPinned(root)).to.be.true()
    expect(client.carMirror.stats().broker.failures).to.be.at.least(1)
    await client.gc()
    expect(await dagCids(client.blockstore, root)).to.deep.equal(blocks)
  })

  it('pins.add yields every block of the DAG once, those the store held before included', async () => {
    const server = await node()
    const client = await node()
    const root = await addTree(server, TREE_V1)
    const blocks = await dagBlocks(server.blockstore, root)
    // the client already holds a third of the blocks
    const held = [...blocks.values()].filter((_, i) => i % 3 === 0)
    for (const block of held) {
      await client.blockstore.put(block.cid, block.bytes)
    }
    await connectTo(client, server)

    const pinned = (await all(client.pins.add(root))).map(String)

    expect([...pinned].sort()).to.deep.equal([...blocks.keys()].sort())
    for (const block of held) {
      expect(await client.pins.isPinned(block.cid), String(block.cid)).to.be.true()
    }
    expect(client.carMirror.stats().broker.blocksReceived).to.equal(blocks.size - held.length)
  })

  it('broker: false adds no broker: a missing block is not fetched, although CAR Mirror still pulls when asked', async () => {
    const server = await node()
    const client = await node({ broker: false })
    const root = await addTree(server, TREE_V1)
    await connectTo(client, server)

    const err = await rejection(all(client.blockstore.get(root, { signal: AbortSignal.timeout(10_000) })))
    expect(err.name).to.equal('InvalidConfigurationError')
    expect(err.message).to.match(/No block brokers/)
    expect(await client.blockstore.has(root)).to.be.false()

    await client.carMirror.pull(root)
    expect(await dagCids(client.blockstore, root)).to.deep.equal(await dagCids(server.blockstore, root))

    // the same get on a node with the default broker fetches the block
    const other = await node()
    await connectTo(other, server)
    expect(concat(await all(other.blockstore.get(root)))).to.equalBytes(await getBytes(server.blockstore, root))
  })

  it('two concurrent cats of one file share the pull: each block is received once', async () => {
    const server = await node()
    const client = await node()
    const file = await addLargeFile(server, 1200 * KiB, 1005)
    const blocks = await dagBlocks(server.blockstore, file)
    // a dag-pb file node over five leaves
    expect(blocks.size).to.equal(6)
    await connectTo(client, server)

    const [first, second] = await Promise.all([cat(client, file), cat(client, file)])

    const expected = pseudoRandomBytes(1200 * KiB, 1005)
    expect(first).to.equalBytes(expected)
    expect(second).to.equalBytes(expected)
    const { broker } = client.carMirror.stats()
    expect(broker.blocksReceived).to.equal(blocks.size)
    expect(broker.blockBytesReceived).to.equal(totalBytes(blocks.values()))
    expect(broker.pulls).to.be.at.most(2)
  })
})
