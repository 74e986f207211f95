/**
 * The conformance kit against helia-car-mirror: every server-role transcript
 * runs against real Helia nodes over WebSockets on 127.0.0.1 (one that
 * accepts pushes, one that refuses them, both holding the fixture), plus
 * checks that the kit covers every MUST of docs/PROTOCOL.md and that the
 * kit's own Bloom filter matches the document's known answers.
 */

import { readFile } from 'node:fs/promises'
// the client-role suite runs with this one (test/node.ts imports this file only)
import './client-role.node.ts'
import { expect } from 'aegir/chai'
import { createTestNode } from '../fixtures/nodes.ts'
import { KitBloom } from './bloom.ts'
import { CLIENT_CASES } from './client-cases.ts'
import { Violation } from './conn.ts'
import { buildFixture } from './fixture.ts'
import { report, runTranscript } from './run.ts'
import { createTester } from './tester.ts'
import { TRANSCRIPTS, citedRules } from './transcripts.ts'
import { body } from './wire.ts'
import type { Fixture } from './fixture.ts'
import type { RunSettings } from './run.ts'
import type { Tester } from './tester.ts'
import type { Transcript } from './transcripts.ts'
import type { TestNode } from '../fixtures/nodes.ts'

/** The servers' idle timeout: keepalive transcripts run longer than this */
const SERVER_IDLE_MS = 1500
/** How long the kit waits for an expected frame */
const TIMEOUT_MS = 2000

/**
 * What helia-car-mirror's local policy (PROTOCOL.md §8) makes it do in some
 * transcripts, so that those do not pass without checking anything
 */
const LOCAL_POLICY: Record<string, string[]> = {
  'sync-waits-for-status': ['sync']
}

/**
 * MUST rules no transcript can check from the outside, and why
 */
export const NOT_ON_THE_WIRE: Record<string, string> = {
  'T-3': 'reading while writing: a peer that does not deadlocks only under flow-control pressure from both sides; every transcript would time out'
}

/** Rule ids of docs/PROTOCOL.md, with their text */
async function documentedRules (): Promise<Map<string, string>> {
  const lines = (await readFile('docs/PROTOCOL.md', 'utf8')).split('\n')
  const rules = new Map<string, string>()
  let current: string | undefined
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]
    const start = /^- \*\*([A-Z]-\d+)\*\*/.exec(line)
    if (start != null) {
      current = start[1]
      rules.set(current, line)
      continue
    }
    // a rule runs over its indented lines (and blank lines between them)
    if (current != null && (line.startsWith('  ') || (line === '' && (lines[i + 1] ?? '').startsWith('  ')))) {
      rules.set(current, `${rules.get(current) ?? ''}\n${line}`)
    } else {
      current = undefined
    }
  }
  return rules
}

describe('conformance kit', () => {
  it('kit Bloom: the known answers of PROTOCOL.md §5', () => {
    const bloom = new KitBloom(2, 12)
    expect(bloom.indices(Uint8Array.of(1, 2, 3))).to.deep.equal([11, 5, 1, 10, 14, 8, 7, 3, 12, 5, 12, 0])
    bloom.add(Uint8Array.of(1, 2, 3))
    expect(bloom.bytes).to.equalBytes(Uint8Array.of(0xab, 0x5d))
  })

  it('every rule id cited by a transcript or client case exists in PROTOCOL.md, and every MUST is cited', async () => {
    const rules = await documentedRules()
    const cited = citedRules([...TRANSCRIPTS, ...CLIENT_CASES])
    expect([...cited].filter(id => !rules.has(id)), 'cited but not in PROTOCOL.md').to.deep.equal([])
    const must = [...rules].filter(([, text]) => text.includes('MUST')).map(([id]) => id)
    expect(must.length).to.be.above(40)
    expect(must.filter(id => !cited.has(id) && NOT_ON_THE_WIRE[id] == null), 'MUST rules with no transcript').to.deep.equal([])
  })

  it('transcript ids are unique', () => {
    const ids = [...TRANSCRIPTS, ...CLIENT_CASES].map(t => t.id)
    expect(ids.filter((id, i) => ids.indexOf(id) !== i)).to.deep.equal([])
  })
})

/**
 * The kit must catch broken peers: a few transcripts against scripted
 * servers that each break one rule, and the rule the kit names
 */
