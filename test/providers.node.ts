/**
 * pull(roots, options) and push(roots, options) name no peer: they find one
 * among the `providers` given, connected peers that speak CAR Mirror, and
 * what routing finds, and move on to the next when one cannot serve.
 */
import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { BlocksNotAvailableError, NoProviderError, createCarMirror } from '../src/index.ts'
import { TREE_V1, addTree, dagBlocks, dagCids, putBlocks, totalBytes } from './fixtures/dags.ts'
import { connectTo, testNodes } from './fixtures/nodes.ts'
import { rejection } from './fixtures/rejection.ts'
import type { Provider } from '@helia/interface'

describe('pull without a peer', () => {
  const { node } = testNodes()

  it('pulls from a connected peer that speaks CAR Mirror', async () => {
    const server = await node()
    const client = await node()
    const root = await addTree(server, TREE_V1)
    // identify tells the client which protocols the server speaks
    await connectTo(client, server)
    const stats = await client.carMirror.pull(root)
    expect(await dagCids(client.blockstore, root)).to.deep.equal(await dagCids(server.blockstore, root))
    expect(stats.blocksReceived).to.be.above(0)
  })

  it('pulls right after a dial, before identify has said what the peer speaks; a connected peer without CAR Mirror is passed over', async () => {
    const server = await node()
    const other = await node({ carMirror: false })
    const client = await node()
    const root = await addTree(server, TREE_V1)
    await client.libp2p.dial(other.libp2p.getMultiaddrs())
    await client.libp2p.dial(server.libp2p.getMultiaddrs())
    const stats = await client.carMirror.pull(root)
    expect(await dagCids(client.blockstore, root)).to.deep.equal(await dagCids(server.blockstore, root))
    expect(stats.blocksReceived).to.be.above(0)

    // cat through the broker, also straight after a dial
    const second = await node()
    const file = await addTree(server, TREE_V1.slice(0, 1))
    await second.libp2p.dial(server.libp2p.getMultiaddrs())
    await second.pins.add(file).next()
    expect(await dagCids(second.blockstore, file)).to.deep.equal(await dagCids(server.blockstore, file))
  })

  it('pulls from the providers given, trying the next when one does not speak the protocol', async () => {
    const server = await node()
    const mute = await node()
    const client = await node()
    const root = await addTree(server, TREE_V1)
    // a peer without the protocol (its CAR Mirror stopped) comes first
    await mute.carMirror.stop()
    const stats = await client.carMirror.pull(root, { providers: [mute.libp2p.getMultiaddrs(), server.libp2p.getMultiaddrs()] })
    expect(await dagCids(client.blockstore, root)).to.deep.equal(await dagCids(server.blockstore, root))
    expect(stats.duplicateBlocks).to.equal(0)
  })

  it('goes on from what the first provider sent when it lacks blocks', async () => {
    const full = await node()
    const partial = await node()
    const client = await node()
    const root = await addTree(full, TREE_V1)
    const blocks = await dagBlocks(full.blockstore, root)
    const all = [...blocks.keys()].sort()
    // the partial provider holds everything but three blocks
    const missing = all.slice(-3)
    await putBlocks(partial.blockstore, [...blocks.values()].filter(block => !missing.includes(block.cid.toString())))
    // one after the other (pool.node.ts pulls from both at once)
    const stats = await client.carMirror.pull(root, { providers: [partial.libp2p.getMultiaddrs(), full.libp2p.getMultiaddrs()], pool: false })
    expect(await dagCids(client.blockstore, root)).to.deep.equal(all)
    // each block arrived once: the second pull's Bloom covered what the first sent
    expect(stats.blocksReceived).to.equal(all.length)
    expect(stats.duplicateBlocks).to.equal(0)
  })

  it('asks routing for providers when none is given or connected', async () => {
    const server = await node()
    const client = await node()
    const root = await addTree(server, TREE_V1)
    const asked: string[] = []
    const blockstore = new MemoryBlockstore()
    const mirror = createCarMirror({
      libp2p: client.libp2p,
      blockstore,
      routing: {
        async * findProviders (cid): AsyncGenerator<Provider> {
          asked.push(cid.toString())
          yield { id: server.libp2p.peerId.toCID(), multiaddrs: server.libp2p.getMultiaddrs(), router: 'test', fallback: false }
        }
      }
    })
    await mirror.pull(root)
    expect(asked).to.deep.equal([root.toString()])
    expect(await dagCids(blockstore, root)).to.deep.equal(await dagCids(server.blockstore, root))
  })

  it('fails with NoProviderError when there is none, and says why every one tried failed', async () => {
    const server = await node()
    const client = await node()
    const root = await addTree(server, TREE_V1)
    const none = await rejection(client.carMirror.pull(root))
    expect(none).to.be.an.instanceOf(NoProviderError)
    expect((none as NoProviderError).errors).to.deep.equal([])

    // a provider that lacks the DAG: it answers, the pull fails, nothing else is tried
    const empty = await node()
    const failed = await rejection(client.carMirror.pull(root, { providers: [empty.libp2p.getMultiaddrs()] }))
    expect(failed).to.be.an.instanceOf(NoProviderError)
    expect((failed as NoProviderError).errors.map(err => err.name)).to.deep.equal([BlocksNotAvailableError.name])
  })

  it('a peer named explicitly is the only one tried', async () => {
    const empty = await node()
    const server = await node()
    const client = await node()
    const root = await addTree(server, TREE_V1)
    await client.libp2p.dial(server.libp2p.getMultiaddrs())
    const err = await rejection(client.carMirror.pull(empty.libp2p.getMultiaddrs(), root))
    expect(err).to.be.an.instanceOf(BlocksNotAvailableError)
  })
})

