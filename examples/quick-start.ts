/* eslint-disable no-console */
// Quick start: a server node holds a small folder; a client pulls it with
// CAR Mirror, changes one file and pushes the new version back.
//
// Run: node examples/quick-start.ts (in this repository after `npm run build`: the
// package name resolves to dist/)
import { withLibp2pLight } from '@helia/libp2p'
import { unixfs } from '@helia/unixfs'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { createHeliaLight } from 'helia'
import { withCarMirror } from 'helia-car-mirror'
import type { CarMirrorInit, HeliaWithCarMirror, HeliaWithLibp2p } from 'helia-car-mirror'

/** A Helia node with CAR Mirror, listening on WebSockets at 127.0.0.1 */
async function createNode (init?: CarMirrorInit): Promise<HeliaWithLibp2p & HeliaWithCarMirror> {
  const helia = withCarMirror(withLibp2pLight(createHeliaLight(), {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    // libp2p may dial private addresses such as 127.0.0.1
    connectionGater: { denyDialMultiaddr: () => false }
  }), init)
  await helia.start()
  return helia
}

const encode = (text: string): Uint8Array => new TextEncoder().encode(text)
const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`

const client = await createNode()
// the server accepts pushes from the client only (by default nobody may push)
const server = await createNode({ allowPush: peer => peer.equals(client.libp2p.peerId) })

// the server holds a folder of three files, one of them 2.5 MiB (three chunks)
let root
for await (const entry of unixfs(server).addAll([
  { path: 'site/index.html', content: encode('<h1>Hello from CAR Mirror</h1>\n') },
  { path: 'site/notes.txt', content: encode('A line of notes.\n'.repeat(1000)) },
  { path: 'site/data.bin', content: Uint8Array.from({ length: 2.5 * 1024 * 1024 }, (_, i) => i % 251) }
])) {
  root = entry.cid // the last entry is the folder
}
if (root == null) {
  throw new Error('nothing imported')
}
console.info(`server holds   ${root}`)

// pull: the client names the server's addresses and the root it wants
const pulled = await client.carMirror.pull(server.libp2p.getMultiaddrs(), root)
console.info(`pulled         ${pulled.roots[0]}: ${pulled.blocksReceived} blocks, ${kib(pulled.blockBytesReceived)}`)
console.info(`               ${kib(pulled.bytesSent)} sent, ${kib(pulled.bytesReceived)} received, ${pulled.duplicateBlocks} duplicates, ${pulled.roundTrips} round trip(s), ${pulled.durationMs} ms`)

// the client changes one file: a new root that shares most blocks with the old one
const fs = unixfs(client)
const changed = await fs.addBytes(encode('<h1>Hello again</h1>\n'))
const newRoot = await fs.cp(changed, root, 'index.html', { force: true })
console.info(`client changed ${newRoot}`)

// push: the old root as a hint, so only the new blocks go out
const pushed = await client.carMirror.push(server.libp2p.getMultiaddrs(), newRoot, { hints: [root] })
console.info(`pushed         ${pushed.roots[0]}: ${pushed.blocksSent} blocks, ${kib(pushed.blockBytesSent)}`)
console.info(`               ${kib(pushed.bytesSent)} sent, ${kib(pushed.bytesReceived)} received, ${pushed.roundTrips} round trip(s), ${pushed.durationMs} ms`)

// the server reads the new file from its own store, without the network
let html = ''
for await (const chunk of unixfs(server).cat(newRoot, { path: 'index.html', offline: true })) {
  html += new TextDecoder().decode(chunk)
}
console.info(`server reads   index.html: ${html.trim()}`)

await client.stop()
await server.stop()
