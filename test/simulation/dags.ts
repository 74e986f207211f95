/**
 * Random DAGs for the simulation, built as abstract nodes first (so a
 * "next version" can share every unchanged subgraph with the previous one)
 * and then encoded into real blocks: UnixFS-like dag-pb trees with raw
 * leaves and wide sharded directories, dag-cbor graphs with shared
 * subgraphs, deep chains, identity and raw roots, CIDv0/CIDv1 aliases of
 * one dag-pb block, and sha2-256, sha2-512 and BLAKE3 digests.
 */

import * as dagCbor from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { identity } from 'multiformats/hashes/identity'
import { sha256, sha512 } from 'multiformats/hashes/sha2'
import { toString } from 'uint8arrays/to-string'
import { blake3 } from '../../src/core/verify.ts'
import type { Block } from '../fixtures/dag.ts'
import type { MultihashDigest, MultihashHasher } from 'multiformats/hashes/interface'

export type Kind = 'raw' | 'pb' | 'cbor' | 'id-cbor' | 'id-raw'
export type Hash = 'sha256' | 'sha512' | 'blake3'

/** A node before encoding; the same object under two parents is a shared subgraph */
export interface Node {
  kind: Kind
  data: Uint8Array
  children: Node[]
  hash: Hash
  /** dag-pb with sha2-256 only: link to it with a CIDv0 */
  v0?: boolean
}

/** Every block built so far, with the links of each (identity blocks included) */
export class Universe {
  readonly blocks = new Map<string, Block>()
  readonly links = new Map<string, CID[]>()
  private readonly memo = new Map<Node, CID>()

  /** Encodes `node` and everything below it; returns its CID */
  cid (node: Node): CID {
    const known = this.memo.get(node)
    if (known != null) {
      return known
    }
    const links = node.children.map(child => this.cid(child))
    const bytes = encode(node, links)
    const cid = cidOf(node, bytes)
    this.memo.set(node, cid)
    this.blocks.set(cid.toString(), { cid, bytes })
    this.links.set(cid.toString(), links)
    return cid
  }

  /** Every CID reachable from `roots` (roots and identity CIDs included), by CID string */
  reachable (roots: CID[], through: (cid: CID) => boolean = () => true): Map<string, CID> {
    const found = new Map<string, CID>()
    const stack = [...roots]
    let cid: CID | undefined
    while ((cid = stack.pop()) != null) {
      const key = cid.toString()
      if (found.has(key)) {
        continue
      }
      found.set(key, cid)
      if (through(cid)) {
        stack.push(...(this.links.get(key) ?? []))
      }
    }
    return found
  }
}

const CODECS: Record<Kind, number> = { raw: raw.code, pb: dagPb.code, cbor: dagCbor.code, 'id-cbor': dagCbor.code, 'id-raw': raw.code }

function cidOf (node: Node, bytes: Uint8Array): CID {
  if (node.kind.startsWith('id-')) {
    return CID.createV1(CODECS[node.kind], identity.digest(bytes))
  }
  if (node.v0 === true) {
    return CID.createV0(digest('sha256', bytes) as MultihashDigest<typeof sha256.code>)
  }
  return CID.createV1(CODECS[node.kind], digest(node.hash, bytes))
}

function digest (hash: Hash, bytes: Uint8Array): MultihashDigest {
  const hasher: MultihashHasher = { sha256, sha512, blake3 }[hash]
  const result = hasher.digest(bytes)
  if (result instanceof Promise) {
    throw new Error('the simulation needs synchronous hashers')
  }
  return result
}

function encode (node: Node, links: CID[]): Uint8Array {
  switch (node.kind) {
    case 'raw':
    case 'id-raw':
      return node.data
    case 'pb':
      // zero-padded names keep the order: dag-pb sorts links by name
      return dagPb.encode(dagPb.prepare({ Data: node.data, Links: links.map((Hash, i) => ({ Hash, Name: `e${String(i).padStart(4, '0')}`, Tsize: 1 })) }))
    default:
      // links both at the top and nested, as real dag-cbor data has them
      return dagCbor.encode({ d: node.data, first: links[0] ?? null, rest: links.length > 1 ? [{ more: links.slice(1) }] : [] })
  }
}

/** The multihash of a CID as text: blockstores (and Blooms) key blocks by it */
export function mhKey (cid: CID): string {
  return toString(cid.multihash.bytes, 'base64')
}

export function isIdentity (cid: CID): boolean {
  return cid.multihash.code === identity.code
}

/** Builds random node graphs from a seeded PRNG, at most `budget` nodes each */
export class Generator {
  private readonly random: () => number
  private budget = 0
  private readonly leaves: Node[] = []

  constructor (random: () => number) {
    this.random = random
  }

  int (min: number, max: number): number {
    return min + Math.floor(this.random() * (max - min + 1))
  }

  /** `length` random bytes, four per PRNG call */
  bytes (length: number): Uint8Array {
    const out = new Uint8Array(length)
    for (let i = 0; i < length; i += 4) {
      const word = Math.floor(this.random() * 0x1_0000_0000)
      out[i] = word
      out[i + 1] = word >>> 8
      out[i + 2] = word >>> 16
      out[i + 3] = word >>> 24
    }
    return out
  }

