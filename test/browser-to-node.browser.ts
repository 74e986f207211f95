import { unixfs } from '@helia/unixfs'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import all from 'it-all'
import { CID } from 'multiformats/cid'
import { concat as uint8ArrayConcat } from 'uint8arrays/concat'
import { walkDag } from '../src/core/walk.ts'
import { addTree, pseudoRandomBytes, TREE_V1, TREE_V2 } from './fixtures/dags.ts'
import { createTestNode } from './fixtures/nodes.ts'
import type { TestNode } from './fixtures/nodes.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Every block under `root` in the node's store, read without the network */
async function localBlocks (node: TestNode, root: CID): Promise<Map<string, number>> {
  const blocks = new Map<string, number>()
  for await (const block of walkDag(node.blockstore, [root], { offline: true })) {
    blocks.set(block.cid.toString(), block.bytes.byteLength)
  }
  return blocks
}

describe('a browser Helia node mirrors with a Node Helia node', function () {
  this.timeout(120_000)
  let server: Multiaddr[]
  let v1: CID
  let v2: CID
  let client: TestNode

  before(() => {
    server = (process.env.CAR_MIRROR_SERVER ?? '').split(',').filter(Boolean).map(addr => multiaddr(addr))
    expect(server, 'the before hook in .aegir.js must start the server').to.not.be.empty()
    v1 = CID.parse(process.env.CAR_MIRROR_V1 ?? '')
    v2 = CID.parse(process.env.CAR_MIRROR_V2 ?? '')
  })

  beforeEach(async () => {
    client = await createTestNode()
  })

  afterEach(async () => {
    await client?.stop()
  })

  it('pulls a UnixFS tree cold, then its next version warm', async () => {
    const cold = await client.carMirror.pull(server, v1)
    const v1Blocks = await localBlocks(client, v1)
    expect(cold.blocksReceived).to.equal(v1Blocks.size)
    expect(cold.duplicateBlocks).to.equal(0)

    // the client rebuilds v1 from its files: the same root proves the bytes arrived intact
    const rebuilt = await createTestNode()
    try {
      expect((await addTree(rebuilt, TREE_V1)).toString()).to.equal(v1.toString())
    } finally {
      await rebuilt.stop()
    }

    const warm = await client.carMirror.pull(server, v2, { hints: [v1] })
    const v2Blocks = await localBlocks(client, v2)
    const newBlocks = [...v2Blocks.keys()].filter(key => !v1Blocks.has(key))
    const newBytes = newBlocks.reduce((sum, key) => sum + (v2Blocks.get(key) ?? 0), 0)
    const allBytes = [...v2Blocks.values()].reduce((sum, size) => sum + size, 0)
    expect(warm.blocksReceived - warm.duplicateBlocks).to.equal(newBlocks.length)
    expect(warm.blockBytesReceived).to.be.lessThan(allBytes / 4)
    expect(warm.blockBytesReceived).to.be.at.least(newBytes)
  })

  it('pulls v2 from two Node servers at once (CAR Pool): the whole tree, both named in the stats', async () => {
    const second = (process.env.CAR_MIRROR_SERVER_2 ?? '').split(',').filter(Boolean).map(addr => multiaddr(addr))
    expect(second, 'the before hook in .aegir.js must start the second server').to.not.be.empty()

    const stats = await client.carMirror.pull(v2, { providers: [server, second] })

    const blocks = await localBlocks(client, v2)
    expect(stats.providers).to.have.length(2)
    expect(stats.providers?.every(provider => provider.error == null)).to.be.true()
    expect(stats.blocksReceived - stats.duplicateBlocks).to.equal(blocks.size)
    // the same tree imported here has the same blocks, of the same sizes
    const reference = await createTestNode()
    try {
      expect((await addTree(reference, TREE_V2)).toString()).to.equal(v2.toString())
      expect([...blocks].sort()).to.deep.equal([...await localBlocks(reference, v2)].sort())
    } finally {
      await reference.stop()
    }
  })

  it('pushes a DAG made in the browser, and another browser node pulls it back', async () => {
    const content = pseudoRandomBytes(700_000, Date.now() % 0xffffffff)
    const root = await unixfs(client).addBytes(content)
    const pushed = await client.carMirror.push(server, root)
    expect(pushed.blocksSent).to.equal((await localBlocks(client, root)).size)

    const other = await createTestNode()
    try {
      const pulled = await other.carMirror.pull(server, root)
      expect(pulled.blocksReceived).to.equal(pushed.blocksSent)
      expect(uint8ArrayConcat(await all(unixfs(other).cat(root, { offline: true })))).to.equalBytes(content)
    } finally {
      await other.stop()
    }
  })
})
