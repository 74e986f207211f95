/**
 * helia-car-mirror as pull and push client against the kit as a scripted
 * server (test/conformance/client-cases.ts), over WebSockets on 127.0.0.1.
 */

import { createTestNode } from '../fixtures/nodes.ts'
import { CLIENT_CASES } from './client-cases.ts'
import { Violation } from './conn.ts'
import { buildFixture } from './fixture.ts'
import { createTester } from './tester.ts'
import type { ClientEnv } from './client-cases.ts'
import type { Conn } from './conn.ts'
import type { Fixture } from './fixture.ts'
import type { Tester } from './tester.ts'
import type { TestNode, TestNodeOptions } from '../fixtures/nodes.ts'

/** The client's idle timeout: keepalive cases run longer than this */
const CLIENT_IDLE_MS = 1000
const TIMEOUT_MS = 2000

describe('conformance: helia-car-mirror as client (cases of test/conformance/client-cases.ts)', function () {
  this.timeout(30_000)
  let fx: Fixture
  let tester: Tester
  const clients: TestNode[] = []
  /** Frames of the running case, both directions */
  const log: string[] = []

  before(async () => {
    fx = await buildFixture()
    tester = await createTester(true)
  })

  after(async () => {
    await tester?.stop()
  })

  afterEach(async () => {
    await Promise.all(clients.splice(0).map(async client => client.stop()))
  })

  const env = (): ClientEnv => ({
    fx,
    timeout: TIMEOUT_MS,
    quiet: 300,
    clientIdleMs: CLIENT_IDLE_MS,
    addr: tester.libp2p.getMultiaddrs(),
    async client (options: TestNodeOptions & { seed?: boolean } = {}) {
      const { seed, ...init } = options
      const client = await createTestNode({ listen: false, idleTimeout: CLIENT_IDLE_MS, ...init })
      clients.push(client)
      if (seed === true) {
        for (const { cid, bytes } of fx.seed.blocks) {
          await client.blockstore.put(cid, bytes)
        }
      }
      return client
    },
    async serve<T>(peer: 'sender' | 'receiver', script: (conn: Conn) => Promise<T>) {
      return tester.serveOnce({ timeout: TIMEOUT_MS, peer, peerIsClient: true, log, name: cid => fx.graph.name(cid) }, script)
    }
  })

  for (const clientCase of CLIENT_CASES) {
    it(`${clientCase.id} [${clientCase.rules.join(' ')}]: ${clientCase.title}`, async function () {
      if (clientCase.timeout != null) {
        this.timeout(clientCase.timeout)
      }
      log.length = 0
      try {
        await clientCase.run(env())
      } catch (err) {
        const head = err instanceof Violation ? `violates ${err.message}` : `failed: ${(err as Error).name}: ${(err as Error).message}`
        throw new Error([`${clientCase.id}: ${head}`, '  frames (> kit, < helia-car-mirror):', ...log.map(line => `    ${line}`)].join('\n'))
      }
    })
  }
})
