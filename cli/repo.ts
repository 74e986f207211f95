/**
 * The CLI's node: Helia on a repository folder (blocks and datastore on
 * disk, so the peer id and the blocks survive between runs), libp2p over
 * WebSockets with noise and yamux, and CAR Mirror.
 */

import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { withLibp2pLight } from '@helia/libp2p'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { peerIdFromString } from '@libp2p/peer-id'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { FsBlockstore } from 'blockstore-fs'
import { FsDatastore } from 'datastore-fs'
import { createHeliaLight } from 'helia'
import { withCarMirror } from 'helia-car-mirror'
import type { Helia } from '@helia/interface'
import type { HeliaWithLibp2p } from '@helia/libp2p'
import type { CarMirrorInit, HeliaWithCarMirror } from 'helia-car-mirror'

export type CliNode = Helia & HeliaWithLibp2p<Record<string, unknown>> & HeliaWithCarMirror

export interface OpenRepoOptions extends Pick<CarMirrorInit, 'onSession'> {
  /** Multiaddrs to listen on; none for a client */
  listen?: string[]
  /** Peer ids whose pushes are accepted */
  allowPush?: string[]
}

/**
 * Opens (creating it if needed) the repository at `dir` and starts a node on
 * it. The caller stops it.
 *
 * @example
 *
 * ```ts
 * const node = await openRepo('/tmp/repo', { listen: ['/ip4/127.0.0.1/tcp/0/ws'] })
 * console.info(node.libp2p.peerId.toString())
 * await node.stop()
 * ```
 */
export async function openRepo (dir: string, options: OpenRepoOptions = {}): Promise<CliNode> {
  await mkdir(dir, { recursive: true })
  const blockstore = new FsBlockstore(join(dir, 'blocks'))
  const datastore = new FsDatastore(join(dir, 'datastore'))
  await blockstore.open()
  await datastore.open()
  // parsed up front, so a bad peer id is a usage error before anything listens
  const pushers = new Set((options.allowPush ?? []).map(id => peerIdFromString(id).toString()))
  const helia = withLibp2pLight(createHeliaLight({ blockstore, datastore }), {
    addresses: { listen: options.listen ?? [] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    // the user names the address to dial, private ones (127.0.0.1, a LAN) included
    connectionGater: { denyDialMultiaddr: () => false }
  })
  const node = withCarMirror(helia, {
    allowPush: peer => pushers.has(peer.toString()),
    onSession: options.onSession
  })
  await node.start()
  return node as unknown as CliNode
}
