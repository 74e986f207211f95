/**
 * The CLI's node: Helia on a repository folder (blocks and datastore on
 * disk, so the peer id and the blocks survive between runs), libp2p over
 * WebSockets with noise and yamux, and CAR Mirror.
 */

import { mkdir, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { withLibp2pLight } from '@helia/libp2p'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
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
  /** Peer ids (as strings, already parsed) whose pushes are accepted */
  allowPush?: ReadonlySet<string>
}

/**
 * The number of blocks in the repository at `dir` and their total size, read
 * from the file sizes: FsBlockstore keeps each block in its own `.data` file
 * under `blocks/`, so no block is read.
 *
 * @example
 *
 * ```ts
 * const { blocks, bytes } = await repoBlockTotals('/tmp/repo')
 * ```
 */
export async function repoBlockTotals (dir: string): Promise<{ blocks: number, bytes: number }> {
  const blocksDir = join(dir, 'blocks')
  let blocks = 0
  let bytes = 0
  for (const entry of await readdir(blocksDir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile() && entry.name.endsWith('.data')) {
      blocks++
      bytes += (await stat(join(entry.parentPath, entry.name))).size
    }
  }
  return { blocks, bytes }
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
  const pushers = options.allowPush ?? new Set<string>()
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
