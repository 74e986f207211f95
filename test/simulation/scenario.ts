/**
 * A seeded scenario: the DAG and its roots, what each store holds at the
 * start, the session's direction and options, the network's shape and the
 * faults to inject. Everything is drawn from one PRNG seeded with the seed,
 * so a seed names the same scenario whatever the code under test does.
 */

import { DEFAULT_COLD_CALL_BYTES } from '../../src/constants.ts'
import { randomSource } from '../fixtures/random.ts'
import { Generator, Universe, isIdentity } from './dags.ts'
import type { PipeOptions } from './net.ts'
import type { Block } from '../fixtures/dag.ts'
import type { CID } from 'multiformats/cid'

export interface Faults {
  /** The stream is reset instead of writing the n-th frame (both directions counted from 1) */
  resetAtFrame?: number
  /** The n-th block frame the sender writes (from 1) has one data byte flipped on the wire */
  corruptBlock?: number
  /** Each Bloom the receiver writes is replaced on the wire: all bits set, with extra items it lacks, or shrunk to 1-4 bytes */
  bloom?: 'saturate' | 'extra' | 'tiny'
  /** Blocks the receiver lacks that `extra` adds */
  extraItems: CID[]
  /** CIDs outside the roots' DAG (the sender holds them) added on the wire to the receiver's first wants */
  nosy: CID[]
}

export interface Scenario {
  seed: number
  mode: 'pull' | 'push'
  universe: Universe
  roots: CID[]
  hints: CID[]
  /** What each store holds at the start */
  senderBlocks: Block[]
  receiverBlocks: Block[]
  /** Pull only (a push server uses 0); undefined: the default */
  smallStoreBlocks?: number
  maxCidsPerMessage?: number
  /** Push only */
  coldCallBytes?: number
  toReceiver: PipeOptions
  toSender: PipeOptions
  /** Small node-wide budgets that throttle the sender (they must slow it, never change the outcome) */
  throttle?: { readAheadBytes: number, queuedWants: number, maxReadAheadBytes: number }
  /** Longest virtual delay of one store call; 0: calls complete synchronously */
  senderDelay: number
  receiverDelay: number
  faults: Faults
}

/** Non-identity blocks reachable from `roots` */
function blocksUnder (universe: Universe, roots: CID[]): Block[] {
  return [...universe.reachable(roots).values()].filter(cid => !isIdentity(cid)).map(cid => universe.blocks.get(cid.toString()) as Block)
}

/** The blocks a scenario is made of */
interface Dag {
  universe: Universe
  roots: CID[]
  /** Roots of the previous version, when there is one */
  previousRoots: CID[]
  /** Non-identity blocks under the roots */
  dag: Block[]
  /** Blocks outside the DAG: the sender's decoys, the receiver's junk, the previous version's own blocks */
  decoys: Block[]
  junk: Block[]
  older: Block[]
}

function pickSize (g: Generator): number {
  if (g.chance(0.7)) {
    return g.int(5, 60)
  }
  return g.chance(0.85) ? g.int(60, 200) : g.int(200, 400)
}

/** One to four roots, sometimes as a next version of a previous DAG */
function makeDag (g: Generator): Dag {
  const size = pickSize(g)
  const rootCount = g.chance(0.6) ? 1 : g.int(2, 4)
  const versioned = g.chance(0.35)
  const previous = Array.from({ length: rootCount }, () => g.shape(Math.ceil(size / rootCount)))
  const current = versioned ? previous.map(root => g.nextVersion(root)) : previous
  const universe = new Universe()
  const roots = current.map(node => universe.cid(node))
  const previousRoots = versioned ? previous.map(node => universe.cid(node)) : []
  // sometimes a root lies inside another root's DAG, or is named twice
  if (g.chance(0.12)) {
    roots.push(g.pick([...universe.reachable(roots).values()]))
  } else if (g.chance(0.03)) {
    roots.push(roots[0])
  }
  const dag = blocksUnder(universe, roots)
  const dagKeys = new Set(dag.map(b => b.cid.toString()))
  const outside = (blocks: Block[]): Block[] => blocks.filter(b => !dagKeys.has(b.cid.toString()))
  const decoys = outside(blocksUnder(universe, [universe.cid(g.shape(g.int(2, 8)))]))
  const junk = outside(blocksUnder(universe, [universe.cid(g.shape(g.int(2, 8)))]))
  return { universe, roots, previousRoots, dag, decoys, junk, older: outside(blocksUnder(universe, previousRoots)) }
}

/** The sender: the DAG (maybe less some blocks), often the previous version, and decoys */
function senderStore (g: Generator, d: Dag): Block[] {
  const blocks = [...d.dag]
  if (g.chance(0.2)) {
    const missing = g.chance(0.5) ? g.int(1, 3) : Math.ceil(d.dag.length * g.int(5, 30) / 100)
    for (let i = 0; i < missing; i++) {
      blocks.splice(g.int(0, blocks.length - 1), 1)
    }
  }
  return [...blocks, ...(g.chance(0.8) ? d.older : []), ...d.decoys]
}

