/**
 * The Helia mixin used the ways issue 11 found broken: on a node without
 * libp2p, added before libp2p, and used before start().
 */
import { inspect } from 'node:util'
import { withLibp2pLight } from '@helia/libp2p'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { MemoryDatastore } from 'datastore-core/memory'
import { createHeliaLight } from 'helia'
import { MissingLibp2pError, NotStartedError, PROTOCOL_ID, withCarMirror } from '../src/index.ts'
import { TREE_V1, addLargeFile, addTree } from './fixtures/dags.ts'
import { testNodes } from './fixtures/nodes.ts'
import { rejection } from './fixtures/rejection.ts'

function light (): ReturnType<typeof createHeliaLight> {
  return createHeliaLight({ blockstore: new MemoryBlockstore(), datastore: new MemoryDatastore() })
}

describe('withCarMirror on unusual nodes', () => {
  const { node } = testNodes()

  it('a node without libp2p fails to start with MissingLibp2pError, not a TypeError', async () => {
    const helia = withCarMirror(light())
    const err = await rejection(helia.start())
    expect(err).to.be.an.instanceOf(MissingLibp2pError)
    expect(err.message).to.match(/withLibp2p/)
    await helia.stop()
  })

  it('helia.carMirror before start() throws NotStartedError naming what to do', () => {
    const helia = withCarMirror(light())
    expect(() => helia.carMirror.pull).to.throw(NotStartedError, /helia\.start\(\)/)
    // logging the node before it starts still works
    expect(inspect(helia.carMirror)).to.be.a('string')
  })

  it('added before libp2p, it starts with the node and serves and makes pulls', async () => {
    const helia = withLibp2pLight(withCarMirror(light()), {
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] },
      transports: [webSockets()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() },
      connectionGater: { denyDialMultiaddr: () => false }
    })
    await helia.start()
    try {
      const root = await addTree(helia, TREE_V1)
      const other = await node()
      const pulled = await other.carMirror.pull(helia.libp2p.getMultiaddrs(), root)
      expect(pulled.blocksReceived).to.be.above(0)
      const back = await node()
      const root2 = await addTree(back, TREE_V1.map(file => ({ ...file, path: `again/${file.path}` })))
      const stats = await helia.carMirror.pull(back.libp2p.getMultiaddrs(), root2)
      expect(stats.blocksReceived).to.be.above(0)
    } finally {
      await helia.stop()
    }
  })
})

describe('CarMirror start and stop', () => {
  const { node } = testNodes()

  it('isStarted() follows start() and stop(), and is false on the stand-in before start', async () => {
    const helia = withCarMirror(light())
    expect(helia.carMirror.isStarted()).to.be.false()
    const started = await node()
    expect(started.carMirror.isStarted()).to.be.true()
    await started.carMirror.stop()
    expect(started.carMirror.isStarted()).to.be.false()
  })

  it('stop() resolves only once the sessions it aborted have ended and closed their streams', async () => {
    const server = await node()
    const client = await node()
    const root = await addLargeFile(server, 16 * 1024 * 1024, 21)
    let received = 0
    let firstBlock = (): void => {}
    const started = new Promise<void>(resolve => { firstBlock = resolve })
    const pull = client.carMirror.pull(server.libp2p.getMultiaddrs(), root, {
      onProgress: (evt) => {
        if (evt.type === 'car-mirror:block:received' && ++received === 1) {
          firstBlock()
        }
      }
    })
    const outcome = rejection(pull)
    await started
    await client.carMirror.stop()
    expect(client.carMirror.activeSessions.outbound).to.equal(0)
    const open = client.libp2p.getConnections().flatMap(connection => connection.streams).filter(stream => stream.protocol.startsWith(PROTOCOL_ID) && stream.status === 'open')
    expect(open).to.deep.equal([])
    expect((await outcome).message).to.match(/stopping/)
  })
})
