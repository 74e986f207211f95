import * as dagCbor from '@ipld/dag-cbor'
import * as dagJson from '@ipld/dag-json'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { identity } from 'multiformats/hashes/identity'
import { InvalidBlockError, UnknownCodecError } from '../errors.ts'
import { Yielder } from './budget.ts'
import { dagCborLinks } from './cbor-links.ts'
import { pbLinks } from './pb-links.ts'
import type { BlockCodec } from 'multiformats/codecs/interface'

/** Anything that can decode a block's bytes into a data model value */
export interface BlockDecoder {
  /** The codec's multicodec code, as in a CID */
  code: number
  /** Decodes a block's bytes into the data model, where links are CIDs */
  decode(bytes: Uint8Array): unknown
}

/**
 * Finds a decoder for a codec that is not built in, for example Helia's
 * `helia.getCodec`. It may throw or return `undefined` for codecs it does not
 * know either.
 */
export interface LoadCodec {
  (code: number): BlockDecoder | undefined | Promise<BlockDecoder | undefined>
}

/** Codecs a {@link LinkReader} reads beyond the built-in ones */
export interface LinkReaderInit {
  /** Extra decoders, checked before `loadCodec` */
  codecs?: BlockDecoder[]

  /** Called for codecs that are neither built in nor in `codecs` */
  loadCodec?: LoadCodec
}

/**
 * dag-cbor blocks larger than this are scanned for links (see dagCborLinks)
 * instead of decoded: the scan gives the event loop turns
 */
const SCAN_ABOVE_BYTES = 64 * 1024

/** The codecs whose links are read without any configuration */
export const BUILT_IN_CODECS: ReadonlyArray<BlockCodec<number, unknown>> = [dagPb, raw, dagCbor, dagJson]

/**
 * Reads the links (child CIDs) of a block. dag-pb, raw, dag-cbor and dag-json
 * are built in; other codecs come from `codecs` or `loadCodec`.
 *
 * @example
 *
 * ```ts
 * const reader = new LinkReader()
 * const children = await reader.links(cid, bytes)
 * ```
 */
export class LinkReader {
  private readonly decoders: Map<number, BlockDecoder>
  private readonly loadCodec?: LoadCodec
  private readonly yielder = new Yielder()

  constructor (init: LinkReaderInit = {}) {
    this.decoders = new Map()
    for (const codec of [...BUILT_IN_CODECS, ...(init.codecs ?? [])]) {
      this.decoders.set(codec.code, codec)
    }
    this.loadCodec = init.loadCodec
  }

  /**
   * The links of a block: dag-pb links in link order; for other codecs, a
   * depth-first search of the decoded value (arrays in order, maps in the
   * decoded object's property order; dag-cbor blocks over 64 KiB: in the
   * order of their bytes).
   *
   * @throws {UnknownCodecError} when the CID's codec has no decoder
   * @throws {InvalidBlockError} when the bytes do not decode
   */
  async links (cid: CID, bytes: Uint8Array): Promise<CID[]> {
    if (cid.code === raw.code) {
      return []
    }

    if (cid.code === dagCbor.code && bytes.byteLength > SCAN_ABOVE_BYTES) {
      // a full decode of a large block would block the event loop for its whole length
      return dagCborLinks(bytes, this.yielder)
    }

    const decoder = this.decoders.get(cid.code) ?? await this.findDecoder(cid.code)
    let value: unknown
    try {
      if (decoder === dagPb) {
        // the links alone, without the names and data a full decode builds
        return pbLinks(bytes).cids
      }
      value = decoder.decode(bytes)
    } catch (err) {
      throw new InvalidBlockError(`Block ${cid} does not decode as codec 0x${cid.code.toString(16)}: ${(err as Error).message}`)
    }

    if (cid.code === dagPb.code) {
      return (value as dagPb.PBNode).Links.map(link => link.Hash)
    }

    const found: CID[] = []
    collectLinks(value, found)
    return found
  }

  /** The bytes of a block whose data sits inline in its CID (identity multihash) */
  static inlineBytes (cid: CID): Uint8Array | undefined {
    return cid.multihash.code === identity.code ? cid.multihash.digest : undefined
  }

  private async findDecoder (code: number): Promise<BlockDecoder> {
    let decoder: BlockDecoder | undefined
    try {
      decoder = await this.loadCodec?.(code)
    } catch {
      // a loader that throws knows the codec no better than one that returns nothing
    }

    if (decoder == null) {
      throw new UnknownCodecError(`No decoder for codec 0x${code.toString(16)}`)
    }

    this.decoders.set(code, decoder)
    return decoder
  }
}

function collectLinks (value: unknown, found: CID[]): void {
  if (value == null || typeof value !== 'object' || value instanceof Uint8Array) {
    return
  }

  const cid = CID.asCID(value)
  if (cid != null) {
    found.push(cid)
    return
  }

  const children = Array.isArray(value) ? value : Object.values(value)
  for (const child of children) {
    collectLinks(child, found)
  }
}
