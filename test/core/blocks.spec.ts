import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { identity } from 'multiformats/hashes/identity'
import { hasBlock, readBlock } from '../../src/core/blocks.ts'
import { BlockNotFoundError, BlockstoreError } from '../../src/errors.ts'
import { cborBlock, identityCborBlock, pbBlock, rawBlock, utf8 } from '../fixtures/dag.ts'
import { rejection } from '../fixtures/rejection.ts'
import type { BlockSource } from '../../src/core/blocks.ts'

/** A store that holds nothing and fails the test if it is asked anything */
const untouchable: BlockSource = {
  get: () => {
    throw new Error('the store was read')
  },
  has: () => {
    throw new Error('the store was asked')
  }
}

describe('core/blocks', () => {
  let store: MemoryBlockstore

  beforeEach(() => {
    store = new MemoryBlockstore()
  })

  describe('readBlock', () => {
    it('returns the bytes of a stored block', async () => {
      const pb = await pbBlock('stored')
      const cbor = await cborBlock({ a: pb.cid })
      await store.put(pb.cid, pb.bytes)
      await store.put(cbor.cid, cbor.bytes)
      expect(await readBlock(store, pb.cid)).to.equalBytes(pb.bytes)
      expect(await readBlock(store, cbor.cid)).to.equalBytes(cbor.bytes)
    })

    it('joins a block stored as several chunks', async () => {
      const block = await rawBlock('one two three')
      await store.put(block.cid, [utf8('one '), utf8('two '), utf8('three')])
      expect(await readBlock(store, block.cid)).to.equalBytes(block.bytes)
    })

    it('joins chunks from an async generator', async () => {
      const block = await rawBlock('abcdef')
      const chunked: BlockSource = {
        async * get () {
          yield utf8('ab')
          yield utf8('cd')
          yield new Uint8Array(0)
          yield utf8('ef')
        },
        has: () => true
      }
      expect(await readBlock(chunked, block.cid)).to.equalBytes(block.bytes)
    })

    it('returns an empty block', async () => {
      const block = await rawBlock(new Uint8Array(0))
      await store.put(block.cid, block.bytes)
      const bytes = await readBlock(store, block.cid)
      expect(bytes).to.be.an.instanceOf(Uint8Array)
      expect(bytes).to.have.lengthOf(0)
    })

    it('answers an identity CID from the CID, without the store', async () => {
      const bytes = utf8('inline')
      const cid = CID.createV1(raw.code, identity.digest(bytes))
      expect(await readBlock(untouchable, cid)).to.equalBytes(bytes)

      const cbor = identityCborBlock({ hello: 'world' })
      expect(await readBlock(untouchable, cbor.cid)).to.equalBytes(cbor.bytes)
      expect(await readBlock(new MemoryBlockstore(), cbor.cid)).to.equalBytes(cbor.bytes)
    })

    it('throws BlockNotFoundError for a block the store does not hold', async () => {
      const block = await rawBlock('missing')
      const err = await rejection(readBlock(store, block.cid))
      expect(err).to.have.property('name', BlockNotFoundError.name)
      expect(err).to.be.an.instanceOf(BlockNotFoundError)
      expect(err.message).to.include(block.cid.toString())
    })

    it('wraps other store errors in a BlockstoreError that keeps the cause', async () => {
      const failing: BlockSource = {
        // eslint-disable-next-line require-yield
        async * get () {
          throw new Error('disk on fire')
        },
        has: () => true
      }
      const err = await rejection(readBlock(failing, (await rawBlock('x')).cid))
      expect(err.name).to.equal(BlockstoreError.name)
      expect(err.message).to.include('disk on fire')
      expect((err.cause as Error).message).to.equal('disk on fire')
    })

    it('passes the abort signal and offline flag to the store', async () => {
      const block = await rawBlock('with options')
      await store.put(block.cid, block.bytes)
      const seen: unknown[] = []
      const recording: BlockSource = {
        get: (cid, options) => {
          seen.push(options)
          return store.get(cid, options)
        },
        has: (cid, options) => store.has(cid, options)
      }
      const controller = new AbortController()
      await readBlock(recording, block.cid, { signal: controller.signal, offline: true })
      expect(seen).to.have.lengthOf(1)
      expect(seen[0]).to.have.property('signal', controller.signal)
      expect(seen[0]).to.have.property('offline', true)

      controller.abort()
      const err = await rejection(readBlock(recording, block.cid, { signal: controller.signal }))
      expect(err.name).to.equal('AbortError')
    })
  })

  describe('hasBlock', () => {
    it('is true for a stored block and false for a missing one', async () => {
      const held = await pbBlock('held')
      const missing = await pbBlock('missing')
      await store.put(held.cid, held.bytes)
      expect(await hasBlock(store, held.cid)).to.be.true()
      expect(await hasBlock(store, missing.cid)).to.be.false()
    })

    it('is true for an identity CID without asking the store', async () => {
      const cbor = identityCborBlock([1, 2, 3])
      expect(await hasBlock(untouchable, cbor.cid)).to.be.true()
      expect(await hasBlock(new MemoryBlockstore(), cbor.cid)).to.be.true()
    })

    it('works with a store whose `has` is async', async () => {
      const block = await rawBlock('async has')
      await store.put(block.cid, block.bytes)
      const asyncStore: BlockSource = {
        get: (cid, options) => store.get(cid, options),
        has: async (cid, options) => store.has(cid, options)
      }
      expect(await hasBlock(asyncStore, block.cid)).to.be.true()
      expect(await hasBlock(asyncStore, (await rawBlock('nope')).cid)).to.be.false()
    })
  })
})
