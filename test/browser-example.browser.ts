import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { createHelia } from 'helia'
import { CID } from 'multiformats/cid'
import { createBrowserNode, pullFile } from '../examples/browser.ts'
import { withCarMirror } from '../src/index.ts'
import { addTree, dagBlocks, fileContent, TREE_V1 } from './fixtures/dags.ts'

// the deepest multi-chunk file of the tree (600 KiB: three 256 KiB chunks)
const FILE = TREE_V1.find(file => file.path === 'src/lib/deep/deeper/deepest.bin')

describe('the README browser example (examples/browser.ts) with a Node server on 127.0.0.1', function () {
  this.timeout(30_000)
  let server: string[]
  let v1: string

  before(() => {
    server = (process.env.CAR_MIRROR_SERVER ?? '').split(',').filter(Boolean)
    expect(server, 'the before hook in .aegir.js must start the server').to.not.be.empty()
    expect(server.every(addr => addr.startsWith('/ip4/127.0.0.1/tcp/') && addr.includes('/ws/')), 'the server listens on plain ws:// at 127.0.0.1').to.be.true()
    v1 = process.env.CAR_MIRROR_V1 ?? ''
  })

  it('pulls the whole tree and reads a file of it offline', async () => {
    if (FILE == null) {
      throw new Error('TREE_V1 has no src/lib/deep/deeper/deepest.bin')
    }
    const helia = createBrowserNode()
    await helia.start()
    try {
      const { stats, bytes } = await pullFile(helia, server, v1, FILE.path)
      expect(bytes).to.equalBytes(fileContent(FILE))

      // the same tree built here has the server's root and tells which blocks it has
      const expected = { blockstore: new MemoryBlockstore() }
      expect((await addTree(expected, TREE_V1)).toString()).to.equal(v1)
      const root = CID.parse(v1)
      const wanted = await dagBlocks(expected.blockstore, root)
      // an offline walk of the browser's store throws on a missing block
      const local = await dagBlocks(helia.blockstore, root)
      expect([...local.keys()]).to.have.members([...wanted.keys()])
      expect(stats.blocksReceived).to.equal(wanted.size)
      expect(stats.duplicateBlocks).to.equal(0)
      expect(await helia.pins.isPinned(root)).to.be.true()
    } finally {
      await helia.stop()
    }
  })

  it('without the connection gater option, the dial to the server is denied (DialDeniedError)', async () => {
    const helia = withCarMirror(createHelia())
    await helia.start()
    try {
      await expect(helia.carMirror.pull(server.map(addr => multiaddr(addr)), CID.parse(v1), { signal: AbortSignal.timeout(10_000) }))
        .to.eventually.be.rejected.with.property('name', 'DialDeniedError')
    } finally {
      await helia.stop()
    }
  })
})
