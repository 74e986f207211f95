/**
 * Each client's own small tree, built deterministically from the client's
 * index, so the server and the client build the same blocks without sending
 * them: a dag-cbor root linking `fanout` dag-cbor interior nodes, each
 * linking `fanout` raw leaves of 256-767 random bytes (fanout 14: 211 blocks,
 * about 110 KiB). Version 2 changes `changed` leaves (1% of them: 2 of 196),
 * each under a different interior node, so it adds those leaves, their
 * interior nodes and a new root (5 new blocks for 2 changed leaves).
 */

import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { Rng } from '../datasets.ts'

export interface TreeBlock {
  cid: CID
  bytes: Uint8Array
}

export interface ClientTree {
  /** Blocks of version 1 */
  v1: TreeBlock[]
  /** Blocks of version 2 that version 1 lacks */
  added: TreeBlock[]
  v1Root: CID
  v2Root: CID
  /** Blocks of version 2 (all of them) */
  v2Blocks: number
}

export interface TreeShape {
  /** Links per interior node and of the root */
  fanout: number
  /** Leaves changed in version 2 */
  changed: number
}

export const DEFAULT_SHAPE: TreeShape = { fanout: 14, changed: 2 }

async function block (codec: 'raw' | 'cbor', value: Uint8Array | unknown): Promise<TreeBlock> {
  const bytes = codec === 'raw' ? value as Uint8Array : dagCbor.encode(value)
  const hash = await sha256.digest(bytes)
  return { cid: CID.createV1(codec === 'raw' ? raw.code : dagCbor.code, hash), bytes }
}

function leafBytes (rng: Rng): Uint8Array {
  const length = 256 + (rng.u32() % 512)
  const bytes = new Uint8Array(length)
  for (let i = 0; i < length; i += 4) {
    const word = rng.u32()
    for (let j = 0; j < 4 && i + j < length; j++) {
      bytes[i + j] = (word >>> (8 * j)) & 0xff
    }
  }
  return bytes
}

/** Builds client `index`'s tree in both versions */
export async function buildClientTree (index: number, shape: TreeShape = DEFAULT_SHAPE): Promise<ClientTree> {
  const rng = new Rng(`many-client-${index}`)
  const { fanout, changed } = shape
  const leaves: TreeBlock[][] = []
  for (let i = 0; i < fanout; i++) {
    const row: TreeBlock[] = []
    for (let j = 0; j < fanout; j++) {
      row.push(await block('raw', leafBytes(rng)))
    }
    leaves.push(row)
  }
  const interior = async (i: number, row: TreeBlock[]): Promise<TreeBlock> => block('cbor', { client: index, node: i, leaves: row.map(l => l.cid) })
  const root = async (version: number, nodes: TreeBlock[]): Promise<TreeBlock> => block('cbor', { client: index, version, children: nodes.map(n => n.cid) })

  const nodes1: TreeBlock[] = []
  for (let i = 0; i < fanout; i++) {
    nodes1.push(await interior(i, leaves[i]))
  }
  const root1 = await root(1, nodes1)
  const v1 = [root1, ...nodes1, ...leaves.flat()]

  // version 2: `changed` leaves rewritten, each in its own interior node (spread over the tree)
  const added: TreeBlock[] = []
  const nodes2 = [...nodes1]
  for (let k = 0; k < changed; k++) {
    const i = Math.floor((k * fanout) / changed + fanout / (2 * changed)) % fanout
    const j = rng.u32() % fanout
    const row = [...leaves[i]]
    row[j] = await block('raw', leafBytes(rng))
    leaves[i] = row
    added.push(row[j])
    nodes2[i] = await interior(i, row)
    added.push(nodes2[i])
  }
  const root2 = await root(2, nodes2)
  added.unshift(root2)
  return { v1, added, v1Root: root1.cid, v2Root: root2.cid, v2Blocks: v1.length }
}
