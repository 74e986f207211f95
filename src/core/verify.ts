import { blake3 as blake3Hash } from '@noble/hashes/blake3.js'
import { equals } from 'multiformats/bytes'
import * as Digest from 'multiformats/hashes/digest'
import { identity } from 'multiformats/hashes/identity'
import { sha256, sha512 } from 'multiformats/hashes/sha2'
import { HashMismatchError, UnsupportedHashError } from '../errors.ts'
import type { CID } from 'multiformats/cid'
import type { MultihashDigest, MultihashHasher } from 'multiformats/hashes/interface'

/** Shortest digest accepted, as multiformats' hashers do: shorter ones are easy to forge */
const MIN_DIGEST_LENGTH = 20

/** Multicodec code of the BLAKE3 multihash, used by WNFS */
export const BLAKE3_CODE = 0x1e

/**
 * A BLAKE3 multihash hasher. The digest length follows the `truncate` option,
 * so CIDs with BLAKE3 digests of any length verify (BLAKE3 is an XOF).
 */
export const blake3: MultihashHasher<typeof BLAKE3_CODE> = {
  name: 'blake3',
  code: BLAKE3_CODE,
  encode: (input: Uint8Array) => blake3Hash(input),
  digest (input: Uint8Array, options?: { truncate?: number }): MultihashDigest<typeof BLAKE3_CODE> {
    const length = options?.truncate ?? 32
    if (length < MIN_DIGEST_LENGTH) {
      throw new UnsupportedHashError(`A ${length} byte blake3 digest is too short to be safe (at least ${MIN_DIGEST_LENGTH})`)
    }
    return Digest.create(BLAKE3_CODE, blake3Hash(input, { dkLen: length }))
  }
}

/** Finds a hasher that is not built in, for example Helia's `helia.getHasher` */
export interface LoadHasher {
  (code: number): MultihashHasher | undefined | Promise<MultihashHasher | undefined>
}

/** Hash functions a {@link BlockVerifier} checks beyond the built-in ones */
export interface BlockVerifierInit {
  /** Extra hashers, checked before `loadHasher` */
  hashers?: MultihashHasher[]

  /** Called for multihash codes that are neither built in nor in `hashers` */
  loadHasher?: LoadHasher
}

/** The multihash functions verified without any configuration (identity is handled inline) */
export const BUILT_IN_HASHERS: readonly MultihashHasher[] = [sha256, sha512, blake3]

/**
 * Checks that a block's bytes hash to the digest in its CID. sha2-256,
 * sha2-512, blake3 and identity are built in; other hash functions come from
 * `hashers` or `loadHasher`.
 *
 * @example
 *
 * ```ts
 * const verifier = new BlockVerifier()
 * await verifier.verify(cid, bytes) // throws HashMismatchError on bad bytes
 * ```
 */
export class BlockVerifier {
  private readonly hashers: Map<number, MultihashHasher>
  private readonly loadHasher?: LoadHasher

  constructor (init: BlockVerifierInit = {}) {
    this.hashers = new Map()
    for (const hasher of [...BUILT_IN_HASHERS, ...(init.hashers ?? [])]) {
      this.hashers.set(hasher.code, hasher)
    }
    this.loadHasher = init.loadHasher
  }

  /**
   * @throws {HashMismatchError} when the bytes do not hash to the CID's digest
   * @throws {UnsupportedHashError} when the CID's hash function is unknown
   */
  async verify (cid: CID, bytes: Uint8Array): Promise<void> {
    const expected = cid.multihash
    if (expected.code === identity.code) {
      if (!equals(expected.digest, bytes)) {
        throw new HashMismatchError(`Block ${cid} does not match its inline identity data`)
      }
      return
    }

    const hasher = this.hashers.get(expected.code) ?? await this.findHasher(expected.code)
    let actual: MultihashDigest
    try {
      actual = await hasher.digest(bytes, { truncate: expected.size })
    } catch (err) {
      throw new UnsupportedHashError(`Cannot compute a ${expected.size} byte digest with hash 0x${expected.code.toString(16)}: ${(err as Error).message}`)
    }

    if (!equals(actual.digest, expected.digest)) {
      throw new HashMismatchError(`Block bytes do not hash to ${cid}`)
    }
  }

  private async findHasher (code: number): Promise<MultihashHasher> {
    let hasher: MultihashHasher | undefined
    try {
      hasher = await this.loadHasher?.(code)
    } catch {
      // a loader that throws knows the hash no better than one that returns nothing
    }

    if (hasher == null) {
      throw new UnsupportedHashError(`No hasher for multihash 0x${code.toString(16)}`)
    }

    this.hashers.set(code, hasher)
    return hasher
  }
}
