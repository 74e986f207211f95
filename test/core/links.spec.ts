import * as dagCbor from '@ipld/dag-cbor'
import * as dagJson from '@ipld/dag-json'
import * as dagPb from '@ipld/dag-pb'
import { expect } from 'aegir/chai'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { identity } from 'multiformats/hashes/identity'
import { sha256 } from 'multiformats/hashes/sha2'
import { BUILT_IN_CODECS, LinkReader } from '../../src/core/links.ts'
import { InvalidBlockError, UnknownCodecError } from '../../src/errors.ts'
import { cborBlock, identityBlock, identityCborBlock, jsonBlock, keys, pbBlock, rawBlock, utf8 } from '../fixtures/dag.ts'
import { rejection } from '../fixtures/rejection.ts'
import type { BlockDecoder } from '../../src/core/links.ts'

/** A made-up codec: the block is a list of CID strings, one a line */
const LINES_CODE = 0x300001

const linesCodec: BlockDecoder = {
  code: LINES_CODE,
  decode: (bytes: Uint8Array) => new TextDecoder().decode(bytes).split('\n').filter(line => line !== '').map(line => CID.parse(line))
}

async function linesBlock (cids: CID[]): Promise<{ cid: CID, bytes: Uint8Array }> {
  const bytes = utf8(cids.map(cid => cid.toString()).join('\n'))
  return { cid: CID.createV1(LINES_CODE, await sha256.digest(bytes)), bytes }
}