describe('conformance kit against deliberately broken servers', function () {
  this.timeout(20_000)
  let fx: Fixture
  let kit: Tester
  let broken: Tester

  before(async () => {
    fx = await buildFixture()
    kit = await createTester()
    broken = await createTester(true)
  })

  after(async () => {
    await Promise.all([kit, broken].filter(node => node != null).map(async node => node.stop()))
  })

  /** Runs transcript `id` against a server that answers the pull with `frames` (after reading it), then idles */
  async function violation (id: string, frames: (fx: Fixture) => Array<[Uint8Array, string]>): Promise<string | undefined> {
    const transcript = TRANSCRIPTS.find(t => t.id === id)
    expect(transcript, id).to.not.be.undefined()
    const { result } = await broken.serveOnce({ timeout: TIMEOUT_MS, peer: 'receiver', peerIsClient: true }, async (conn) => {
      await conn.read('the pull')
      for (const [bytes, label] of frames(fx)) {
        await conn.send(bytes, label)
      }
      await conn.poll(TIMEOUT_MS * 2)
    })
    const run = await runTranscript(transcript as Transcript, { tester: kit, fx, target: () => broken.libp2p.getMultiaddrs(), timeout: 500, quiet: 200, keepaliveMs: 500 })
    await result.catch(() => {})
    return run.error instanceof Violation ? run.error.rule : run.error?.message
  }

  const block = (name: string): [Uint8Array, string] => [body.block(fx.b[name].cid, fx.b[name].bytes), `block ${name}`]
  const all = (): Array<[Uint8Array, string]> => fx.graph.blocksUnder([fx.F]).map(b => block(fx.graph.name(b.cid)))

  it('a leaf sent before any block linking to it breaks S-4', async () => {
    expect(await violation('pull-whole-dag', () => [[body.header([fx.F]), 'header'], block('L1'), ...all().filter(([, label]) => label !== 'block L1'), [body.idle(1), 'idle']])).to.equal('S-4')
  })

  it('an idle that does not count the pull breaks S-8', async () => {
    expect(await violation('pull-whole-dag', () => [[body.header([fx.F]), 'header'], ...all(), [body.idle(2), 'idle n=2']])).to.equal('S-8')
  })

  it('a header listing another root breaks S-1', async () => {
    expect(await violation('pull-whole-dag', () => [[body.header([fx.b.A.cid]), 'header [A]']])).to.equal('S-1')
  })

  it('a sender that ignores the Bloom breaks S-6', async () => {
    expect(await violation('pull-bloom', () => [[body.header([fx.F]), 'header'], ...all(), [body.idle(1), 'idle']])).to.equal('S-6')
  })

  it('a non-canonical idle breaks C-1', async () => {
    expect(await violation('pull-whole-dag', () => [[body.header([fx.F]), 'header'], ...all(), [Uint8Array.of(0xa2, 0x61, 0x74, 0x64, 0x69, 0x64, 0x6c, 0x65, 0x61, 0x6e, 0x01), 'idle, t before n']])).to.equal('C-1')
  })

  it('a sender that ends with error not-found instead of missing breaks A-1', async () => {
    expect(await violation('pull-partial', () => [[body.header([fx.P]), 'header'], block('P'), block('Q'), [body.error('not-found', 'gone', [fx.X]), 'error not-found']])).to.equal('A-1')
  })
})

describe('conformance: helia-car-mirror as server (transcripts of test/conformance/transcripts.ts)', function () {
  this.timeout(30_000)
  let fx: Fixture
  let tester: Tester
  let open: TestNode
  let strict: TestNode
  const run: { settings?: RunSettings } = {}

  before(async () => {
    fx = await buildFixture()
    tester = await createTester()
    // accepts pushes; both hold the fixture
    open = await createTestNode({ allowPush: () => true, idleTimeout: SERVER_IDLE_MS })
    strict = await createTestNode({ idleTimeout: SERVER_IDLE_MS })
    for (const node of [open, strict]) {
      for (const { cid, bytes } of fx.seed.blocks) {
        await node.blockstore.put(cid, bytes)
      }
    }
    run.settings = {
      tester,
      fx,
      target: needs => (needs.includes('push-refused') ? strict : open).libp2p.getMultiaddrs(),
      timeout: TIMEOUT_MS,
      quiet: 300,
      keepaliveMs: SERVER_IDLE_MS * 2
    }
  })

  after(async () => {
    await Promise.all([tester, open, strict].filter(node => node != null).map(async node => node.stop()))
  })

  for (const transcript of TRANSCRIPTS) {
    it(`${transcript.id} [${transcript.rules.join(' ')}]: ${transcript.title}`, async () => {
      const result = await runTranscript(transcript, run.settings as RunSettings)
      if (!result.ok) {
        throw new Error(report(result))
      }
      for (const note of LOCAL_POLICY[transcript.id] ?? []) {
        expect(result.notes, `helia-car-mirror's local policy: ${note}\n${report(result)}`).to.include(note)
      }
    })
  }
})
