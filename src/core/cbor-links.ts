import { CID } from 'multiformats/cid'
import { InvalidBlockError } from '../errors.ts'
import { Yielder } from './budget.ts'

/** CBOR tag of an IPLD link in dag-cbor */
const CID_TAG = 42

/** Bytes of an item header's argument for additional information 24 to 27 (28 to 31 are not allowed) */
const ARGUMENT_BYTES: Array<number | undefined> = [1, 2, 4, 8]

/**
 * The links of a dag-cbor block, found by reading its CBOR item headers
 * rather than decoding it: no value is built, and the scan gives the event
 * loop a turn every slice of `yielder`, so a 2 MiB block of 50,000 links
 * does not block the node for the ~150 ms a full decode takes. Links come
 * in the order they appear in the bytes.
 *
 * @example
 *
 * ```ts
 * const links = await dagCborLinks(bytes)
 * ```
 *
 * @throws {InvalidBlockError} when the bytes are not one well-formed CBOR item or a tag 42 holds no CID
 */
export async function dagCborLinks (bytes: Uint8Array, yielder: Yielder = new Yielder(), signal?: AbortSignal): Promise<CID[]> {
  const links: CID[] = []
  let pos = 0
  // items still to read in each open container (two per map entry)
  const remaining: number[] = [1]
  let linkNext = false
  let items = 0

  const fail = (why: string): never => {
    throw new InvalidBlockError(`dag-cbor block is malformed at byte ${pos}: ${why}`)
  }

  const argument = (info: number): number => {
    if (info < 24) {
      return info
    }
    const size = ARGUMENT_BYTES[info - 24] ?? fail(`additional information ${info} is not allowed`)
    if (pos + size > bytes.byteLength) {
      fail('the block ends inside an item header')
    }
    let value = 0
    for (let i = 0; i < size; i++) {
      value = value * 256 + bytes[pos + i]
    }
    pos += size
    return value
  }

  while (remaining.length > 0) {
    if (remaining[remaining.length - 1] === 0) {
      remaining.pop()
      continue
    }
    if ((++items & 0x3ff) === 0) {
      await yielder.maybeYield(signal)
    }
    remaining[remaining.length - 1]--
    if (pos >= bytes.byteLength) {
      fail('the block ends inside an item')
    }
    const initial = bytes[pos++]
    const major = initial >>> 5
    const info = initial & 0x1f
    if (linkNext && major !== 2) {
      fail('a tag 42 does not hold bytes')
    }
    if (major === 7) {
      // simple values and floats: skip their bytes
      pos += info < 24 ? 0 : ARGUMENT_BYTES[info - 24] ?? fail(`additional information ${info} is not allowed`)
      continue
    }
    const value = argument(info)
    if (major === 2 || major === 3) {
      if (pos + value > bytes.byteLength) {
        fail('the block ends inside a string')
      }
      if (linkNext) {
        // a link is the CID's bytes after a 0x00 (the identity multibase prefix)
        if (value < 2 || bytes[pos] !== 0) {
          fail('a tag 42 does not hold a CID')
        }
        try {
          links.push(CID.decode(bytes.subarray(pos + 1, pos + value)))
        } catch (err) {
          fail(`a tag 42 holds a bad CID: ${(err as Error).message}`)
        }
        linkNext = false
      }
      pos += value
    } else if (major === 4 || major === 5) {
      remaining.push(major === 5 ? value * 2 : value)
    } else if (major === 6) {
      // the tagged item takes the tag's place in its container
      remaining[remaining.length - 1]++
      linkNext = value === CID_TAG
    }
  }
  if (pos !== bytes.byteLength) {
    fail(`${bytes.byteLength - pos} bytes follow the top-level item`)
  }
  return links
}
