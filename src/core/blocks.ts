import { concat } from 'uint8arrays/concat'
import { BlockNotFoundError, BlockstoreError } from '../errors.ts'
import { LinkReader } from './links.ts'
import type { AbortOptions } from '@libp2p/interface'
import type { Blockstore } from 'interface-blockstore'
import type { CID } from 'multiformats/cid'

/** The part of a blockstore that reading a DAG needs */
export type BlockSource = Pick<Blockstore, 'get' | 'has'>

/** The part of a blockstore that receiving a DAG needs */
export type BlockSink = Pick<Blockstore, 'get' | 'has' | 'put'>

/**
 * Options passed through to blockstore calls. `offline: true` stops Helia's
 * networked blockstore from asking Bitswap for blocks a walk does not find.
 */
export interface BlockReadOptions extends AbortOptions {
  /** True: look in the local store only, never the network; default the blockstore's own behaviour */
  offline?: boolean
}

/** What blockstores call an absent block: interface-store's name, and Helia's when offline */
const NOT_FOUND_ERRORS = new Set(['NotFoundError', 'BlockNotFoundWhileOfflineError'])

/**
 * Reads a whole block into one buffer. Identity CIDs are answered from the CID
 * itself without touching the store.
 *
 * @throws {BlockNotFoundError} when the store does not hold the block
 */
export async function readBlock (store: BlockSource, cid: CID, options: BlockReadOptions = {}): Promise<Uint8Array> {
  const inline = LinkReader.inlineBytes(cid)
  if (inline != null) {
    return inline
  }

  const chunks: Uint8Array[] = []
  try {
    for await (const chunk of store.get(cid, options)) {
      chunks.push(chunk)
    }
  } catch (err) {
    if (NOT_FOUND_ERRORS.has((err as Error).name)) {
      throw new BlockNotFoundError(`Block ${cid} is not in the blockstore`)
    }
    if ((err as Error).name === 'AbortError') {
      throw err
    }
    throw new BlockstoreError(`Reading ${cid} from the blockstore failed: ${(err as Error).message}`, { cause: err })
  }

  return chunks.length === 1 ? chunks[0] : concat(chunks)
}

/** Whether the store holds a block; identity CIDs are always held */
export async function hasBlock (store: BlockSource, cid: CID, options: BlockReadOptions = {}): Promise<boolean> {
  if (LinkReader.inlineBytes(cid) != null) {
    return true
  }
  try {
    return await store.has(cid, options)
  } catch (err) {
    if ((err as Error).name === 'AbortError') {
      throw err
    }
    throw new BlockstoreError(`Looking up ${cid} in the blockstore failed: ${(err as Error).message}`, { cause: err })
  }
}
