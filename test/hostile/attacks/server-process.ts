/**
 * The attacked server, in a process of its own (started by ./server.ts with
 * `child_process.fork`): a Helia light node with CAR Mirror on
 * /ip4/127.0.0.1/tcp/0/ws, with the library's defaults except where the
 * config says (pushes allowed, pulls only for named peers). It seeds the
 * DAGs the attacks need, tells its addresses over IPC, and answers
 * `mark` / `report` / `cids` requests.
 */

import { mkdirSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { unixfs } from '@helia/unixfs'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { FsBlockstore } from 'blockstore-fs'
import { pseudoRandomBytes, putBlocks } from '../../fixtures/dags.ts'
import { createTestNode } from '../../fixtures/nodes.ts'
import { HEAVY_LINKS, honestDags, linkHeavyBlock, wideDag } from './dags.ts'
import { Monitor } from './monitor.ts'
import { ownTime } from './own-time.ts'
import type { Request, Response, ServerConfig, ServerReady, ServerReport } from './server.ts'
import type { CarMirrorInit } from '../../../src/index.ts'
import type { Block } from '../../fixtures/dag.ts'
import type { Blockstore } from 'interface-blockstore'

const config = JSON.parse(process.argv[2]) as ServerConfig
const send = (message: ServerReady | Response): void => {
  process.send?.(message)
}

const monitor = new Monitor()
const started = Date.now()

/**
 * The server runs under V8's CPU profiler from the mark to the report, so
 * that each stall can be split into the library's own time and the rest
 * (./own-time.ts). ATTACK_SERVER_PROFILE=<dir> also writes the profile
 * there as <pid>.cpuprofile, with `markedAtUs`, the mark's time on the
 * profile's clock (the monotonic clock, µs)
 */
const profileDir = process.env.ATTACK_SERVER_PROFILE
const profiler = new Session()
/** The library's sources: frames from modules under here are its own */
const SOURCE_URL = new URL('../../../src/', import.meta.url).href
/** Sampling interval of the profiler, µs */
const SAMPLING_US = 500
let markedAtUs = 0

let blockstore: Blockstore
if (config.fileDir != null) {
  mkdirSync(config.fileDir, { recursive: true })
  const fs = new FsBlockstore(config.fileDir)
  await fs.open()
  blockstore = fs
} else {
  blockstore = new MemoryBlockstore()
}

/** Blocks under hints that served sessions took from the record of DAGs held whole rather than walked */
let recordedHintBlocks = 0
const init: CarMirrorInit = {
  onSession: (session) => { recordedHintBlocks += session.recordedHintBlocks ?? 0 }
}
if (config.allowPush === true) {
  init.allowPush = () => true
}
if (config.pullers != null) {
  const pullers = new Set(config.pullers)
  init.allowPull = (peer) => pullers.has(peer.toString())
}
const node = await createTestNode({ blockstore, ...init })

let wide: Block[] = []
const roots: ServerReady['roots'] = {}
await putBlocks(node.blockstore, (await honestDags(config.honestDags)).flat())
if (config.wide === true) {
  wide = await wideDag()
  await putBlocks(node.blockstore, wide)
  roots.wide = wide[0].cid.toString()
}
if (config.heavyRoot === true) {
  const heavy = await linkHeavyBlock(HEAVY_LINKS, 'server-root')
  await node.blockstore.put(heavy.cid, heavy.bytes)
  roots.heavy = heavy.cid.toString()
}
if (config.fileBytes != null) {
  // @helia/unixfs cuts 1 MiB chunks: a balanced tree of raw 1 MiB leaves
  const cid = await unixfs(node).addBytes(pseudoRandomBytes(config.fileBytes, 0xf11e))
  roots.file = cid.toString()
}

function stats (): unknown {
  const mirror = node.carMirror as { stats?(): unknown }
  if (typeof mirror.stats !== 'function') {
    return undefined
  }
  try {
    // plain data only: the report crosses the IPC channel
    return JSON.parse(JSON.stringify(mirror.stats()))
  } catch (err) {
    return `stats() failed: ${(err as Error).message}`
  }
}

async function answer (request: Request): Promise<unknown> {
  switch (request.type) {
    case 'mark':
      // started before the mark: starting the profiler stalls the event loop
      profiler.connect()
      await profiler.post('Profiler.enable')
      await profiler.post('Profiler.setSamplingInterval', { interval: SAMPLING_US })
      await profiler.post('Profiler.start')
      await monitor.mark()
      markedAtUs = Number(process.hrtime.bigint() / 1000n)
      return null
    case 'report': {
      // stopping the profiler stalls too: no late tick is taken from here on
      monitor.freeze()
      const { profile } = await profiler.post('Profiler.stop')
      profiler.disconnect()
      if (profileDir != null) {
        mkdirSync(profileDir, { recursive: true })
        writeFileSync(`${profileDir}/${process.pid}.cpuprofile`, JSON.stringify({ ...profile, markedAtUs }))
      }
      const report: ServerReport = { sessions: node.carMirror.activeSessions, stats: stats(), recordedHintBlocks, ...await monitor.report(ownTime(profile, SOURCE_URL)) }
      return report
    }
    case 'cids':
      return wide.slice(request.from, request.from + request.count).map(block => block.cid.bytes)
    case 'stop':
      monitor.stop()
      await node.stop()
      setTimeout(() => process.exit(0), 10).unref()
      return null
    default:
      throw new Error(`unknown request ${(request as { type: string }).type}`)
  }
}

process.on('message', (request: Request) => {
  answer(request).then(
    result => { send({ id: request.id, result }) },
    (err: Error) => { send({ id: request.id, error: `${err.name}: ${err.message}` }) }
  )
})
process.on('disconnect', () => {
  // the test process went away: do not linger
  process.exit(0)
})

send({
  type: 'ready',
  addrs: node.libp2p.getMultiaddrs().map(ma => ma.toString()),
  peerId: node.libp2p.peerId.toString(),
  roots,
  seedMs: Date.now() - started
})
