/* eslint-disable no-console */
// Errors: what a pull or push throws when the peer cannot be reached, does not
// speak CAR Mirror, refuses, lacks blocks, or takes too long. Compare
// `err.name`: CAR Mirror's typed errors are exported (SessionRefusedError.name
// is 'SessionRefusedError'); libp2p's dial errors come through as they are.
//
// Run: node examples/errors.ts (in this repository after `npm run build`: the
// package name resolves to dist/)
import { withLibp2pLight } from '@helia/libp2p'
import { unixfs } from '@helia/unixfs'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { createHeliaLight } from 'helia'
import { BlocksNotAvailableError, withCarMirror } from 'helia-car-mirror'
import { walkDag } from 'helia-car-mirror/core'
import type { HeliaWithLibp2p } from 'helia-car-mirror'

/** A Helia node that listens on WebSockets at 127.0.0.1; call `start()` on it */
function createNode (blockstore = new MemoryBlockstore()): HeliaWithLibp2p {
  return withLibp2pLight(createHeliaLight({ blockstore }), {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    connectionGater: { denyDialMultiaddr: () => false }
  })
}

/** Runs `what` and prints the error it throws */
async function show (title: string, what: () => Promise<unknown>): Promise<void> {
  try {
    await what()
    console.info(`${title}: no error`)
  } catch (err: any) {
    console.info(`${title}: ${err.name}: ${err.message}`)
    if (err.name === BlocksNotAvailableError.name) {
      console.info(`  err.cids: ${err.cids.join(', ')}`)
    }
  }
}

/** A file of three 1 MiB chunks, different for each seed */
const chunks = (seed: number): Uint8Array => Uint8Array.from({ length: 3 * 1024 * 1024 }, (_, i) => (i * seed) % 251)

const serverStore = new MemoryBlockstore()
const client = withCarMirror(createNode())
const server = withCarMirror(createNode(serverStore)) // accepts pushes from nobody (the default)
const plain = createNode() // a Helia node without CAR Mirror
await Promise.all([client.start(), server.start(), plain.start()])
const addrs = server.libp2p.getMultiaddrs()
const file = await unixfs(server).addBytes(chunks(1))

await show('peer without CAR Mirror', async () => client.carMirror.pull(plain.libp2p.getMultiaddrs(), file))

// the same peer once it has stopped: nothing listens at its address any more
const gone = plain.libp2p.getMultiaddrs()
await plain.stop()
await show('unreachable address', async () => client.carMirror.pull(gone, file))

await show('refused push', async () => {
  const own = await unixfs(client).addBytes(new TextEncoder().encode('not welcome'))
  return client.carMirror.push(addrs, own)
})

await show('aborted pull', async () => client.carMirror.pull(addrs, file, { signal: AbortSignal.timeout(1) }))

// the server loses the second chunk of another file: the client stores every
// block it can get, then the error names the ones the server lacks
const broken = await unixfs(server).addBytes(chunks(7))
const blocks = []
for await (const block of walkDag(server.blockstore, [broken])) {
  blocks.push(block.cid)
}
await serverStore.delete(blocks[1])
console.info(`the server lost ${blocks[1]}`)
await show('missing blocks', async () => client.carMirror.pull(addrs, broken))

await client.stop()
await server.stop()
