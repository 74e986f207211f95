/**
 * The kit's own libp2p node: WebSockets, noise and yamux, and no CAR Mirror
 * service. It dials the protocol and speaks raw frames (server-role
 * transcripts), or handles it with a script (client-role cases).
 */

import { withLibp2pLight } from '@helia/libp2p'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { MemoryDatastore } from 'datastore-core/memory'
import { createHeliaLight } from 'helia'
import { Conn } from './conn.ts'
import { PROTOCOL } from './wire.ts'
import type { ConnOptions } from './conn.ts'
import type { Libp2p, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface Tester {
  libp2p: Libp2p
  /** Opens a stream to `peer` on the CAR Mirror protocol */
  open(peer: Multiaddr | Multiaddr[], options: ConnOptions): Promise<Conn>
  /**
   * Answers the next inbound CAR Mirror stream with `script`, once the
   * handler is in place; `result` settles with what the script returns or throws
   */
  serveOnce<T>(options: ConnOptions, script: (conn: Conn) => Promise<T>): Promise<{ result: Promise<T> }>
  stop(): Promise<void>
}

/** A started tester; `listen` for client-role cases (a listening address on 127.0.0.1) */
export async function createTester (listen: boolean = false): Promise<Tester> {
  const helia = withLibp2pLight(createHeliaLight({ blockstore: new MemoryBlockstore(), datastore: new MemoryDatastore() }), {
    addresses: { listen: listen ? ['/ip4/127.0.0.1/tcp/0/ws'] : [] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    connectionGater: { denyDialMultiaddr: () => false },
    connectionManager: { inboundConnectionThreshold: 10_000, maxIncomingPendingConnections: 1000 }
  })
  await helia.start()
  const libp2p = helia.libp2p as unknown as Libp2p

  return {
    libp2p,
    async open (peer, options) {
      const stream = await libp2p.dialProtocol(peer, PROTOCOL, { signal: AbortSignal.timeout(options.timeout * 4) })
      return new Conn(stream, options)
    },
    async serveOnce<T>(options: ConnOptions, script: (conn: Conn) => Promise<T>): Promise<{ result: Promise<T> }> {
      let settle!: { resolve(value: T): void, reject(err: unknown): void }
      const result = new Promise<T>((resolve, reject) => { settle = { resolve, reject } })
      // a failing test may never await it: keep the rejection from going unhandled
      result.catch(() => {})
      let taken = false
      await libp2p.handle(PROTOCOL, async (stream: Stream) => {
        if (taken) {
          stream.abort(new Error('the script serves one stream'))
          return
        }
        taken = true
        const conn = new Conn(stream, options)
        try {
          settle.resolve(await script(conn))
        } catch (err) {
          settle.reject(err)
        } finally {
          conn.abort()
        }
      }, { maxInboundStreams: 64, force: true })
      return { result }
    },
    async stop () {
      await helia.stop()
    }
  }
}