/** The receiver: nothing, a random part, whole subgraphs, the previous version (all or part), or everything; sometimes junk */
function receiverStore (g: Generator, d: Dag): Block[] {
  let blocks: Block[] = []
  const mode = g.pick(['empty', 'random', 'subgraphs', 'previous', 'previous', 'all'] as const)
  if (mode === 'random') {
    const p = g.random01()
    blocks = d.dag.filter(() => g.chance(p))
  } else if (mode === 'subgraphs') {
    const cids = [...d.universe.reachable(d.roots).values()]
    blocks = blocksUnder(d.universe, Array.from({ length: g.int(1, 4) }, () => g.pick(cids)))
  } else if (mode === 'previous' && d.previousRoots.length > 0) {
    const all = blocksUnder(d.universe, d.previousRoots)
    blocks = g.chance(0.7) ? all : all.filter(() => g.chance(0.6))
  } else if (mode === 'all' && g.chance(0.3)) {
    blocks = d.dag
  }
  return g.chance(0.3) ? [...blocks, ...d.junk] : blocks
}

/** Right (the previous version), stale (something it may not hold) or absent */
function pickHints (g: Generator, d: Dag): CID[] {
  if (d.previousRoots.length > 0 && g.chance(0.75)) {
    return d.previousRoots
  }
  if (g.chance(0.15)) {
    return [g.pick([...d.universe.reachable(d.roots).values()])]
  }
  return g.chance(0.1) ? [(d.junk[0] ?? d.decoys[0] ?? d.dag[0]).cid] : []
}

function pickFaults (g: Generator, d: Dag, senderBlocks: Block[], receiverBlocks: Block[]): Faults {
  const lacks = d.dag.filter(b => !receiverBlocks.includes(b))
  const faults: Faults = { extraItems: [], nosy: [] }
  if (g.chance(0.1)) {
    faults.resetAtFrame = g.int(1, d.dag.length + 8)
  }
  if (g.chance(0.07)) {
    faults.corruptBlock = g.int(1, Math.max(1, lacks.length))
  }
  if (g.chance(0.15)) {
    faults.bloom = g.pick(['saturate', 'extra', 'tiny'] as const)
    faults.extraItems = lacks.filter(() => g.chance(0.5)).map(b => b.cid)
  }
  if (g.chance(0.1)) {
    const foreign = [...d.decoys, ...(senderBlocks.some(b => d.older.includes(b)) ? d.older : [])]
    faults.nosy = foreign.slice(0, g.int(1, 2)).map(b => b.cid)
  }
  return faults
}

export function scenario (seed: number): Scenario {
  const g = new Generator(randomSource(seed))
  const d = makeDag(g)
  const senderBlocks = senderStore(g, d)
  const receiverBlocks = receiverStore(g, d)
  const hints = pickHints(g, d)
  const push = g.chance(0.45)
  const pipe = (): PipeOptions => ({
    latency: g.int(0, 60),
    jitter: g.int(0, 20),
    window: g.pick([64, 1024, 16_384, 262_144, Infinity]),
    maxPieces: g.pick([1, 1, 2, 4])
  })
  const faults = pickFaults(g, d, senderBlocks, receiverBlocks)
  return {
    seed,
    mode: push ? 'push' : 'pull',
    universe: d.universe,
    roots: d.roots,
    hints,
    senderBlocks,
    receiverBlocks,
    smallStoreBlocks: push ? 0 : g.pick([undefined, undefined, 0, g.int(1, 20)]),
    maxCidsPerMessage: g.chance(0.2) ? g.int(1, 8) : undefined,
    coldCallBytes: push ? g.pick([1, 512, 4096, 65_536, DEFAULT_COLD_CALL_BYTES]) : undefined,
    toReceiver: pipe(),
    toSender: pipe(),
    throttle: g.chance(0.2) ? { readAheadBytes: g.pick([1, 1024, 8192]), queuedWants: g.int(1, 4), maxReadAheadBytes: g.pick([1, 4096, 65_536]) } : undefined,
    senderDelay: g.pick([0, 0, 3, 20]),
    receiverDelay: g.pick([0, 0, 3, 20]),
    faults
  }
}

function pipeText (p: PipeOptions): string {
  return `latency ${p.latency}+${p.jitter}, window ${p.window} B, ${p.maxPieces} piece(s) per frame at most`
}

/** One line per scenario setting, for replays */
export function describeScenario (s: Scenario): string {
  const dag = blocksUnder(s.universe, s.roots)
  const bytes = dag.reduce((n, b) => n + b.bytes.byteLength, 0)
  const held = new Set(s.receiverBlocks.map(b => b.cid.toString()))
  const has = new Set(s.senderBlocks.map(b => b.cid.toString()))
  return [
    `seed ${s.seed}: ${s.mode}, ${s.roots.length} root(s) ${s.roots.map(String).join(' ')}`,
    `  DAG: ${dag.length} blocks, ${bytes} bytes; receiver holds ${dag.filter(b => held.has(b.cid.toString())).length} of them (+${s.receiverBlocks.filter(b => !dag.includes(b)).length} others); sender lacks ${dag.filter(b => !has.has(b.cid.toString())).length}`,
    `  hints: [${s.hints.map(String).join(' ')}]; smallStoreBlocks ${String(s.smallStoreBlocks)}; maxCidsPerMessage ${String(s.maxCidsPerMessage)}; coldCallBytes ${String(s.coldCallBytes)}`,
    `  throttle: ${JSON.stringify(s.throttle)}`,
    `  net S->R ${pipeText(s.toReceiver)}, R->S ${pipeText(s.toSender)}; store delays sender ${s.senderDelay}, receiver ${s.receiverDelay}`,
    `  faults: ${JSON.stringify({ ...s.faults, extraItems: s.faults.extraItems.length, nosy: s.faults.nosy.map(String) })}`
  ].join('\n')
}
