/**
 * The conformance fixture: small deterministic DAGs every server under test
 * holds (seeded by test/conformance/serve.ts, by the CAR file that
 * `npm run conformance -- --write-car` writes, or pushed by the kit), and
 * fresh DAGs for push transcripts. The kit knows every block and every link,
 * so it can tell which blocks a conformant sender sends.
 *
 * ```
 * F (dag-cbor) ──> A (dag-cbor) ──> L1, L2 (raw)
 *  │                │  ├──> C (dag-pb, CIDv1) ──> L3 (raw)
 *  │                │  └──> V (dag-pb, CIDv0) ──> L4 (raw)
 *  ├──> B (dag-cbor) ──> L5 (raw), E (raw, 0 bytes), and A again (shared)
 *  └──> I (identity dag-cbor, inline) ──> L0 (raw)
 *
 * P (dag-cbor) ──> Q (raw), X (raw, held by nobody)
 * O (raw): held, but linked from nothing
 * ```
 */

import * as dagCbor from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { identity } from 'multiformats/hashes/identity'
import { sha256 } from 'multiformats/hashes/sha2'
import { concat } from 'uint8arrays/concat'
import { isIdentity, varint } from './wire.ts'

export interface Block {
  cid: CID
  bytes: Uint8Array
}

/** Blocks and links the kit knows about, with short names for transcripts */
export class Graph {
  private readonly blocks = new Map<string, Block>()
  private readonly links = new Map<string, CID[]>()
  private readonly names = new Map<string, string>()

  /** Records a block; `held: false` records only its CID (a block nobody holds) */
  add (name: string, block: Block, links: CID[] = [], held: boolean = true): Block {
    const key = block.cid.toString()
    this.names.set(key, name)
    this.links.set(key, links)
    if (held && !isIdentity(block.cid)) {
      this.blocks.set(key, block)
    }
    return block
  }

  /** True when the block is held (identity blocks are never "held") */
  has (cid: CID): boolean {
    return this.blocks.has(cid.toString())
  }

  get (cid: CID): Block | undefined {
    return this.blocks.get(cid.toString())
  }

  linksOf (cid: CID): CID[] {
    return this.links.get(cid.toString()) ?? []
  }

  /** Links of `cid`, with identity links replaced by their own links (S-5) */
  sendableLinks (cid: CID): CID[] {
    const out: CID[] = []
    const visit = (links: CID[]): void => {
      for (const link of links) {
        if (isIdentity(link)) {
          visit(this.linksOf(link))
        } else {
          out.push(link)
        }
      }
    }
    visit(this.linksOf(cid))
    return out
  }

  /** Every CID reachable from `roots` (roots included), identity and unheld blocks included */
  reach (roots: CID[]): Set<string> {
    const seen = new Set<string>()
    const queue = [...roots]
    while (queue.length > 0) {
      const cid = queue.shift() as CID
      const key = cid.toString()
      if (seen.has(key)) {
        continue
      }
      seen.add(key)
      queue.push(...this.linksOf(cid))
    }
    return seen
  }

  /** Held, non-identity blocks reachable from `roots`, breadth first */
  blocksUnder (roots: CID[]): Block[] {
    const reach = this.reach(roots)
    const out: Block[] = []
    const seen = new Set<string>()
    const queue = roots.flatMap(root => isIdentity(root) ? this.sendableLinks(root) : [root])
    while (queue.length > 0) {
      const cid = queue.shift() as CID
      const key = cid.toString()
      if (seen.has(key) || !reach.has(key)) {
        continue
      }
      seen.add(key)
      const block = this.get(cid)
      if (block != null) {
        out.push(block)
        queue.push(...this.sendableLinks(cid))
      }
    }
    return out
  }

  name (cid: CID): string {
    return this.names.get(cid.toString()) ?? `${cid.toString().slice(0, 6)}…${cid.toString().slice(-6)}`
  }

  /** Copies another graph's blocks, links and names into this one */
  merge (other: Graph): void {
    for (const [key, name] of other.names) {
      this.names.set(key, name)
      this.links.set(key, other.links.get(key) ?? [])
      const block = other.blocks.get(key)
      if (block != null) {
        this.blocks.set(key, block)
      }
    }
  }
}

const text = (value: string): Uint8Array => new TextEncoder().encode(value)

/** `length` bytes from a seed (xorshift32): the same seed always gives the same bytes */
export function seededBytes (length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length)
  let x = (seed | 1) >>> 0
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

export async function rawBlock (bytes: Uint8Array): Promise<Block> {
  return { cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes }
}

export async function cborBlock (value: unknown): Promise<Block> {
  const bytes = dagCbor.encode(value)
  return { cid: CID.createV1(dagCbor.code, await sha256.digest(bytes)), bytes }
}

async function pbBlock (data: string, links: CID[], v0: boolean): Promise<Block> {
  const bytes = dagPb.encode(dagPb.prepare({ Data: text(data), Links: links.map((cid, i) => ({ Hash: cid, Name: `l${i}`, Tsize: 1 })) }))
  const digest = await sha256.digest(bytes)
  return { cid: v0 ? CID.createV0(digest) : CID.createV1(dagPb.code, digest), bytes }
}

function identityCbor (value: unknown): Block {
  const bytes = dagCbor.encode(value)
  return { cid: CID.createV1(dagCbor.code, identity.digest(bytes)), bytes }
}

