/**
 * Issue 9's attack table as tests: each attack runs against a fresh server
 * process (./server-process.ts, library defaults, V8 heap limited to
 * SERVER_HEAP_MIB so unbounded memory shows as a crash) while an honest
 * client pulls small DAGs every 400 ms. Under every attack the server must
 * stay up, its heap + buffers must grow less than BOUNDS.memoryGrowth, the
 * library's own code must take no more than BOUNDS.stallMs of any event-loop
 * stall (from a CPU profile of the server), no stall may pass
 * BOUNDS.totalStallMs outside GC whoever's work it is, and at
 * least 90% of the honest pulls started during the attack must succeed.
 * Each test prints its row of the README table; `node
 * test/hostile/attacks/table.ts` prints the whole table.
 *
 * ATTACK_SECONDS sets how long each attack runs (default 8).
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { ATTACKS, BOUNDS, explain, runAttack, tableRow, verdict } from './attacks.ts'
import { SERVER_HEAP_MIB, ServerProcess } from './server.ts'

const DURATION_MS = Number(process.env.ATTACK_SECONDS ?? 8) * 1000

describe(`attacks of issue 9 against a server process (heap limit ${SERVER_HEAP_MIB} MiB)`, function () {
  /** A temporary directory for on-disk stores */
  const temp = { dir: '' }

  before(async () => {
    temp.dir = await mkdtemp(join(tmpdir(), 'car-mirror-attacks-'))
  })

  after(async () => {
    await ServerProcess.stopAll()
    await rm(temp.dir, { recursive: true, force: true })
  })

  for (const attack of ATTACKS) {
    it(`${attack.name}: the server stays up, grows < ${BOUNDS.memoryGrowth / 1024 / 1024} MiB, its own code < ${BOUNDS.stallMs} ms of any stall (all < ${BOUNDS.totalStallMs} ms), serves ≥ ${BOUNDS.honestOk * 100}% of honest pulls`, async function () {
      this.timeout(DURATION_MS + 120_000)
      const result = await runAttack(attack, { durationMs: DURATION_MS, fileDir: join(temp.dir, attack.id) })
      const failures = verdict(result)
      // eslint-disable-next-line no-console
      console.info(`      ${tableRow(result)}${failures.length === 0 ? '' : `\n${explain(result).replace(/^/gm, '      ')}`}`)
      expect(failures, attack.name).to.deep.equal([])
    })
  }
})
