/* eslint-disable no-console */
// Four Helia nodes with on-disk blockstores mirror a real directory with CAR
// Mirror, next to Bitswap moving the same DAGs:
//
// 1. node A imports a directory (default: the installed libp2p package);
// 2. node B pulls it cold from A with CAR Mirror; node C fetches it with Bitswap;
// 3. B changes a few files and adds one, imports the new version, and pushes
//    it warm to A; node D, which holds the first version, fetches the new one
//    from B with Bitswap.
//
// Run: npm run demo [-- /path/to/a/directory]
import { cp, mkdtemp, readFile, rm, writeFile, appendFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { globSource, unixfs } from '@helia/unixfs'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { FsBlockstore } from 'blockstore-fs'
import { MemoryDatastore } from 'datastore-core/memory'
import { createHeliaLight } from 'helia'
import { walkDag } from '../src/core/index.ts'
import { withCarMirror } from '../src/index.ts'
import type { HeliaWithCarMirror, TransferStats } from '../src/index.ts'
import type { HeliaWithLibp2p } from '@helia/libp2p'
import type { Identify } from '@libp2p/identify'
import type { CID } from 'multiformats/cid'

const source = resolve(process.argv[2] ?? 'node_modules/libp2p')
const work = await mkdtemp(join(tmpdir(), 'car-mirror-demo-'))

async function createNode (name: string): Promise<DemoNode> {
  const blockstore = new FsBlockstore(join(work, name, 'blocks'))
  const datastore = new MemoryDatastore()
  await blockstore.open()
  const helia = withCarMirror(withBitswap(withLibp2pLight(createHeliaLight({ blockstore, datastore }), {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0/ws'] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  })), {
    allowPush: () => true,
    // Helia's own calls (the Bitswap rows' pins.add) stay on Bitswap, so the demo compares the two
    broker: false
  })
  await helia.start()
  return helia
}

type DemoNode = HeliaWithLibp2p<{ identify: Identify }> & HeliaWithCarMirror

async function importDirectory (node: DemoNode, dir: string): Promise<CID> {
  let root: CID | undefined
  for await (const entry of unixfs(node).addAll(globSource(dir, '**/*'), { wrapWithDirectory: true })) {
    root = entry.cid
  }
  if (root == null) {
    throw new Error(`nothing to import in ${dir}`)
  }
  return root
}

async function dagSize (node: DemoNode, root: CID): Promise<{ blocks: number, bytes: number }> {
  let blocks = 0
  let bytes = 0
  for await (const block of walkDag(node.blockstore, [root], { offline: true })) {
    blocks++
    bytes += block.bytes.byteLength
  }
  return { blocks, bytes }
}

/** Fetches a DAG with Bitswap the way a Helia user does: pin it, which walks and fetches every block */
async function bitswapFetch (node: DemoNode, from: DemoNode, root: CID): Promise<number> {
  await node.libp2p.dial(from.libp2p.getMultiaddrs())
  const started = performance.now()
  let pinned = 0
  for await (const cid of node.pins.add(root, { signal: AbortSignal.timeout(600_000) })) {
    pinned += cid == null ? 0 : 1
  }
  if (pinned === 0) {
    throw new Error('Bitswap fetched nothing')
  }
  return performance.now() - started
}

const rows: string[] = []
function row (what: string, method: string, stats: Partial<TransferStats> & { durationMs: number }, dag: { blocks: number, bytes: number }): void {
  const kib = (n?: number): string => n == null ? 'n/a' : (n / 1024).toFixed(1)
  const moved = stats.blocksReceived == null ? 'n/a' : Math.max(stats.blocksReceived, stats.blocksSent ?? 0)
  rows.push(`| ${what} | ${method} | ${moved} / ${dag.blocks} | ${kib(stats.bytesSent)} | ${kib(stats.bytesReceived)} | ${stats.duplicateBlocks ?? 'n/a'} | ${stats.roundTrips ?? 'n/a'} | ${stats.durationMs.toFixed(0)} |`)
}

try {
  console.info(`source directory: ${source}`)
  console.info(`blockstores under: ${work}\n`)
  const [a, b, c, d] = await Promise.all([createNode('a'), createNode('b'), createNode('c'), createNode('d')])

  const v1 = await importDirectory(a, source)
  const v1Size = await dagSize(a, v1)
  console.info(`A imported ${relative(process.cwd(), source)}: ${v1} (${v1Size.blocks} blocks, ${(v1Size.bytes / 1024).toFixed(1)} KiB)`)

  const coldPull = await b.carMirror.pull(a.libp2p.getMultiaddrs(), v1)
  row('cold pull of v1 (B from A)', 'CAR Mirror', coldPull, v1Size)
  const coldBitswap = await bitswapFetch(c, a, v1)
  row('cold fetch of v1 (C from A)', 'Bitswap (pins.add)', { durationMs: coldBitswap }, v1Size)

  // B edits a copy of the directory: three files changed, one added
  const copy = join(work, 'b-files')
  await cp(source, copy, { recursive: true, dereference: true })
  const changed = (await readdir(copy, { recursive: true })).filter(name => name.endsWith('.js')).sort().slice(0, 3)
  for (const name of changed) {
    await appendFile(join(copy, name), `\n// edited by the car mirror demo at ${new Date().toISOString()}\n`)
  }
  await writeFile(join(copy, 'CHANGES.md'), `# Changed\n\n${changed.join('\n')}\n`)
  const v2 = await importDirectory(b, copy)
  const v2Size = await dagSize(b, v2)
  console.info(`B changed ${changed.length} files and added CHANGES.md: ${v2} (${v2Size.blocks} blocks)`)

  const warmPush = await b.carMirror.push(a.libp2p.getMultiaddrs(), v2, { hints: [v1] })
  row('warm push of v2 (B to A)', 'CAR Mirror', warmPush, v2Size)

  await d.carMirror.pull(a.libp2p.getMultiaddrs(), v1)
  const warmBitswap = await bitswapFetch(d, b, v2)
  row('warm fetch of v2 (D holds v1, from B)', 'Bitswap (pins.add)', { durationMs: warmBitswap }, v2Size)

  const original = await readFile(join(source, changed[0]))
  console.info(`\nfirst changed file: ${changed[0]} (${original.byteLength} bytes before the edit)\n`)
  console.info('| transfer | method | blocks moved / DAG | KiB sent | KiB received | duplicates | round trips | ms |')
  console.info('| --- | --- | --- | --- | --- | --- | --- | --- |')
  console.info(rows.join('\n'))
  console.info('\nCAR Mirror byte counts include framing, Bloom filters and control frames; Bitswap bytes are not measured here.')

  await Promise.all([a.stop(), b.stop(), c.stop(), d.stop()])
} finally {
  await rm(work, { recursive: true, force: true })
}
