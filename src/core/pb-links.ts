import { decodeCid } from './cid-key.ts'
import type { CID } from 'multiformats/cid'

/** The links of a dag-pb block, and the sizes (`Tsize`) they claim */
export interface PbLinks {
  /** Each link's CID, in link order */
  cids: CID[]
  /** Each link's `Tsize` (same index as `cids`), or undefined where the link has none */
  sizes: Array<number | undefined>
}

/**
 * Reads the links of a dag-pb block (a protobuf `PBNode`) without decoding
 * its names or data. It accepts and refuses exactly the blocks that
 * `@ipld/dag-pb`'s `decode` does: fields of the right wire types, in the
 * right order, at most one `Data`, links not on both sides of it, every
 * link a `Hash` that is a whole CID. Link CIDs of the common shapes
 * (CIDv0, and CIDv1 of sha2-256 with a one-byte codec) are built straight
 * from their bytes, with no varint decoding; the CIDs are views into
 * `bytes`, as `decode`'s are.
 *
 * @throws {Error} when the bytes are not a valid `PBNode`
 *
 * @example
 *
 * ```ts
 * const { cids, sizes } = pbLinks(block.bytes)
 * ```
 */
export function pbLinks (bytes: Uint8Array): PbLinks {
  const cids: CID[] = []
  const sizes: Array<number | undefined> = []
  const end = bytes.length
  let at = 0
  let sawData = false
  let linksBeforeData = false
  while (at < end) {
    const key = readVarint(bytes, at)
    at = next
    if ((key & 0x7) !== 2) {
      throw new Error(`protobuf: (PBNode) invalid wireType, expected 2, got ${key & 0x7}`)
    }
    const field = key >> 3
    const start = readLengthPrefix(bytes, at, end)
    at = next
    if (field === 1) {
      if (sawData) {
        throw new Error('protobuf: (PBNode) duplicate Data section')
      }
      sawData = true
      linksBeforeData = cids.length > 0
    } else if (field === 2) {
      if (linksBeforeData) {
        throw new Error('protobuf: (PBNode) duplicate Links section')
      }
      readLink(bytes, start, at, cids, sizes)
    } else {
      throw new Error(`protobuf: (PBNode) invalid fieldNumber, expected 1 or 2, got ${field}`)
    }
  }
  return { cids, sizes }
}

/** Where the last `readVarint` stopped (one module-level cursor: no tuple per varint) */
let next = 0

/** Reads a protobuf varint at `at`; sets `next` to the byte after it */
function readVarint (bytes: Uint8Array, at: number): number {
  let value = 0
  for (let shift = 0; ; shift += 7) {
    if (shift >= 64) {
      throw new Error('protobuf: varint overflow')
    }
    if (at >= bytes.length) {
      throw new Error('protobuf: unexpected end of data')
    }
    const byte = bytes[at++]
    value += shift < 28 ? (byte & 0x7f) << shift : (byte & 0x7f) * (2 ** shift)
    if (byte < 0x80) {
      next = at
      return value
    }
  }
}

/**
 * Reads the length of a length-delimited field at `at`: returns where its
 * bytes start and sets `next` to where they end, which must not pass `end`
 */
function readLengthPrefix (bytes: Uint8Array, at: number, end: number): number {
  const length = readVarint(bytes, at)
  const start = next
  next = start + length
  if (next > end) {
    throw new Error('protobuf: unexpected end of data')
  }
  return start
}

/** Reads one `PBLink` in `bytes[start, end)` into `cids` and `sizes` */
function readLink (bytes: Uint8Array, start: number, end: number, cids: CID[], sizes: Array<number | undefined>): void {
  let at = start
  let hash: Uint8Array | undefined
  let sawName = false
  let size: number | undefined
  while (at < end) {
    const key = readVarint(bytes, at)
    at = next
    const wireType = key & 0x7
    const field = key >> 3
    if (field === 1 || field === 2) {
      const name = field === 1 ? 'Hash' : 'Name'
      if (field === 1 ? hash != null : sawName) {
        throw new Error(`protobuf: (PBLink) duplicate ${name} section`)
      }
      if (wireType !== 2) {
        throw new Error(`protobuf: (PBLink) wrong wireType (${wireType}) for ${name}`)
      }
      if (field === 1 && sawName) {
        throw new Error('protobuf: (PBLink) invalid order, found Name before Hash')
      }
      if (size !== undefined) {
        throw new Error(`protobuf: (PBLink) invalid order, found Tsize before ${name}`)
      }
      const from = readLengthPrefix(bytes, at, end)
      at = next
      if (field === 1) {
        hash = bytes.subarray(from, at)
      } else {
        sawName = true
      }
    } else if (field === 3) {
      if (size !== undefined) {
        throw new Error('protobuf: (PBLink) duplicate Tsize section')
      }
      if (wireType !== 0) {
        throw new Error(`protobuf: (PBLink) wrong wireType (${wireType}) for Tsize`)
      }
      size = readVarint(bytes, at)
      at = next
    } else {
      throw new Error(`protobuf: (PBLink) invalid fieldNumber, expected 1, 2 or 3, got ${field}`)
    }
  }
  if (at > end) {
    throw new Error('protobuf: (PBLink) unexpected end of data')
  }
  cids.push(linkCid(hash))
  sizes.push(size)
}

/** The CID of a link's `Hash` bytes (a view into them) */
function linkCid (hash: Uint8Array | undefined): CID {
  if (hash == null) {
    throw new Error('Invalid Hash field found in link, expected CID')
  }
  try {
    return decodeCid(hash)
  } catch {
    throw new Error('Invalid Hash field found in link, expected CID')
  }
}
