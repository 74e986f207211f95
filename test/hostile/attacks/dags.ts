/**
 * Deterministic DAGs for the attack suite, built fast enough to seed a fresh
 * server process for every attack: the wide dag-cbor DAG (fan-out 16, five
 * levels, 69,905 blocks), dag-cbor blocks of about 2 MiB holding ~50k links
 * (a server's "2 MiB root", an attacker's link bombs) and the small DAGs that
 * honest clients pull.
 */

import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { cborBlock, rawBlock } from '../../fixtures/dag.ts'
import { pseudoRandomBytes, seedOf } from '../../fixtures/dags.ts'
import type { Block } from '../../fixtures/dag.ts'

/** Fan-out of the wide DAG */
export const WIDE_FANOUT = 16
/** Levels below the wide DAG's root: 1 + 16 + 256 + 4096 + 65,536 = 69,905 blocks */
export const WIDE_DEPTH = 4

/** BFS index of the first block of `level` in the wide DAG (the root is level 0, index 0) */
export function wideLevelStart (level: number): number {
  let start = 0
  for (let l = 0; l < level; l++) {
    start += WIDE_FANOUT ** l
  }
  return start
}

/** Blocks in the wide DAG */
export const WIDE_BLOCKS = wideLevelStart(WIDE_DEPTH + 1)

async function sha256Block (code: number, bytes: Uint8Array): Promise<Block> {
  return { cid: CID.createV1(code, await sha256.digest(bytes)), bytes }
}

/**
 * The wide DAG: every block is dag-cbor (leaves too, so a walk of it reads
 * all 69,905 blocks), returned in breadth-first order, root first. The
 * children of block `i` are blocks `16 i + 1` to `16 i + 16`.
 */
export async function wideDag (): Promise<Block[]> {
  const blocks: Block[] = new Array(WIDE_BLOCKS)
  for (let i = WIDE_BLOCKS - 1; i >= 0; i--) {
    const first = WIDE_FANOUT * i + 1
    const value = first < WIDE_BLOCKS
      ? { w: i, l: blocks.slice(first, first + WIDE_FANOUT).map(block => block.cid) }
      : { w: i }
    blocks[i] = await sha256Block(dagCbor.code, dagCbor.encode(value))
  }
  return blocks
}

/** Bytes of one tag-42 link to a raw sha2-256 CIDv1 in DAG-CBOR: d8 2a 58 25 00 01 55 12 20 + digest */
const LINK_BYTES = 41
const LINK_PREFIX = Uint8Array.of(0xd8, 0x2a, 0x58, 0x25, 0x00, 0x01, raw.code, 0x12, 0x20)

/** A CBOR major-type header with the minimal length encoding (canonical DAG-CBOR) */
function cborHeader (major: number, length: number): Uint8Array {
  const type = major << 5
  if (length < 24) {
    return Uint8Array.of(type | length)
  }
  if (length < 0x100) {
    return Uint8Array.of(type | 24, length)
  }
  if (length < 0x10000) {
    return Uint8Array.of(type | 25, length >> 8, length & 0xff)
  }
  if (length < 0x100000000) {
    return Uint8Array.of(type | 26, length >>> 24, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff)
  }
  throw new RangeError(`${length} is too long for this encoder`)
}

/** Concatenates byte arrays */
export function join (parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.byteLength, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.byteLength
  }
  return out
}

/**
 * A canonical dag-cbor block `{ l: [links...], s: salt }` with `count` links
 * to raw CIDs whose digests are pseudo-random (from `salt`): nobody holds
 * their blocks. Encoded by hand, since building ~50k CID objects to encode
 * them would be slow. 50,000 links make a block of about 2.05 MB, just under
 * the 2 MiB block limit.
 */
export async function linkHeavyBlock (count: number, salt: string): Promise<Block> {
  const digests = pseudoRandomBytes(32 * count, seedOf(`links/${salt}`))
  const list = new Uint8Array(count * LINK_BYTES)
  for (let i = 0; i < count; i++) {
    list.set(LINK_PREFIX, i * LINK_BYTES)
    list.set(digests.subarray(32 * i, 32 * i + 32), i * LINK_BYTES + LINK_PREFIX.byteLength)
  }
  const saltBytes = new TextEncoder().encode(salt)
  const bytes = join([
    cborHeader(5, 2),
    cborHeader(3, 1), Uint8Array.of(0x6c), cborHeader(4, count), list,
    cborHeader(3, 1), Uint8Array.of(0x73), cborHeader(3, saltBytes.byteLength), saltBytes
  ])
  return sha256Block(dagCbor.code, bytes)
}

/** Links in the server's "2 MiB root" and in each of an attacker's link bombs */
export const HEAVY_LINKS = 50_000

/** A small DAG an honest client pulls: 8 raw leaves of 4 KiB under one dag-cbor root (9 blocks, 32 KiB) */
export async function honestDag (index: number): Promise<Block[]> {
  const leaves: Block[] = []
  for (let i = 0; i < 8; i++) {
    leaves.push(await rawBlock(pseudoRandomBytes(4096, seedOf(`honest/${index}/${i}`))))
  }
  const root = await cborBlock({ honest: index, leaves: leaves.map(leaf => leaf.cid) })
  return [root, ...leaves]
}

/** `count` honest DAGs */
export async function honestDags (count: number): Promise<Block[][]> {
  const dags: Block[][] = []
  for (let i = 0; i < count; i++) {
    dags.push(await honestDag(i))
  }
  return dags
}

/**
 * A raw CID with a pseudo-random digest: a block nobody holds, about
 * 40 bytes on the wire
 */
export function randomCid (salt: string): CID {
  const digest = pseudoRandomBytes(32, seedOf(`random-cid/${salt}`))
  return CID.decode(join([Uint8Array.of(0x01, raw.code, 0x12, 0x20), digest]))
}

/** The identity CID of no bytes (`bafkqaaa`): every node "holds" it, and it needs no knowledge of the server's content */
export const EMPTY_IDENTITY = CID.parse('bafkqaaa')
