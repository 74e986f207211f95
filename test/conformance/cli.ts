/**
 * Runs the server-role transcripts against any peer that speaks
 * /car-mirror/stream/1.0.0 over WebSockets (see README.md next to this
 * file), for example `npm run conformance -- --peer MULTIADDR --push allowed`,
 * `npm run conformance -- --self` or
 * `npm run conformance -- --write-car fixture.car`.
 */

import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import { carFile, buildFixture } from './fixture.ts'
import { report, runTranscript } from './run.ts'
import { startServeNode } from './serve.ts'
import { expectHeader, finishPush, openPush, sendBlocks } from './session.ts'
import { createTester } from './tester.ts'
import { TRANSCRIPTS } from './transcripts.ts'
import type { Fixture } from './fixture.ts'
import type { RunSettings } from './run.ts'
import type { ServeNode } from './serve.ts'
import type { Need, Transcript } from './transcripts.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

/* eslint-disable no-console */

const USAGE = `usage: npm run conformance -- (--peer MULTIADDR | --self) [options]
       npm run conformance -- --write-car FILE
       npm run conformance -- --list

  --peer MULTIADDR     the peer under test (a /ws address with /p2p/ id)
  --push MODE          allowed: the peer accepts pushes from the kit; refused: it refuses them;
                       skip (default): leave out the push transcripts
  --seed push          push the fixture to the peer first (needs --push allowed);
                       otherwise the peer must already hold it (--write-car, conformance:serve)
  --only ID,ID         run only these transcripts
  --timeout MS         wait this long for each expected frame (default 5000)
  --quiet MS           silence that counts as "the peer wrote nothing more" (default 500)
  --keepalive MS       how long the keepalive transcripts keep a session busy (default 3000)
  --self               start a helia-car-mirror node holding the fixture and test it
  --verbose            print the frames of passing transcripts too
  --write-car FILE     write the fixture as a CARv1 file (roots F, P, O) and exit
  --list               list the transcripts and the rules they check, and exit`

const { values } = parseArgs({
  options: {
    peer: { type: 'string' },
    push: { type: 'string', default: 'skip' },
    seed: { type: 'string', default: 'none' },
    only: { type: 'string' },
    timeout: { type: 'string', default: '5000' },
    quiet: { type: 'string', default: '500' },
    keepalive: { type: 'string', default: '3000' },
    self: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
    'write-car': { type: 'string' },
    list: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false }
  }
})

const fx = await buildFixture()

if (values.help === true) {
  console.log(USAGE)
  process.exit(0)
}

if (values.list === true) {
  for (const t of TRANSCRIPTS) {
    console.log(`${t.id.padEnd(30)} [${t.rules.join(' ')}]${t.needs.length > 0 ? ` needs ${t.needs.join(', ')}` : ''}\n    ${t.title}`)
  }
  process.exit(0)
}

if (values['write-car'] != null) {
  await writeFile(values['write-car'], carFile(fx.seed.roots, fx.seed.blocks))
  console.log(`wrote ${fx.seed.blocks.length} blocks, roots F ${fx.F}, P ${fx.P}, O ${fx.O} to ${values['write-car']}`)
  process.exit(0)
}

if (values.peer == null && values.self !== true) {
  console.error(USAGE)
  process.exit(2)
}

const push = values.self === true ? 'both' : values.push
if (!['allowed', 'refused', 'skip', 'both'].includes(push)) {
  console.error(`--push must be allowed, refused or skip, not ${push}`)
  process.exit(2)
}

// the peers: one given, or (--self) two local nodes, one refusing pushes
const started: ServeNode[] = []
let target: (needs: Need[]) => Multiaddr[]
if (values.self === true) {
  const open = await startServeNode({ idleTimeout: 2000 })
  const strict = await startServeNode({ allowPush: false, idleTimeout: 2000 })
  started.push(open, strict)
  target = needs => (needs.includes('push-refused') ? strict : open).libp2p.getMultiaddrs()
  console.log(`testing local helia-car-mirror nodes ${open.libp2p.peerId} (pushes accepted) and ${strict.libp2p.peerId} (refused)`)
} else {
  const addr = multiaddr(values.peer as string)
  target = () => [addr]
  console.log(`testing ${addr.toString()} (pushes: ${push})`)
}