describe('core/links', () => {
  let leaves: CID[]

  before(async () => {
    leaves = await Promise.all(['a', 'b', 'c', 'd', 'e'].map(async name => (await rawBlock(`leaf ${name}`)).cid))
  })

  it('builds in dag-pb, raw, dag-cbor and dag-json', () => {
    expect(BUILT_IN_CODECS.map(codec => codec.code)).to.have.members([dagPb.code, raw.code, dagCbor.code, dagJson.code])
  })

  describe('dag-pb', () => {
    it('returns the links in link order', async () => {
      // dag-pb keeps links in the order given (prepare sorts only by Name, and the fixture names them link-0000, link-0001, ...)
      const order = [leaves[3], leaves[0], leaves[4], leaves[1]]
      const block = await pbBlock('dir', order)
      const links = await new LinkReader().links(block.cid, block.bytes)
      expect(keys(links)).to.deep.equal(keys(order))
    })

    it('returns repeated links as often as the node lists them', async () => {
      const block = await pbBlock('twice', [leaves[0], leaves[0]])
      const links = await new LinkReader().links(block.cid, block.bytes)
      expect(keys(links)).to.deep.equal(keys([leaves[0], leaves[0]]))
    })

    it('returns no links for a node without any', async () => {
      const block = await pbBlock('empty')
      expect(await new LinkReader().links(block.cid, block.bytes)).to.deep.equal([])
    })

    it('keeps CIDv0 links as CIDv0', async () => {
      const v0 = (await pbBlock('v0 child')).cid.toV0()
      const block = await pbBlock('parent of v0', [v0])
      const links = await new LinkReader().links(block.cid, block.bytes)
      expect(links).to.have.lengthOf(1)
      expect(links[0].version).to.equal(0)
      expect(links[0].equals(v0)).to.be.true()
    })
  })

  describe('raw', () => {
    it('has no links, even if its bytes look like a block with links', async () => {
      const pb = await pbBlock('dir', leaves)
      const cid = CID.createV1(raw.code, await sha256.digest(pb.bytes))
      expect(await new LinkReader().links(cid, pb.bytes)).to.deep.equal([])
    })
  })

  describe('dag-cbor', () => {
    it('finds links in nested maps and arrays, in map key order', async () => {
      const block = await cborBlock({
        a: leaves[0],
        b: [leaves[1], { c: leaves[2], text: 'not a link', bytes: new Uint8Array([1, 2, 3]) }, 7, null, true],
        d: { e: { f: [[leaves[3]]] } },
        g: leaves[4]
      })
      const links = await new LinkReader().links(block.cid, block.bytes)
      expect(keys(links)).to.deep.equal(keys(leaves))
    })

    it('follows the encoded (canonical) key order, not the order the value was written in', async () => {
      // dag-cbor sorts map keys by length, then bytes: 'z' < 'aa' < 'bbb'
      const block = await cborBlock({ bbb: leaves[0], aa: leaves[1], z: leaves[2] })
      const links = await new LinkReader().links(block.cid, block.bytes)
      expect(keys(links)).to.deep.equal(keys([leaves[2], leaves[1], leaves[0]]))
    })

    it('returns the same CID each time it appears', async () => {
      const block = await cborBlock([leaves[0], { x: leaves[0] }])
      const links = await new LinkReader().links(block.cid, block.bytes)
      expect(keys(links)).to.deep.equal(keys([leaves[0], leaves[0]]))
    })

    it('finds a CID that is the whole block', async () => {
      const block = await cborBlock(leaves[1])
      const links = await new LinkReader().links(block.cid, block.bytes)
      expect(keys(links)).to.deep.equal(keys([leaves[1]]))
    })

    it('returns no links for scalars and byte strings', async () => {
      for (const value of [1, 'text', null, true, new Uint8Array([0xd8, 0x2a]), { a: 1, b: [2, 3] }]) {
        const block = await cborBlock(value)
        expect(await new LinkReader().links(block.cid, block.bytes)).to.deep.equal([])
      }
    })

    it('throws InvalidBlockError for bytes that do not decode', async () => {
      const bytes = new Uint8Array([0xff, 0x00, 0x13, 0x37, 0xa5])
      const cid = CID.createV1(dagCbor.code, await sha256.digest(bytes))
      const err = await rejection(new LinkReader().links(cid, bytes))
      expect(err).to.have.property('name', InvalidBlockError.name)
      expect(err).to.be.an.instanceOf(InvalidBlockError)
    })

    it('throws InvalidBlockError for truncated bytes', async () => {
      const block = await cborBlock({ a: leaves[0], b: 'some text' })
      const err = await rejection(new LinkReader().links(block.cid, block.bytes.subarray(0, block.bytes.byteLength - 3)))
      expect(err).to.have.property('name', InvalidBlockError.name)
    })
  })

  describe('dag-json', () => {
    it('finds links in nested maps and arrays', async () => {
      const block = await jsonBlock({ a: leaves[0], b: [{ c: leaves[1] }, 'x'], d: { e: leaves[2] } })
      const links = await new LinkReader().links(block.cid, block.bytes)
      expect(keys(links)).to.deep.equal(keys(leaves.slice(0, 3)))
    })

    it('does not treat bytes as links', async () => {
      const block = await jsonBlock({ bytes: new Uint8Array([1, 2, 3]), link: leaves[3] })
      const links = await new LinkReader().links(block.cid, block.bytes)
      expect(keys(links)).to.deep.equal(keys([leaves[3]]))
    })

    it('throws InvalidBlockError for bytes that are not JSON', async () => {
      const bytes = utf8('{"a": ')
      const cid = CID.createV1(dagJson.code, await sha256.digest(bytes))
      const err = await rejection(new LinkReader().links(cid, bytes))
      expect(err).to.have.property('name', InvalidBlockError.name)
    })
  })

  describe('identity CIDs', () => {
    it('inlineBytes returns the data of an identity CID', () => {
      const bytes = utf8('inline data')
      const cid = CID.createV1(raw.code, identity.digest(bytes))
      expect(LinkReader.inlineBytes(cid)).to.equalBytes(bytes)
    })

    it('inlineBytes returns undefined for a hashed CID', async () => {
      const block = await rawBlock('hashed')
      expect(LinkReader.inlineBytes(block.cid)).to.be.undefined()
    })

    it('inlineBytes returns an empty array for an empty identity CID', () => {
      const cid = CID.createV1(raw.code, identity.digest(new Uint8Array(0)))
      const bytes = LinkReader.inlineBytes(cid)
      expect(bytes).to.be.an.instanceOf(Uint8Array)
      expect(bytes).to.have.lengthOf(0)
    })

    it('reads the links of an identity dag-cbor block from its inline bytes', async () => {
      const block = identityCborBlock({ next: leaves[2], more: [leaves[3]] })
      const inline = LinkReader.inlineBytes(block.cid)
      expect(inline).to.equalBytes(block.bytes)
      const links = await new LinkReader().links(block.cid, inline ?? new Uint8Array(0))
      expect(keys(links)).to.deep.equal(keys([leaves[3], leaves[2]]))
    })

    it('returns identity CIDs among the links of a block', async () => {
      const inline = identityBlock(raw.code, utf8('tiny'))
      const block = await pbBlock('has inline child', [inline.cid, leaves[0]])
      const links = await new LinkReader().links(block.cid, block.bytes)
      expect(keys(links)).to.deep.equal(keys([inline.cid, leaves[0]]))
      expect(LinkReader.inlineBytes(links[0])).to.equalBytes(utf8('tiny'))
    })
  })

  describe('other codecs', () => {
    it('throws UnknownCodecError for a codec it has no decoder for', async () => {
      const block = await linesBlock([leaves[0]])
      const err = await rejection(new LinkReader().links(block.cid, block.bytes))
      expect(err).to.have.property('name', UnknownCodecError.name)
      expect(err).to.be.an.instanceOf(UnknownCodecError)
    })

    it('reads links with a decoder passed in `codecs`', async () => {
      const block = await linesBlock([leaves[4], leaves[1]])
      const links = await new LinkReader({ codecs: [linesCodec] }).links(block.cid, block.bytes)
      expect(keys(links)).to.deep.equal(keys([leaves[4], leaves[1]]))
    })

    it('reads links with a decoder found by `loadCodec`, and asks for it once', async () => {
      const asked: number[] = []
      const reader = new LinkReader({
        loadCodec: async code => {
          asked.push(code)
          return code === LINES_CODE ? linesCodec : undefined
        }
      })
      const one = await linesBlock([leaves[0], leaves[2]])
      const two = await linesBlock([leaves[3]])
      expect(keys(await reader.links(one.cid, one.bytes))).to.deep.equal(keys([leaves[0], leaves[2]]))
      expect(keys(await reader.links(two.cid, two.bytes))).to.deep.equal(keys([leaves[3]]))
      expect(asked).to.deep.equal([LINES_CODE])
    })

    it('accepts a synchronous `loadCodec`', async () => {
      const block = await linesBlock([leaves[1]])
      const reader = new LinkReader({ loadCodec: code => code === LINES_CODE ? linesCodec : undefined })
      expect(keys(await reader.links(block.cid, block.bytes))).to.deep.equal(keys([leaves[1]]))
    })

    it('does not ask `loadCodec` for built-in codecs or ones in `codecs`', async () => {
      const asked: number[] = []
      const reader = new LinkReader({
        codecs: [linesCodec],
        loadCodec: code => {
          asked.push(code)
          return undefined
        }
      })
      const pb = await pbBlock('x', [leaves[0]])
      const cbor = await cborBlock([leaves[0]])
      const lines = await linesBlock([leaves[0]])
      await reader.links(pb.cid, pb.bytes)
      await reader.links(cbor.cid, cbor.bytes)
      await reader.links(lines.cid, lines.bytes)
      expect(asked).to.deep.equal([])
    })

    it('throws UnknownCodecError when `loadCodec` returns undefined', async () => {
      const block = await linesBlock([leaves[0]])
      const err = await rejection(new LinkReader({ loadCodec: () => undefined }).links(block.cid, block.bytes))
      expect(err).to.have.property('name', UnknownCodecError.name)
    })

    it('throws UnknownCodecError when `loadCodec` throws', async () => {
      const block = await linesBlock([leaves[0]])
      const reader = new LinkReader({
        loadCodec: async () => {
          throw new Error('Codec not found')
        }
      })
      const err = await rejection(reader.links(block.cid, block.bytes))
      expect(err).to.have.property('name', UnknownCodecError.name)
    })

    it('throws InvalidBlockError when a custom decoder throws', async () => {
      const block = await linesBlock([leaves[0]])
      const reader = new LinkReader({
        codecs: [{
          code: LINES_CODE,
          decode: () => {
            throw new Error('bad block')
          }
        }]
      })
      const err = await rejection(reader.links(block.cid, block.bytes))
      expect(err).to.have.property('name', InvalidBlockError.name)
    })
  })
})
