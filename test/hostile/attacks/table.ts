/**
 * Runs issue 9's attacks and prints the README's attack table, one row per
 * attack as it finishes, then the reasons of every row that did not hold.
 *
 * Usage: node test/hostile/attacks/table.ts [--seconds N] [attack id ...]
 * (ids: see ATTACKS in ./attacks.ts; default all, 8 s each)
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ATTACKS, BOUNDS, TABLE_HEADER, explain, mib, runAttack, tableRow } from './attacks.ts'
import { SERVER_HEAP_MIB } from './server.ts'

const { values, positionals } = parseArgs({ options: { seconds: { type: 'string', default: '8' } }, allowPositionals: true })
const durationMs = Number(values.seconds) * 1000
const chosen = positionals.length === 0 ? ATTACKS : ATTACKS.filter(attack => positionals.includes(attack.id))
if (chosen.length === 0) {
  throw new Error(`no attack named ${positionals.join(', ')}; known: ${ATTACKS.map(attack => attack.id).join(', ')}`)
}

/* eslint-disable no-console */
console.info(`Each attack: ${durationMs / 1000} s against a fresh server process (library defaults, --max-old-space-size=${SERVER_HEAP_MIB}) while an honest client starts a pull every 400 ms.`)
console.info(`Bounds: live heap + buffers growth < ${mib(BOUNDS.memoryGrowth)} MiB, the library's own code < ${BOUNDS.stallMs} ms of any stall, stall outside GC < ${BOUNDS.totalStallMs} ms, delay with GC < ${BOUNDS.loopDelayMs} ms, honest pulls ok >= ${BOUNDS.honestOk * 100}%.\n`)
console.info(TABLE_HEADER)
const dir = await mkdtemp(join(tmpdir(), 'car-mirror-attacks-'))
const details: string[] = []
try {
  for (const attack of chosen) {
    const result = await runAttack(attack, { durationMs, fileDir: join(dir, attack.id) })
    console.info(tableRow(result))
    details.push(explain(result))
  }
} finally {
  await rm(dir, { recursive: true, force: true })
}
console.info(`\n${details.join('\n')}`)