/** The fixture every server under test holds */
export interface Fixture {
  graph: Graph
  /** Named blocks: F A B C V I E L0..L5 P Q O (X is not held: see `X`) */
  b: Record<string, Block>
  /** The root of the full DAG */
  F: CID
  /** The root of the partial DAG (its link X is held by nobody) */
  P: CID
  /** Linked from P, held by nobody */
  X: CID
  /** A held block linked from nothing */
  O: CID
  /** Every block a server under test must hold, and the roots they are seeded by */
  seed: { roots: CID[], blocks: Block[] }
}

export async function buildFixture (): Promise<Fixture> {
  const graph = new Graph()
  const b: Record<string, Block> = {}
  const leaf = async (name: string, bytes: Uint8Array): Promise<void> => {
    b[name] = graph.add(name, await rawBlock(bytes))
  }
  for (let i = 0; i <= 5; i++) {
    await leaf(`L${i}`, seededBytes(150 + 40 * i, 0xc0ffee + i))
  }
  await leaf('E', new Uint8Array(0))
  await leaf('Q', seededBytes(120, 0x5eed))
  await leaf('O', text('conformance: a block outside every fixture DAG'))
  const X = await rawBlock(text('conformance: a block nobody holds'))
  graph.add('X', X, [], false)

  b.C = graph.add('C', await pbBlock('c', [b.L3.cid], false), [b.L3.cid])
  b.V = graph.add('V', await pbBlock('v', [b.L4.cid], true), [b.L4.cid])
  b.A = graph.add('A', await cborBlock({ name: 'A', leaves: [b.L1.cid, b.L2.cid], pb: b.C.cid, v0: b.V.cid }), [b.L1.cid, b.L2.cid, b.C.cid, b.V.cid])
  b.B = graph.add('B', await cborBlock({ name: 'B', leaf: b.L5.cid, shared: b.A.cid, empty: b.E.cid }), [b.L5.cid, b.A.cid, b.E.cid])
  b.I = graph.add('I', identityCbor({ inline: b.L0.cid }), [b.L0.cid])
  b.F = graph.add('F', await cborBlock({ name: 'F', a: b.A.cid, b: b.B.cid, id: b.I.cid }), [b.A.cid, b.B.cid, b.I.cid])
  b.P = graph.add('P', await cborBlock({ name: 'P', have: b.Q.cid, gone: X.cid }), [b.Q.cid, X.cid])

  const roots = [b.F.cid, b.P.cid, b.O.cid]
  const blocks = [...graph.blocksUnder([b.F.cid]), b.P, b.Q, b.O]
  return { graph, b, F: b.F.cid, P: b.P.cid, X: X.cid, O: b.O.cid, seed: { roots, blocks } }
}

/** A fresh DAG for a push transcript (random salt, so the server holds none of it) */
export interface PushDag {
  graph: Graph
  root: CID
  /** Blocks by name */
  b: Record<string, Block>
}

export type PushShape = 'tree' | 'partial' | 'partial-deep' | 'big-leaf' | 'empty-leaf' | 'undecodable'

/**
 * - tree: G ─> M1 ─> l1, l2; G ─> M2 ─> l3, l4
 * - partial: G ─> l1, X (X held by nobody)
 * - partial-deep: G ─> M1 ─> l1, X; G ─> l2
 * - big-leaf: G ─> big (a raw leaf of exactly 2 MiB, L-1)
 * - empty-leaf: G ─> l1, E (the raw block of no bytes)
 * - undecodable: G ─> M1, where M1 is a dag-cbor CID over bytes that are not CBOR
 */
export async function pushDag (shape: PushShape, salt: string = crypto.randomUUID()): Promise<PushDag> {
  const graph = new Graph()
  const b: Record<string, Block> = {}
  const leaf = async (name: string, bytes: Uint8Array = text(`${salt}/${name}`), held: boolean = true): Promise<Block> => {
    b[name] = graph.add(name, await rawBlock(bytes), [], held)
    return b[name]
  }
  const node = async (name: string, links: Block[]): Promise<Block> => {
    b[name] = graph.add(name, await cborBlock({ salt, name, links: links.map(l => l.cid) }), links.map(l => l.cid))
    return b[name]
  }
  let root: Block
  switch (shape) {
    case 'tree':
      root = await node('G', [await node('M1', [await leaf('l1'), await leaf('l2')]), await node('M2', [await leaf('l3'), await leaf('l4')])])
      break
    case 'partial':
      root = await node('G', [await leaf('l1'), await leaf('X', undefined, false)])
      break
    case 'partial-deep':
      root = await node('G', [await node('M1', [await leaf('l1'), await leaf('X', undefined, false)]), await leaf('l2')])
      break
    case 'big-leaf':
      root = await node('G', [await leaf('big', seededBytes(2 * 1024 * 1024, salt.length + 7))])
      break
    case 'empty-leaf':
      root = await node('G', [await leaf('l1'), await leaf('E', new Uint8Array(0))])
      break
    default: {
      // undecodable
      const junk = concat([Uint8Array.of(0xff, 0xff), text(salt)])
      const bad = { cid: CID.createV1(dagCbor.code, await sha256.digest(junk)), bytes: junk }
      b.M1 = graph.add('M1', bad)
      root = await node('G', [bad])
      break
    }
  }
  return { graph, root: root.cid, b }
}

/** A CARv1 file of blocks, with `roots` in its header */
export function carFile (roots: CID[], blocks: Block[]): Uint8Array {
  const header = dagCbor.encode({ roots, version: 1 })
  const parts: Uint8Array[] = [varint(header.byteLength), header]
  for (const { cid, bytes } of blocks) {
    parts.push(varint(cid.bytes.byteLength + bytes.byteLength), cid.bytes, bytes)
  }
  return concat(parts)
}