const tester = await createTester()
const settings: RunSettings = {
  tester,
  fx,
  target,
  timeout: Number(values.timeout),
  quiet: Number(values.quiet),
  keepaliveMs: Number(values.keepalive)
}

/** Why a transcript cannot run against this peer, if it cannot */
function skipReason (t: Transcript): string | undefined {
  if (t.needs.includes('push-allowed') && push !== 'allowed' && push !== 'both') {
    return 'needs --push allowed'
  }
  if (t.needs.includes('push-refused') && push !== 'refused' && push !== 'both') {
    return 'needs --push refused'
  }
  return undefined
}

/** Pushes F, P (whose X nobody holds) and O to the peer */
async function seedByPush (fixture: Fixture): Promise<void> {
  const seed: Transcript = {
    id: 'seed',
    rules: [],
    needs: ['push-allowed'],
    title: 'push the fixture',
    run: async (ctx) => {
      for (const root of fixture.seed.roots) {
        const p = await openPush(ctx, { graph: fixture.graph, root, b: fixture.b })
        await sendBlocks(p, fixture.graph.blocksUnder([root]))
        const outcome = await finishPush(p, root.equals(fixture.P) ? [fixture.X] : [])
        const last = outcome.last
        if (!(last.kind === 'control' && (last.type === 'done' || (last.type === 'error' && last.map.c === 'not-found')))) {
          throw new Error(`pushing ${fixture.graph.name(root)} ended with ${p.conn.describe(last)}`)
        }
        p.conn.abort()
      }
    }
  }
  const result = await runTranscript(seed, settings)
  if (!result.ok) {
    throw new Error(`seeding by push failed\n${report(result)}`)
  }
}

/** Checks that the peer serves F's root; a clear hint when it does not */
async function preflight (): Promise<void> {
  const check: Transcript = {
    id: 'preflight',
    rules: [],
    needs: ['fixture'],
    title: 'the peer holds the fixture',
    run: async (ctx) => {
      const conn = await ctx.open('sender')
      await conn.pull([ctx.fx.F], [ctx.fx.F])
      await expectHeader(conn, [ctx.fx.F])
      const first = await conn.read('the block F', 'preflight')
      if (!(first.kind === 'block' && first.cid.equals(ctx.fx.F))) {
        throw new Error(`the peer does not serve F (it wrote ${conn.describe(first)}): load the fixture (--write-car) or use --seed push`)
      }
    }
  }
  const result = await runTranscript(check, settings)
  if (!result.ok) {
    console.log(report(result))
    console.log('continuing: transcripts that need the fixture will fail')
  }
}

let passed = 0
let failed = 0
let skipped = 0
try {
  if (values.seed === 'push') {
    await seedByPush(fx)
    console.log('pushed the fixture')
  }
  await preflight()
  const only = values.only?.split(',')
  for (const t of TRANSCRIPTS) {
    if (only != null && !only.includes(t.id)) {
      continue
    }
    const reason = skipReason(t)
    if (reason != null) {
      skipped++
      console.log(`  skip  ${t.id.padEnd(30)} (${reason})`)
      continue
    }
    const result = await runTranscript(t, settings)
    if (result.ok) {
      passed++
      console.log(`  pass  ${t.id.padEnd(30)} [${t.rules.join(' ')}] ${result.ms} ms`)
      if (values.verbose === true) {
        console.log(result.log.map(line => `          ${line}`).join('\n'))
      }
    } else {
      failed++
      console.log(`  FAIL  ${t.id.padEnd(30)} [${t.rules.join(' ')}]`)
      console.log(`        ${t.title}`)
      console.log(report(result).split('\n').map(line => `        ${line}`).join('\n'))
    }
  }
} finally {
  await tester.stop()
  await Promise.all(started.map(async node => node.stop()))
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`)
process.exit(failed > 0 ? 1 : 0)
