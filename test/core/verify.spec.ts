import { blake3 as blake3Hash } from '@noble/hashes/blake3.js'
import { expect } from 'aegir/chai'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { from } from 'multiformats/hashes/hasher'
import { identity } from 'multiformats/hashes/identity'
import { sha256, sha512 } from 'multiformats/hashes/sha2'
import { BLAKE3_CODE, BUILT_IN_HASHERS, BlockVerifier, blake3 } from '../../src/core/verify.ts'
import { HashMismatchError, UnsupportedHashError } from '../../src/errors.ts'
import { cborBlock, pbBlock, utf8 } from '../fixtures/dag.ts'
import { rejection } from '../fixtures/rejection.ts'
import type { MultihashHasher } from 'multiformats/hashes/interface'

/** sha2-256-trunc254-padded (Filecoin piece commitments): not built in */
const SHA256_TRUNC254 = 0x1012

/** A made-up multihash: the digest is the input reversed, padded or cut to 24 bytes */
const REVERSE_CODE = 0x300042
const reverse = from({
  name: 'reverse',
  code: REVERSE_CODE,
  encode: (input: Uint8Array) => {
    const out = new Uint8Array(24)
    out.set(input.slice().reverse().subarray(0, 24))
    return out
  }
})

function flip (bytes: Uint8Array, index: number = 0): Uint8Array {
  const copy = bytes.slice()
  copy[index] ^= 0x01
  return copy
}

async function expectMismatch (verifier: BlockVerifier, cid: CID, bytes: Uint8Array): Promise<void> {
  const err = await rejection(verifier.verify(cid, bytes))
  expect(err).to.have.property('name', HashMismatchError.name)
  expect(err).to.be.an.instanceOf(HashMismatchError)
}

