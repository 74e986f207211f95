/* eslint-disable no-console */
// Existing Helia code, unchanged, over CAR Mirror: withCarMirror adds a block
// broker, so `unixfs(helia).cat` and `helia.pins.add` fetch what they lack
// from a peer that speaks CAR Mirror, in one pull per DAG instead of one
// request per block.
//
// Run: node examples/existing-helia.ts (in this repository after `npm run build`: the
// package name resolves to dist/)
import { withLibp2pLight } from '@helia/libp2p'
import { unixfs } from '@helia/unixfs'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { createHeliaLight } from 'helia'
import { withCarMirror } from 'helia-car-mirror'
import type { HeliaWithCarMirror, HeliaWithLibp2p } from 'helia-car-mirror'

/** A Helia node with CAR Mirror (and no other block broker), listening on WebSockets at 127.0.0.1 */
async function createNode (): Promise<HeliaWithLibp2p & HeliaWithCarMirror> {
  const helia = withCarMirror(withLibp2pLight(createHeliaLight(), {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // identify tells the client which protocols the server speaks
    services: { identify: identify() },
    connectionGater: { denyDialMultiaddr: () => false }
  }))
  await helia.start()
  return helia
}

const server = await createNode()
const client = await createNode()

// the server holds a 3 MiB file (three 1 MiB chunks under one node) and a folder with one small file
const serverFs = unixfs(server)
const file = await serverFs.addBytes(Uint8Array.from({ length: 3 * 1024 * 1024 }, (_, i) => i % 251))
const readme = await serverFs.addBytes(new TextEncoder().encode('Mirrored with CAR Mirror\n'))
const folder = await serverFs.cp(readme, await serverFs.addDirectory(), 'README.txt')

// connect: the broker asks connected peers, those identify says speak CAR
// Mirror first, then those not identified yet. Without a connection, pass
// the server to one call instead: cat(file, { providers: [serverAddrs] })
await client.libp2p.dial(server.libp2p.getMultiaddrs())

// unchanged Helia code: read a file the client does not hold
let bytes = 0
for await (const chunk of unixfs(client).cat(file)) {
  bytes += chunk.byteLength
}
console.info(`cat ${file}: ${bytes} bytes`)

// and pin a DAG: one CAR Mirror pull of the whole DAG, pinned as it arrives
let pinned = 0
for await (const cid of client.pins.add(folder)) {
  console.info(`  pinned ${cid}`)
  pinned++
}
console.info(`pins.add ${folder}: ${pinned} blocks pinned`)

// what the broker did: one pull per DAG, not one request per block
const { broker } = client.carMirror.stats()
console.info(`broker: ${broker.retrieves} blocks asked for, ${broker.pulls} pulls, ${broker.blocksReceived} blocks received`)

await client.stop()
await server.stop()