  random01 (): number {
    return this.random()
  }

  chance (p: number): boolean {
    return this.random() < p
  }

  pick<T> (items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]
  }

  /** One random shape of about `size` nodes */
  shape (size: number): Node {
    this.budget = size
    const kind = this.pick(['unixfs', 'unixfs', 'cbor', 'cbor', 'chain', 'raw', 'identity'] as const)
    switch (kind) {
      case 'unixfs': return this.dir(4)
      case 'cbor': return this.cborGraph()
      case 'chain': return this.chain()
      case 'raw': return this.leaf()
      default: return this.identityRoot()
    }
  }

  /** A copy of `root` with one to three changes; unchanged subgraphs are the same objects */
  nextVersion (root: Node): Node {
    let next = root
    for (let i = this.int(1, 3); i > 0; i--) {
      next = this.change(next)
    }
    return next
  }

  private change (node: Node): Node {
    if (node.children.length === 0 || this.chance(0.2)) {
      if (node.children.length > 0 || this.chance(0.5)) {
        return { ...node, data: this.bytes(node.data.byteLength + 1) }
      }
      return node.kind === 'raw' ? this.leaf() : { ...node, data: this.bytes(8) }
    }
    const children = [...node.children]
    if (this.chance(0.2) && !node.kind.startsWith('id-')) {
      this.budget = 4
      children.push(this.file())
    } else {
      const i = this.int(0, children.length - 1)
      children[i] = this.change(children[i])
    }
    return { ...node, children }
  }

  private node (kind: Kind, children: Node[], dataLength = 8): Node {
    this.budget--
    const hash: Hash = kind !== 'pb' && this.chance(0.08) ? this.pick(['sha512', 'blake3'] as const) : 'sha256'
    return { kind, data: this.bytes(dataLength), children, hash, v0: kind === 'pb' && this.chance(0.2) ? true : undefined }
  }

  /** A raw leaf: sometimes empty, mostly small, sometimes a few KiB; sometimes one seen before */
  leaf (): Node {
    if (this.leaves.length > 0 && this.chance(0.1)) {
      return this.pick(this.leaves)
    }
    if (this.chance(0.04)) {
      return this.node('id-raw', [], this.int(0, 20))
    }
    const leaf = this.node('raw', [], this.leafSize())
    this.leaves.push(leaf)
    return leaf
  }

  /** Sometimes empty, mostly small, sometimes a few KiB, rarely 20 KiB */
  private leafSize (): number {
    if (this.chance(0.03)) {
      return 0
    }
    if (this.chance(0.7)) {
      return this.int(1, 300)
    }
    return this.int(300, this.chance(0.1) ? 20_000 : 4000)
  }

  private file (): Node {
    if (this.budget <= 2 || this.chance(0.5)) {
      return this.leaf()
    }
    const chunks = Array.from({ length: this.int(2, 8) }, () => this.leaf())
    const file = this.node('pb', chunks)
    // the same file linked again under its other CID version
    return this.chance(0.05) ? { ...file, v0: file.v0 !== true } : file
  }

  private dir (depth: number): Node {
    if (this.budget > 20 && this.chance(0.15)) {
      // a sharded directory: one wide level of buckets
      const buckets = Array.from({ length: this.int(8, Math.min(48, Math.floor(this.budget / 3))) }, () =>
        this.node('pb', Array.from({ length: this.int(1, 3) }, () => this.file())))
      return this.node('pb', buckets)
    }
    const entries: Node[] = []
    for (let i = this.int(1, 6); i > 0 && this.budget > 0; i--) {
      entries.push(depth > 0 && this.chance(0.35) ? this.dir(depth - 1) : this.file())
    }
    return this.node('pb', entries)
  }

  private cborGraph (): Node {
    const made: Node[] = []
    const count = Math.max(2, Math.min(this.budget, this.int(3, 40)))
    for (let i = 0; i < count; i++) {
      const children: Node[] = []
      for (let j = this.int(0, 3); j > 0 && made.length > 0; j--) {
        children.push(this.pick(made))
      }
      if (this.chance(0.5)) {
        children.push(this.leaf())
      }
      made.push(this.node(this.chance(0.06) && children.length <= 2 ? 'id-cbor' : 'cbor', children))
    }
    return this.node('cbor', made.slice(-this.int(1, Math.min(4, made.length))))
  }

  private chain (): Node {
    let node = this.leaf()
    for (let i = this.int(5, Math.max(5, Math.min(40, this.budget))); i > 0; i--) {
      node = this.node(this.chance(0.5) ? 'cbor' : 'pb', this.chance(0.3) ? [node, this.leaf()] : [node])
    }
    return node
  }

  private identityRoot (): Node {
    if (this.chance(0.3)) {
      return this.node('id-raw', [], this.int(0, 16))
    }
    this.budget = Math.min(this.budget, 30)
    return this.node('id-cbor', [this.chance(0.5) ? this.dir(2) : this.cborGraph()])
  }
}