describe('core/verify', () => {
  const bytes = utf8('the quick brown fox jumps over the lazy dog')

  it('builds in sha2-256, sha2-512 and blake3', () => {
    expect(BUILT_IN_HASHERS.map(hasher => hasher.code)).to.have.members([sha256.code, sha512.code, BLAKE3_CODE])
    expect(BLAKE3_CODE).to.equal(0x1e)
  })

  describe('sha2-256', () => {
    it('accepts matching bytes', async () => {
      const cid = CID.createV1(raw.code, await sha256.digest(bytes))
      await new BlockVerifier().verify(cid, bytes)
    })

    it('accepts a real dag-pb and dag-cbor block, and a CIDv0', async () => {
      const verifier = new BlockVerifier()
      const pb = await pbBlock('hello')
      const cbor = await cborBlock({ hello: 'world', link: pb.cid })
      await verifier.verify(pb.cid, pb.bytes)
      await verifier.verify(pb.cid.toV0(), pb.bytes)
      await verifier.verify(cbor.cid, cbor.bytes)
    })

    it('rejects a flipped byte anywhere in the block', async () => {
      const verifier = new BlockVerifier()
      const cid = CID.createV1(raw.code, await sha256.digest(bytes))
      for (const index of [0, 10, bytes.byteLength - 1]) {
        await expectMismatch(verifier, cid, flip(bytes, index))
      }
    })

    it('rejects truncated, extended and empty bytes', async () => {
      const verifier = new BlockVerifier()
      const cid = CID.createV1(raw.code, await sha256.digest(bytes))
      await expectMismatch(verifier, cid, bytes.subarray(0, bytes.byteLength - 1))
      await expectMismatch(verifier, cid, new Uint8Array([...bytes, 0]))
      await expectMismatch(verifier, cid, new Uint8Array(0))
    })

    it('rejects the bytes of a different block', async () => {
      const other = utf8('the quick brown fox jumps over the lazy cat')
      const cid = CID.createV1(raw.code, await sha256.digest(bytes))
      await expectMismatch(new BlockVerifier(), cid, other)
    })

    it('verifies a truncated sha2-256 digest', async () => {
      const cid = CID.createV1(raw.code, await sha256.digest(bytes, { truncate: 20 }))
      expect(cid.multihash.size).to.equal(20)
      await new BlockVerifier().verify(cid, bytes)
      await expectMismatch(new BlockVerifier(), cid, flip(bytes))
    })
  })

  describe('sha2-512', () => {
    it('accepts matching bytes and rejects a flipped byte', async () => {
      const verifier = new BlockVerifier()
      const cid = CID.createV1(raw.code, await sha512.digest(bytes))
      expect(cid.multihash.size).to.equal(64)
      await verifier.verify(cid, bytes)
      await expectMismatch(verifier, cid, flip(bytes, 5))
    })

    it('does not accept a sha2-256 digest labelled as sha2-512', async () => {
      const wrong = Digest.create(sha512.code, (await sha256.digest(bytes)).digest)
      const cid = CID.createV1(raw.code, wrong)
      // sha2-512 cut to 32 bytes is not sha2-256
      await expectMismatch(new BlockVerifier(), cid, bytes)
    })
  })

  describe('blake3', () => {
    it('the exported hasher matches @noble/hashes blake3', async () => {
      const digest = await blake3.digest(bytes)
      expect(digest.code).to.equal(0x1e)
      expect(digest.size).to.equal(32)
      expect(digest.digest).to.equalBytes(blake3Hash(bytes))
    })

    it('accepts a 32-byte digest and rejects a flipped byte', async () => {
      const verifier = new BlockVerifier()
      const cid = CID.createV1(raw.code, Digest.create(0x1e, blake3Hash(bytes)))
      await verifier.verify(cid, bytes)
      await expectMismatch(verifier, cid, flip(bytes, 3))
    })

    it('accepts a 64-byte digest (BLAKE3 output of any length)', async () => {
      const verifier = new BlockVerifier()
      const long = blake3Hash(bytes, { dkLen: 64 })
      const cid = CID.createV1(raw.code, Digest.create(0x1e, long))
      expect(cid.multihash.size).to.equal(64)
      await verifier.verify(cid, bytes)
      await expectMismatch(verifier, cid, flip(bytes))
    })

    it('refuses digests shorter than 20 bytes, which are easy to forge', async () => {
      for (const length of [0, 1, 16, 19]) {
        const cid = CID.createV1(raw.code, Digest.create(0x1e, blake3Hash(bytes, { dkLen: length })))
        const err = await rejection(new BlockVerifier().verify(cid, bytes))
        expect(err.name).to.equal(UnsupportedHashError.name)
      }
      const cid = CID.createV1(raw.code, Digest.create(0x1e, blake3Hash(bytes, { dkLen: 20 })))
      await new BlockVerifier().verify(cid, bytes)
    })

    it('rejects a 64-byte digest whose second half is wrong', async () => {
      const long = blake3Hash(bytes, { dkLen: 64 })
      long[63] ^= 0xff
      const cid = CID.createV1(raw.code, Digest.create(0x1e, long))
      await expectMismatch(new BlockVerifier(), cid, bytes)
    })

    it('verifies a blake3 dag-cbor block as WNFS makes them', async () => {
      const block = await cborBlock({ wnfs: { version: '1.0.0' } }, blake3)
      expect(block.cid.multihash.code).to.equal(0x1e)
      await new BlockVerifier().verify(block.cid, block.bytes)
      await expectMismatch(new BlockVerifier(), block.cid, flip(block.bytes, block.bytes.byteLength - 1))
    })
  })

  describe('identity', () => {
    it('accepts the inline bytes', async () => {
      const cid = CID.createV1(raw.code, identity.digest(bytes))
      await new BlockVerifier().verify(cid, bytes)
    })

    it('accepts an empty identity block', async () => {
      const cid = CID.createV1(raw.code, identity.digest(new Uint8Array(0)))
      await new BlockVerifier().verify(cid, new Uint8Array(0))
    })

    it('rejects bytes that differ from the inline bytes', async () => {
      const verifier = new BlockVerifier()
      const cid = CID.createV1(raw.code, identity.digest(bytes))
      await expectMismatch(verifier, cid, flip(bytes, 7))
      await expectMismatch(verifier, cid, bytes.subarray(1))
      await expectMismatch(verifier, cid, new Uint8Array(0))
    })
  })

  describe('other hash functions', () => {
    it('throws UnsupportedHashError for sha2-256-trunc254-padded', async () => {
      const cid = CID.createV1(raw.code, Digest.create(SHA256_TRUNC254, new Uint8Array(32).fill(7)))
      const err = await rejection(new BlockVerifier().verify(cid, bytes))
      expect(err).to.have.property('name', UnsupportedHashError.name)
      expect(err).to.be.an.instanceOf(UnsupportedHashError)
    })

    it('throws UnsupportedHashError for a made-up hash, even with the right digest', async () => {
      const cid = CID.createV1(raw.code, await reverse.digest(bytes))
      const err = await rejection(new BlockVerifier().verify(cid, bytes))
      expect(err).to.have.property('name', UnsupportedHashError.name)
    })

    it('verifies with a hasher passed in `hashers`', async () => {
      const verifier = new BlockVerifier({ hashers: [reverse] })
      const cid = CID.createV1(raw.code, await reverse.digest(bytes))
      await verifier.verify(cid, bytes)
      // the last byte of the input is the first byte of the digest
      await expectMismatch(verifier, cid, flip(bytes, bytes.byteLength - 1))
    })

    it('verifies with a hasher found by `loadHasher`, and asks for it once', async () => {
      const asked: number[] = []
      const verifier = new BlockVerifier({
        loadHasher: async code => {
          asked.push(code)
          return code === REVERSE_CODE ? reverse : undefined
        }
      })
      const cid = CID.createV1(raw.code, await reverse.digest(bytes))
      await verifier.verify(cid, bytes)
      await expectMismatch(verifier, cid, flip(bytes, bytes.byteLength - 2))
      await verifier.verify(cid, bytes)
      expect(asked).to.deep.equal([REVERSE_CODE])
    })

    it('accepts a synchronous `loadHasher`', async () => {
      const verifier = new BlockVerifier({ loadHasher: code => code === REVERSE_CODE ? reverse : undefined })
      const cid = CID.createV1(raw.code, await reverse.digest(bytes))
      await verifier.verify(cid, bytes)
    })

    it('does not ask `loadHasher` for built-in hashes, identity, or ones in `hashers`', async () => {
      const asked: number[] = []
      const verifier = new BlockVerifier({
        hashers: [reverse],
        loadHasher: code => {
          asked.push(code)
          return undefined
        }
      })
      await verifier.verify(CID.createV1(raw.code, await sha256.digest(bytes)), bytes)
      await verifier.verify(CID.createV1(raw.code, await sha512.digest(bytes)), bytes)
      await verifier.verify(CID.createV1(raw.code, await blake3.digest(bytes)), bytes)
      await verifier.verify(CID.createV1(raw.code, identity.digest(bytes)), bytes)
      await verifier.verify(CID.createV1(raw.code, await reverse.digest(bytes)), bytes)
      expect(asked).to.deep.equal([])
    })

    it('throws UnsupportedHashError when `loadHasher` returns undefined or throws', async () => {
      const cid = CID.createV1(raw.code, await reverse.digest(bytes))
      const none = await rejection(new BlockVerifier({ loadHasher: () => undefined }).verify(cid, bytes))
      expect(none).to.have.property('name', UnsupportedHashError.name)
      const throws = await rejection(new BlockVerifier({
        loadHasher: async () => {
          throw new Error('Hasher not found')
        }
      }).verify(cid, bytes))
      expect(throws).to.have.property('name', UnsupportedHashError.name)
    })

    it('uses an async hasher', async () => {
      const asyncReverse: MultihashHasher<typeof REVERSE_CODE> = {
        name: 'async-reverse',
        code: REVERSE_CODE,
        encode: async (input: Uint8Array) => reverse.encode(input),
        digest: async (input: Uint8Array) => reverse.digest(input)
      }
      const verifier = new BlockVerifier({ hashers: [asyncReverse] })
      const cid = CID.createV1(raw.code, await reverse.digest(bytes))
      await verifier.verify(cid, bytes)
      await expectMismatch(verifier, cid, flip(bytes, bytes.byteLength - 1))
    })

    it('lets a hasher in `hashers` replace a built-in one', async () => {
      // a "sha2-256" that hashes with sha2-512 cut to 32 bytes
      const fake: MultihashHasher<typeof sha256.code> = {
        name: 'fake-sha2-256',
        code: sha256.code,
        encode: async (input: Uint8Array) => (await sha512.encode(input)).slice(0, 32),
        digest: async (input: Uint8Array) => Digest.create(sha256.code, (await sha512.digest(input)).digest.subarray(0, 32))
      }
      const verifier = new BlockVerifier({ hashers: [fake] })
      const fakeCid = CID.createV1(raw.code, await fake.digest(bytes))
      await verifier.verify(fakeCid, bytes)
      await expectMismatch(verifier, CID.createV1(raw.code, await sha256.digest(bytes)), bytes)
    })

    it('throws UnsupportedHashError when the hasher cannot make a digest of the CID\'s length', async () => {
      // multiformats' sha2-256 cannot produce 40 bytes
      const cid = CID.createV1(raw.code, Digest.create(sha256.code, new Uint8Array(40)))
      const err = await rejection(new BlockVerifier().verify(cid, bytes))
      expect(err).to.have.property('name', UnsupportedHashError.name)
    })
  })
})
