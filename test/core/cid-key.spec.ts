import { expect } from 'aegir/chai'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { cidKey, cidOfKey, decodeCid } from '../../src/core/cid-key.ts'

/** CIDs of the shapes decodeCid builds directly, and of others it leaves to CID.decode */
const anyCid: fc.Arbitrary<CID> = fc.oneof(
  fc.uint8Array({ minLength: 32, maxLength: 32 }).map(bytes => CID.createV0(createDigest(0x12, bytes))),
  fc.tuple(fc.integer({ min: 0, max: 0x7f }), fc.uint8Array({ minLength: 32, maxLength: 32 })).map(([code, bytes]) => CID.createV1(code, createDigest(0x12, bytes))),
  fc.tuple(fc.integer({ min: 0x80, max: 0x400000 }), fc.uint8Array({ minLength: 32, maxLength: 32 })).map(([code, bytes]) => CID.createV1(code, createDigest(0x12, bytes))),
  fc.tuple(fc.constantFrom(0x00, 0x13, 0xb220), fc.uint8Array({ maxLength: 64 })).map(([hash, bytes]) => CID.createV1(0x55, createDigest(hash, bytes)))
)

function describeCid (decode: (bytes: Uint8Array) => CID, bytes: Uint8Array): string {
  try {
    const cid = decode(bytes)
    return `${cid.version} ${cid.code} ${cid.multihash.code} ${cid.multihash.size} ${cid.toString()} ${cid.multihash.digest.join(',')}`
  } catch {
    return 'threw'
  }
}

describe('core/cid-key', () => {
  it('decodeCid decodes every CID as CID.decode does, and refuses what it refuses', () => {
    fc.assert(fc.property(anyCid, fc.integer({ min: -2, max: 2 }), (cid, cut) => {
      // the CID itself, cut short, or with bytes after it
      const bytes = cut <= 0 ? cid.bytes.subarray(0, cid.bytes.length + cut) : Uint8Array.from([...cid.bytes, ...new Array(cut).fill(1)])
      expect(describeCid(decodeCid, bytes)).to.equal(describeCid(CID.decode, bytes))
    }), { seed: 0x36, numRuns: 2000 })
  })

  it('cidOfKey gives back the CID a key was made from', () => {
    fc.assert(fc.property(anyCid, cid => {
      const back = cidOfKey(cidKey(cid))
      expect(back.equals(cid)).to.be.true()
      expect(back.version).to.equal(cid.version)
      expect(back.toString()).to.equal(cid.toString())
    }), { seed: 0x37, numRuns: 500 })
  })
})
