/* eslint-disable no-console */
// Pinning: `pull(peer, root, { pin: true })` pins the DAG once every block is
// held, so it survives `helia.gc()`; a pull without it leaves ordinary
// unpinned blocks, which gc removes.
//
// Run: node examples/pinning.ts (in this repository after `npm run build`: the
// package name resolves to dist/)
import { withLibp2pLight } from '@helia/libp2p'
import { unixfs } from '@helia/unixfs'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { createHeliaLight } from 'helia'
import { withCarMirror } from 'helia-car-mirror'
import { walkDag } from 'helia-car-mirror/core'
import type { Helia } from 'helia'
import type { HeliaWithCarMirror, HeliaWithLibp2p } from 'helia-car-mirror'
import type { CID } from 'multiformats/cid'

/** A Helia node with CAR Mirror, listening on WebSockets at 127.0.0.1 */
async function createNode (): Promise<HeliaWithLibp2p & HeliaWithCarMirror> {
  const helia = withCarMirror(withLibp2pLight(createHeliaLight(), {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    connectionGater: { denyDialMultiaddr: () => false }
  }))
  await helia.start()
  return helia
}

/** A file of `size` bytes that differ from one file to the next */
function content (size: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: size }, (_, i) => (i * seed) % 251)
}

/** How many blocks of the DAG under `root` the node holds and misses, walking its own store only */
async function held (helia: Helia, root: CID): Promise<string> {
  let blocks = 0
  let bytes = 0
  let missing = 0
  for await (const block of walkDag(helia.blockstore, [root], { offline: true, onMissing: () => { missing++ } })) {
    blocks++
    bytes += block.bytes.byteLength
  }
  return `${blocks} blocks (${bytes} bytes) held, ${missing} missing`
}

const server = await createNode()
const client = await createNode()
const serverFs = unixfs(server)
const kept = await serverFs.addBytes(content(2.5 * 1024 * 1024, 3))
const temporary = await serverFs.addBytes(content(2.5 * 1024 * 1024, 5))

// the same pull twice, with and without pin
const addrs = server.libp2p.getMultiaddrs()
const pinnedStats = await client.carMirror.pull(addrs, kept, { pin: true })
const plainStats = await client.carMirror.pull(addrs, temporary)
console.info(`pulled with pin:    ${kept}: ${pinnedStats.blocksReceived} blocks, pinned: ${await client.pins.isPinned(kept)}`)
console.info(`pulled without pin: ${temporary}: ${plainStats.blocksReceived} blocks, pinned: ${await client.pins.isPinned(temporary)}`)

// gc deletes every block no pin holds
await client.gc()
console.info(`after gc: ${kept}: ${await held(client, kept)}`)
console.info(`after gc: ${temporary}: ${await held(client, temporary)}`)

await client.stop()
await server.stop()
