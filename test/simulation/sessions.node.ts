/**
 * Seeded simulation of whole CAR Mirror sessions (see README.md here): every
 * seed is a random DAG, random stores, a pull or a push, a random network
 * and random faults, checked against invariants. A failure names its seed
 * and the command that replays it with every message printed.
 *
 * SIM_FROM and SIM_SEEDS (environment) pick other seeds to explore.
 */

import { expect } from 'aegir/chai'
import { simulate } from './simulate.ts'
import type { SeedReport } from './simulate.ts'

/**
 * Seeds that found bugs, each kept as a named case. A seed names a scenario
 * through scenario.ts and dags.ts: changing how they draw from the PRNG
 * gives every seed a new scenario, so these must then be found again.
 */
const REGRESSIONS: ReadonlyArray<{ seed: number, found: string }> = [
  { seed: 360, found: 'a push client blocked in a write when done arrives fails with a reset after the grace (receiver stops reading after done, D6)' },
  { seed: 3525, found: 'the same in a pull: the serving sender fails although the session completed' },
  { seed: 499, found: 'a push whose client lacks a root never ends: it waits for rh before its leaves, and sends missing only after them (D2 with D4)' },
  { seed: 235, found: 'the same, blocked by the cold-call window (admit) instead' },
  { seed: 679, found: 'wants in a status fill the sender queue (maxCidsPerMessage 1) while it waits for its sync answer: the runner stops reading, nothing moves' },
  { seed: 7075, found: 'the same through a full queuedWants budget: done is never read, and a stream reset does not end it either' },
  { seed: 4943, found: 'a reader waiting for room in the node-wide want queue polled with a timer and missed the done that followed the wants' },
  { seed: 1179, found: 'the same wait stalled a pull with four wants left' }
]

const FROM = Number(process.env.SIM_FROM ?? 1)
const COUNT = Number(process.env.SIM_SEEDS ?? 5000)
const BATCH = 500

function explain (report: SeedReport): string {
  return `seed ${report.seed}: ${report.problems.join('; ')}\n    replay: npm run simulate -- --seed ${report.seed}`
}

describe('simulation of whole sessions', function () {
  this.timeout(120_000)

  describe('seeds that found bugs', () => {
    for (const { seed, found } of REGRESSIONS) {
      it(`seed ${seed}: ${found}`, async () => {
        const report = await simulate(seed)
        expect(report.problems, explain(report)).to.be.empty()
      })
    }
  })

  describe(`seeds ${FROM} to ${FROM + COUNT - 1}`, () => {
    const known = new Set(REGRESSIONS.map(r => r.seed))
    const tally = { sessions: 0, started: Date.now() }

    after(() => {
      // eslint-disable-next-line no-console
      console.log(`      simulated ${tally.sessions} sessions of ${COUNT} seeds in ${((Date.now() - tally.started) / 1000).toFixed(1)} s`)
    })

    for (let from = FROM; from < FROM + COUNT; from += BATCH) {
      const to = Math.min(from + BATCH, FROM + COUNT) - 1
      it(`seeds ${from} to ${to}`, async () => {
        const failures: string[] = []
        for (let seed = from; seed <= to; seed++) {
          if (known.has(seed)) {
            continue
          }
          const report = await simulate(seed)
          tally.sessions += report.sessions
          if (report.problems.length > 0) {
            failures.push(explain(report))
          }
        }
        if (failures.length > 0) {
          expect.fail(`${failures.length} seed(s) broke an invariant:\n  ${failures.join('\n  ')}`)
        }
      })
    }
  })
})