describe('push without a peer', () => {
  const { node } = testNodes()

  it('pushes to the providers given, skipping one that refuses pushes', async () => {
    const refusing = await node()
    const accepting = await node({ allowPush: () => true })
    const client = await node()
    const root = await addTree(client, TREE_V1)
    const stats = await client.carMirror.push(root, { providers: [refusing.libp2p.getMultiaddrs(), accepting.libp2p.getMultiaddrs()] })
    expect(await dagCids(accepting.blockstore, root)).to.deep.equal(await dagCids(client.blockstore, root))
    expect(await refusing.blockstore.has(root)).to.be.false()
    // the refused push's cold call counts too: at most its 1 MiB window went to the refusing peer
    expect(stats.blocksSent).to.be.at.least((await dagCids(client.blockstore, root)).length)
    const dagBytes = totalBytes((await dagBlocks(client.blockstore, root)).values())
    expect(stats.blockBytesSent).to.be.at.most(dagBytes + 1024 * 1024)
  })

  it('pushes to a connected peer that speaks CAR Mirror, and asks routing for holders of the first hint', async () => {
    const server = await node({ allowPush: () => true })
    const client = await node()
    const root = await addTree(client, TREE_V1)
    await connectTo(client, server)
    await client.carMirror.push(root)
    expect(await dagCids(server.blockstore, root)).to.deep.equal(await dagCids(client.blockstore, root))

    const asked: string[] = []
    const other = await node({ allowPush: () => true })
    const mirror = createCarMirror({
      libp2p: (await node()).libp2p,
      blockstore: client.blockstore,
      routing: {
        async * findProviders (cid): AsyncGenerator<Provider> {
          asked.push(cid.toString())
          yield { id: other.libp2p.peerId.toCID(), multiaddrs: other.libp2p.getMultiaddrs(), router: 'test', fallback: false }
        }
      }
    })
    const previous = await addTree({ blockstore: new MemoryBlockstore() }, TREE_V1.slice(0, 3))
    await mirror.push(root, { hints: [previous] })
    expect(asked).to.deep.equal([previous.toString()])
    expect(await dagCids(other.blockstore, root)).to.deep.equal(await dagCids(client.blockstore, root))
  })

  it('fails with NoProviderError listing each refusal when no peer takes the push', async () => {
    const refusing = await node()
    const client = await node()
    const root = await addTree(client, TREE_V1)
    const err = await rejection(client.carMirror.push(root, { providers: [refusing.libp2p.getMultiaddrs()] }))
    expect(err).to.be.an.instanceOf(NoProviderError)
    expect((err as NoProviderError).errors.map(e => e.name)).to.deep.equal(['SessionRefusedError'])
  })
})
