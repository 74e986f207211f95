/**
 * A helia-car-mirror node that holds the conformance fixture, for running
 * the kit against it or for checking another implementation's client
 * against a known server: `npm run conformance:serve -- [--listen
 * /ip4/127.0.0.1/tcp/4011/ws] [--refuse-push] [--empty] [--idle-timeout 60000]`.
 * It prints its multiaddrs and runs until interrupted.
 */

import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { withLibp2pLight } from '@helia/libp2p'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { MemoryDatastore } from 'datastore-core/memory'
import { createHeliaLight } from 'helia'
import { withCarMirror } from '../../src/index.ts'
import { buildFixture } from './fixture.ts'
import type { HeliaWithCarMirror } from '../../src/index.ts'
import type { Helia } from '@helia/interface'
import type { HeliaWithLibp2p } from '@helia/libp2p'

export type ServeNode = Helia & HeliaWithLibp2p<Record<string, unknown>> & HeliaWithCarMirror

export interface ServeOptions {
  /** Listen address; default /ip4/127.0.0.1/tcp/0/ws */
  listen?: string
  /** Accept pushes from anyone; default true */
  allowPush?: boolean
  /** Start without the fixture (to try `npm run conformance -- --seed push`) */
  empty?: boolean
  idleTimeout?: number
}

/** A started node with CAR Mirror that holds every block of the fixture (test/conformance/fixture.ts) */
export async function startServeNode (options: ServeOptions = {}): Promise<ServeNode> {
  const fx = await buildFixture()
  const blockstore = new MemoryBlockstore()
  for (const { cid, bytes } of options.empty === true ? [] : fx.seed.blocks) {
    await blockstore.put(cid, bytes)
  }
  const helia = withCarMirror(withLibp2pLight(createHeliaLight({ blockstore, datastore: new MemoryDatastore() }), {
    addresses: { listen: [options.listen ?? '/ip4/127.0.0.1/tcp/0/ws'] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    connectionGater: { denyDialMultiaddr: () => false }
  }), {
    allowPush: options.allowPush === false ? undefined : () => true,
    idleTimeout: options.idleTimeout
  })
  await helia.start()
  return helia as unknown as ServeNode
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      listen: { type: 'string' },
      'refuse-push': { type: 'boolean', default: false },
      empty: { type: 'boolean', default: false },
      'idle-timeout': { type: 'string' }
    }
  })
  const node = await startServeNode({
    listen: values.listen,
    allowPush: values['refuse-push'] !== true,
    empty: values.empty,
    idleTimeout: values['idle-timeout'] == null ? undefined : Number(values['idle-timeout'])
  })
  const fx = await buildFixture()
  /* eslint-disable no-console */
  console.log(`helia-car-mirror conformance server (pushes ${values['refuse-push'] === true ? 'refused' : 'accepted'})`)
  console.log(values.empty === true
    ? 'holds nothing (push the fixture with --seed push)'
    : `holds the fixture: F ${fx.F}, P ${fx.P}, O ${fx.O} (${fx.seed.blocks.length} blocks; X ${fx.X} is missing on purpose)`)
  for (const addr of node.libp2p.getMultiaddrs()) {
    console.log(addr.toString())
  }
  /* eslint-enable no-console */
  const stop = (): void => {
    node.stop().finally(() => process.exit(0))
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}
