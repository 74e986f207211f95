/* eslint-disable no-console */
// The server of the browser example page: a Node Helia node with CAR Mirror
// that listens on WebSockets at 127.0.0.1 and accepts pushes, and an HTTP
// server on 127.0.0.1 that serves the page (page.ts, bundled with esbuild in
// memory at start) and /config.json, which names the Helia node's addresses.
//
// Run: npm run example:browser [-- --port 8080] (or PORT=8080), then open the
// URL it prints first. Ctrl-C stops it.
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import { basename } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { withLibp2pLight } from '@helia/libp2p'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { MemoryDatastore } from 'datastore-core/memory'
import { build } from 'esbuild'
import { createHeliaLight } from 'helia'
import { withCarMirror } from '../../src/index.ts'
import type { HeliaWithCarMirror, ServedSession } from '../../src/index.ts'
import type { HeliaWithLibp2p } from '@helia/libp2p'
import type { Plugin } from 'esbuild'
import type { Helia } from 'helia'
import type { IncomingMessage, ServerResponse } from 'node:http'

export interface ExampleServerOptions {
  /** HTTP port on 127.0.0.1; 0 (the default) picks a free one */
  port?: number
  /** Called with each CAR Mirror session a page opened, once it has ended */
  onSession?(session: ServedSession): void
}

export interface ExampleServer {
  /** The page's URL, `http://127.0.0.1:PORT/` */
  url: string
  /** The Helia node that pages push to and pull from */
  helia: Helia & HeliaWithLibp2p<Record<string, unknown>> & HeliaWithCarMirror
  /** Stops the HTTP server and the Helia node */
  stop(): Promise<void>
}

/** A file the HTTP server answers with */
interface Asset {
  type: string
  body: string | Uint8Array
}

/** Resolves the package's own name, which page.ts imports as users do, to its source */
const ownPackage: Plugin = {
  name: 'helia-car-mirror-source',
  setup (build) {
    build.onResolve({ filter: /^helia-car-mirror(\/core)?$/ }, args => ({
      path: fileURLToPath(new URL(args.path.endsWith('/core') ? '../../src/core/index.ts' : '../../src/index.ts', import.meta.url))
    }))
  }
}

/** page.ts and what it imports as one ES module for the browser, with its source map, in memory */
async function bundlePage (): Promise<Map<string, Asset>> {
  const result = await build({
    entryPoints: [fileURLToPath(new URL('page.ts', import.meta.url))],
    outfile: fileURLToPath(new URL('page.js', import.meta.url)),
    write: false,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: 'linked',
    logLevel: 'warning',
    define: {
      global: 'globalThis',
      'process.env.NODE_ENV': '"production"'
    },
    plugins: [ownPackage]
  })
  const assets = new Map<string, Asset>()
  for (const file of result.outputFiles) {
    assets.set(`/${basename(file.path)}`, {
      type: file.path.endsWith('.map') ? 'application/json' : 'text/javascript; charset=utf-8',
      body: file.contents
    })
  }
  return assets
}

/**
 * Starts the example: the Helia node, the page's bundle and the HTTP server.
 * Both listen on 127.0.0.1 only.
 */
export async function startExampleServer (options: ExampleServerOptions = {}): Promise<ExampleServer> {
  const helia = withCarMirror(withLibp2pLight(createHeliaLight({
    blockstore: new MemoryBlockstore(),
    datastore: new MemoryDatastore()
  }), {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  }), {
    // A local demo: any page that reaches this node may push to it. A real
    // server decides who may push (allowPush) and how much (pushQuota).
    allowPush: () => true,
    onSession: options.onSession
  })
  await helia.start()

  try {
    const assets = await bundlePage()
    assets.set('/', { type: 'text/html; charset=utf-8', body: await readFile(new URL('index.html', import.meta.url)) })
    assets.set('/config.json', {
      type: 'application/json',
      body: JSON.stringify({ serverAddrs: helia.libp2p.getMultiaddrs().map(addr => addr.toString()) })
    })

    const http = createServer((request: IncomingMessage, response: ServerResponse) => {
      const asset = request.method === 'GET' || request.method === 'HEAD' ? assets.get(new URL(request.url ?? '/', 'http://localhost').pathname) : undefined
      if (asset == null) {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
        return
      }
      response.writeHead(200, { 'content-type': asset.type, 'cache-control': 'no-store' })
      response.end(request.method === 'HEAD' ? undefined : asset.body)
    })
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject)
      http.listen(options.port ?? 0, '127.0.0.1', () => {
        http.off('error', reject)
        resolve()
      })
    })
    const address = http.address()
    if (address == null || typeof address === 'string') {
      throw new Error('the HTTP server has no TCP address')
    }

    return {
      url: `http://127.0.0.1:${address.port}/`,
      helia,
      async stop () {
        http.closeAllConnections()
        await new Promise<void>(resolve => { http.close(() => { resolve() }) })
        await helia.stop()
      }
    }
  } catch (err) {
    await helia.stop()
    throw err
  }
}

/** The port from `--port`, else the PORT environment variable, else 0 */
function portOption (): number {
  const { values } = parseArgs({ options: { port: { type: 'string' } } })
  const text = values.port ?? process.env.PORT ?? '0'
  const port = Number(text)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`not a port: ${text}`)
  }
  return port
}

if (import.meta.main) {
  const server = await startExampleServer({
    port: portOption(),
    onSession: session => {
      const figures = session.kind === 'push'
        ? `${session.blocksReceived} blocks received (${session.blockBytesReceived} bytes)`
        : `${session.blocksSent} blocks sent (${session.blockBytesSent} bytes)`
      console.info(`${session.kind} ${session.outcome}: ${session.roots.join(',')} by ${session.peer}, ${figures}${session.error != null ? `: ${session.error.message}` : ''}`)
    }
  })
  console.info(`open ${server.url}`)
  console.info(`CAR Mirror node ${server.helia.libp2p.peerId} on ${server.helia.libp2p.getMultiaddrs().join(' ')}`)

  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) {
      process.exit(1)
    }
    stopping = true
    console.info(`${signal}: stopping`)
    server.stop().then(() => {
      process.exitCode = 0
    }, (err: Error) => {
      console.error(err)
      process.exitCode = 1
    })
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}
