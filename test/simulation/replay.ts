/* eslint-disable no-console */
/**
 * Replays simulation seeds outside mocha:
 * `npm run simulate -- --seed 12345` runs one seed and prints every message;
 * `npm run simulate -- --from 1 --count 5000` runs many and prints the
 * failures, grouped by kind with the smallest scenario of each kind.
 */

import { parseArgs } from 'node:util'
import { simulate } from './simulate.ts'
import type { SeedReport } from './simulate.ts'

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    from: { type: 'string', default: '1' },
    count: { type: 'string', default: '1000' },
    quiet: { type: 'boolean', default: false }
  }
})

/** Failures by kind (CIDs and numbers left out), each with the seed of its smallest DAG */
class Kinds {
  private readonly kinds = new Map<string, { count: number, seed: number, size: number }>()

  add (report: SeedReport): void {
    const problems = new Set(report.problems.map(p => p.replace(/\b[a-zA-Z0-9]{40,}\b/g, '<cid>').replace(/\d+/g, 'N').replace(/\(.*$/, '')))
    for (const problem of problems) {
      const kind = this.kinds.get(problem) ?? { count: 0, seed: report.seed, size: Infinity }
      kind.count++
      if (report.size < kind.size) {
        kind.seed = report.seed
        kind.size = report.size
      }
      this.kinds.set(problem, kind)
    }
  }

  print (): void {
    for (const [problem, kind] of this.kinds) {
      console.log(`${kind.count} x ${problem}\n    smallest: seed ${kind.seed} (${kind.size} blocks)`)
    }
  }
}

async function one (seed: number): Promise<boolean> {
  const report = await simulate(seed, values.quiet ? undefined : line => { console.log(line) })
  console.log(report.problems.length === 0 ? `seed ${seed}: ok` : `seed ${seed} FAILS:\n  ${report.problems.join('\n  ')}`)
  return report.problems.length === 0
}

async function many (from: number, count: number): Promise<boolean> {
  const started = Date.now()
  const kinds = new Kinds()
  const outcomes = new Map<string, number>()
  let failed = 0
  let waste = 0
  let newBytes = 0
  let sessions = 0
  for (let seed = from; seed < from + count; seed++) {
    const report = await simulate(seed)
    sessions += report.sessions
    waste += report.waste
    newBytes += report.newBytes
    outcomes.set(report.outcome, (outcomes.get(report.outcome) ?? 0) + 1)
    if (report.problems.length > 0) {
      failed++
      kinds.add(report)
      console.log(`seed ${seed}: ${report.problems.join(' | ')}`)
    }
  }
  console.log(`${count} seeds from ${from} (${sessions} sessions): ${failed} failed, ${Date.now() - started} ms`)
  console.log(`clean sessions sent ${waste} B of blocks the receiver held, for ${newBytes} B of new blocks`)
  console.log(`receiver outcomes: ${[...outcomes].map(([name, n]) => `${name} ${n}`).join(', ')}`)
  kinds.print()
  return failed === 0
}

const ok = values.seed != null ? await one(Number(values.seed)) : await many(Number(values.from), Number(values.count))
process.exitCode = ok ? 0 : 1
