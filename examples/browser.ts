// CAR Mirror in a web page or a web worker: a browser Helia node pulls a DAG
// from a Helia node with CAR Mirror on this machine or the LAN (one that
// listens on WebSockets, e.g. /ip4/127.0.0.1/tcp/4001/ws), then reads a file
// of it without the network. test/browser-example.browser.ts runs this file in
// Chromium and in a web worker against a Node server on 127.0.0.1.
import { unixfs } from '@helia/unixfs'
import { multiaddr } from '@multiformats/multiaddr'
import { createHelia } from 'helia'
import { withCarMirror } from 'helia-car-mirror'
import { CID } from 'multiformats/cid'
import { concat } from 'uint8arrays/concat'
import type { Helia } from 'helia'
import type { HeliaWithCarMirror, TransferStats } from 'helia-car-mirror'

/** A Helia node for the browser with CAR Mirror; call `start()` on it */
export function createBrowserNode (): Helia & HeliaWithCarMirror {
  return withCarMirror(createHelia({
    libp2p: {
      // In a browser, libp2p's default connection gater denies dials to
      // private addresses (127.0.0.1, 192.168.x.x, ...) and to plain ws://,
      // so dialling a server on this machine or the LAN fails with
      // DialDeniedError. Allow them: only for such a server. A public server
      // should listen on wss:// with a DNS name, and the page keep the
      // default gater. (The other libp2p defaults stay: options given here
      // replace the defaults key by key.)
      connectionGater: {
        denyDialMultiaddr: () => false
      }
    }
  }))
}

/** Pulls the DAG under `root` from the server, then reads the file at `path` under it from the local blockstore */
export async function pullFile (helia: Helia & HeliaWithCarMirror, serverAddrs: string[], root: string, path: string): Promise<{ stats: TransferStats, bytes: Uint8Array }> {
  const cid = CID.parse(root)
  const stats = await helia.carMirror.pull(serverAddrs.map(addr => multiaddr(addr)), cid, {
    pin: true, // pinned once complete: it survives helia.gc()
    signal: AbortSignal.timeout(60_000)
  })
  const chunks: Uint8Array[] = []
  for await (const chunk of unixfs(helia).cat(cid, { path, offline: true })) {
    chunks.push(chunk)
  }
  return { stats, bytes: concat(chunks) }
}
