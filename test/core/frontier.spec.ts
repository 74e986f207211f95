import * as dagCbor from '@ipld/dag-cbor'
import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { readBlock } from '../../src/core/blocks.ts'
import { Budget } from '../../src/core/budget.ts'
import { cidKey } from '../../src/core/cid-key.ts'
import { ReceiverFrontier } from '../../src/core/frontier.ts'
import { LinkReader } from '../../src/core/links.ts'
import { BlockVerifier } from '../../src/core/verify.ts'
import { walkDag } from '../../src/core/walk.ts'
import { HashMismatchError, InvalidBlockError, LimitExceededError, UnknownCodecError, UnsupportedHashError } from '../../src/errors.ts'
import { CountingBlockstore, ReadCountingBlockstore, arbitraryDag, buildDag, cborBlock, getBytes, identityCborBlock, isIdentity, keys, pbBlock, putAll, rawBlock, reachable, sampleDag } from '../fixtures/dag.ts'
import { treeSpecs } from '../fixtures/dags.ts'
import { rejection } from '../fixtures/rejection.ts'
import type { ReceiveOutcome } from '../../src/core/frontier.ts'
import type { Block, SampleDag } from '../fixtures/dag.ts'

function sorted (cids: Iterable<CID>): string[] {
  return keys(cids).sort()
}

function flip (bytes: Uint8Array): Uint8Array {
  const copy = bytes.slice()
  copy[copy.byteLength - 1] ^= 0x01
  return copy
}

type Tally = Record<ReceiveOutcome, number>

/**
 * Mirrors by sending exactly the wanted blocks, read from `source`, until the
 * frontier is complete. Throws if it does not finish within `maxRounds`.
 */
async function mirrorWants (frontier: ReceiverFrontier, source: MemoryBlockstore, maxRounds: number = 1000): Promise<Tally> {
  const tally: Tally = { stored: 0, duplicate: 0, unrequested: 0 }
  for (let round = 0; !frontier.complete; round++) {
    if (round === maxRounds) {
      throw new Error(`not complete after ${maxRounds} rounds`)
    }
    for (const cid of frontier.wants()) {
      tally[await frontier.receive(cid, await readBlock(source, cid))]++
    }
  }
  return tally
}

/**
 * Mirrors the way a sender does: each round it walks its DAG from the wants,
 * skipping what the receiver's store holds, and streams every block it meets.
 */
async function mirrorWalk (frontier: ReceiverFrontier, source: MemoryBlockstore, receiver: MemoryBlockstore, maxRounds: number = 100): Promise<Tally> {
  const tally: Tally = { stored: 0, duplicate: 0, unrequested: 0 }
  for (let round = 0; !frontier.complete; round++) {
    if (round === maxRounds) {
      throw new Error(`not complete after ${maxRounds} rounds`)
    }
    for await (const { cid, bytes } of walkDag(source, frontier.wants(), { skip: cid => receiver.has(cid) === true })) {
      tally[await frontier.receive(cid, bytes)]++
    }
  }
  return tally
}

describe('core/frontier', () => {
  it('is never complete while a block is being taken, though the block leaves the wants before its links are looked up', async () => {
    const leaf = await rawBlock('frontier busy leaf')
    const root = await cborBlock({ leaf: leaf.cid })
    /** A store whose lookups wait, once `gate` is set, until it resolves */
    class GatedStore extends MemoryBlockstore {
      gate?: Promise<void>
      looking = false
      async has (cid: CID): Promise<boolean> {
        this.looking = true
        await this.gate
        return super.has(cid)
      }
    }
    const store = new GatedStore()
    const frontier = await ReceiverFrontier.create([root.cid], { blockstore: store })
    let open = (): void => {}
    store.gate = new Promise(resolve => { open = resolve })
    store.looking = false

    const taking = frontier.receive(root.cid, root.bytes)
    while (!store.looking) {
      await new Promise(resolve => setTimeout(resolve, 1))
    }
    // the root is no longer wanted and its leaf not yet: a CAR Pool's other sessions must not see `complete`
    expect(frontier.wantCount).to.equal(0)
    expect(frontier.complete).to.be.false()
    open()
    expect(await taking).to.equal('stored')
    expect(frontier.complete).to.be.false()
    expect(sorted(frontier.wants())).to.deep.equal(sorted([leaf.cid]))
  })

  let dag: SampleDag

  beforeEach(async () => {
    dag = await sampleDag()
  })

  describe('create', () => {
    it('wants the roots when the store is empty', async () => {
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: new MemoryBlockstore() })
      expect(keys(frontier.wants())).to.deep.equal(keys([dag.root.cid]))
      expect(frontier.complete).to.be.false()
      expect(frontier.wantCount).to.equal(1)
      expect(frontier.holdCount).to.equal(0)
      expect([...frontier.held()]).to.deep.equal([])
      expect(frontier.isWanted(dag.root.cid)).to.be.true()
      expect(frontier.holds(dag.root.cid)).to.be.false()
    })

    it('wants every root of several, once', async () => {
      const frontier = await ReceiverFrontier.create([dag.A.cid, dag.B.cid, dag.A.cid], { blockstore: new MemoryBlockstore() })
      expect(keys(frontier.wants())).to.deep.equal(keys([dag.A.cid, dag.B.cid]))
    })

    it('is complete and holds every reachable hashed block when the store holds the whole DAG', async () => {
      const store = new MemoryBlockstore()
      await putAll(store, dag.stored)
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      expect(frontier.complete).to.be.true()
      expect(frontier.wants()).to.deep.equal([])
      expect(frontier.holdCount).to.equal(8)
      expect(sorted(frontier.held())).to.deep.equal(sorted(dag.stored.map(b => b.cid)))
      // identity blocks are never counted as held
      expect(frontier.holds(dag.I.cid)).to.be.false()
      expect(frontier.isWanted(dag.I.cid)).to.be.false()
    })

    it('holds only what is reachable from the roots', async () => {
      const store = new MemoryBlockstore()
      await putAll(store, dag.stored)
      const unrelated = await rawBlock('unrelated')
      await putAll(store, [unrelated])
      const frontier = await ReceiverFrontier.create([dag.B.cid], { blockstore: store })
      expect(frontier.complete).to.be.true()
      expect(sorted(frontier.held())).to.deep.equal(sorted([dag.B.cid, dag.S.cid, dag.D.cid, dag.E.cid]))
      expect(frontier.holds(dag.root.cid)).to.be.false()
      expect(frontier.holds(unrelated.cid)).to.be.false()
    })

    it('wants exactly the roots of the missing subgraphs', async () => {
      const store = new MemoryBlockstore()
      // root and B present; A (with C below it), D and the block below I missing; S present but E below it missing
      await putAll(store, [dag.root, dag.B, dag.S, dag.C])
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      expect(sorted(frontier.wants())).to.deep.equal(sorted([dag.A.cid, dag.D.cid, dag.E.cid, dag.F.cid]))
      // C is in the store but only reachable through the missing A, so it is not known to be held yet
      expect(sorted(frontier.held())).to.deep.equal(sorted([dag.root.cid, dag.B.cid, dag.S.cid]))
      expect(frontier.holds(dag.C.cid)).to.be.false()
      expect(frontier.isWanted(dag.C.cid)).to.be.false()
      expect(frontier.complete).to.be.false()
    })

    it('wants the missing child of a present block deep down', async () => {
      // chain: c0 -> c1 -> c2 -> c3 -> c4, with c4 missing
      const chain: Block[] = [await rawBlock('c4')]
      for (let i = 3; i >= 0; i--) {
        chain.unshift(await cborBlock({ i, next: chain[0].cid }))
      }
      const store = new MemoryBlockstore()
      await putAll(store, chain.slice(0, 4))
      const frontier = await ReceiverFrontier.create([chain[0].cid], { blockstore: store })
      expect(keys(frontier.wants())).to.deep.equal(keys([chain[4].cid]))
      expect(frontier.holdCount).to.equal(4)
    })

    it('lists wants oldest first, in link order', async () => {
      const store = new MemoryBlockstore()
      await putAll(store, [dag.root, dag.B])
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      // root -> A (missing), B -> S, D (missing), I -> F (missing)
      expect(keys(frontier.wants())).to.deep.equal(keys([dag.A.cid, dag.S.cid, dag.D.cid, dag.F.cid]))
    })

    it('wants the children of an identity root', async () => {
      const frontier = await ReceiverFrontier.create([dag.I.cid], { blockstore: new MemoryBlockstore() })
      expect(keys(frontier.wants())).to.deep.equal(keys([dag.F.cid]))
      expect(frontier.holdCount).to.equal(0)
    })

    it('throws UnknownCodecError when a held block cannot be decoded', async () => {
      const bytes = new TextEncoder().encode('odd')
      const odd = { cid: CID.createV1(0x300001, await sha256.digest(bytes)), bytes }
      const top = await pbBlock('top', [odd.cid])
      const store = new MemoryBlockstore()
      await putAll(store, [top, odd])
      const err = await rejection(ReceiverFrontier.create([top.cid], { blockstore: store }))
      expect(err).to.have.property('name', UnknownCodecError.name)
    })

    it('reads held blocks with the given linkReader', async () => {
      const bytes = new TextEncoder().encode(dag.C.cid.toString())
      const odd = { cid: CID.createV1(0x300001, await sha256.digest(bytes)), bytes }
      const store = new MemoryBlockstore()
      await putAll(store, [odd])
      const linkReader = new LinkReader({
        codecs: [{ code: 0x300001, decode: b => [CID.parse(new TextDecoder().decode(b))] }]
      })
      const frontier = await ReceiverFrontier.create([odd.cid], { blockstore: store, linkReader })
      expect(keys(frontier.wants())).to.deep.equal(keys([dag.C.cid]))
    })

    it('stops when the signal is aborted', async () => {
      const store = new MemoryBlockstore()
      await putAll(store, dag.stored)
      const err = await rejection(ReceiverFrontier.create([dag.root.cid], { blockstore: store }, { signal: AbortSignal.abort() }))
      expect(err.name).to.equal('AbortError')
    })
  })

  describe('receive', () => {
    let store: CountingBlockstore

    beforeEach(() => {
      store = new CountingBlockstore()
    })

    it('refuses a block with more links than maxLinksPerBlock before storing it, and takes one at the limit', async () => {
      const leaves = await Promise.all(Array.from({ length: 11 }, async (_, i) => rawBlock(`leaf ${i}`)))
      const over = await cborBlock({ links: leaves.map(leaf => leaf.cid) })
      const frontier = await ReceiverFrontier.create([over.cid], { blockstore: store, maxLinksPerBlock: 10 })
      const err = await rejection(frontier.receive(over.cid, over.bytes))
      expect(err.name).to.equal('LimitExceededError')
      expect(await store.has(over.cid)).to.be.false()

      const atLimit = await cborBlock({ links: leaves.slice(0, 10).map(leaf => leaf.cid) })
      const fits = await ReceiverFrontier.create([atLimit.cid], { blockstore: store, maxLinksPerBlock: 10 })
      expect(await fits.receive(atLimit.cid, atLimit.bytes)).to.equal('stored')
      expect(fits.wantCount).to.equal(10)
    })

    it('stores a wanted block and wants its missing children', async () => {
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      expect(await frontier.receive(dag.root.cid, dag.root.bytes)).to.equal('stored')
      expect(await store.has(dag.root.cid)).to.be.true()
      expect(await getBytes(store, dag.root.cid)).to.equalBytes(dag.root.bytes)
      // the identity child I is inline: its child F is wanted in its place
      expect(keys(frontier.wants())).to.deep.equal(keys([dag.A.cid, dag.B.cid, dag.F.cid]))
      expect(frontier.holds(dag.root.cid)).to.be.true()
      expect(frontier.isWanted(dag.root.cid)).to.be.false()
      expect(frontier.holdCount).to.equal(1)
    })

    it('does not want a child that another wanted block already wants', async () => {
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      await frontier.receive(dag.root.cid, dag.root.bytes)
      await frontier.receive(dag.A.cid, dag.A.bytes)
      await frontier.receive(dag.B.cid, dag.B.bytes)
      expect(keys(frontier.wants())).to.deep.equal(keys([dag.F.cid, dag.C.cid, dag.S.cid, dag.D.cid]))
    })

    it('becomes complete once every block has arrived', async () => {
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      for (const block of [dag.root, dag.A, dag.B, dag.C, dag.S, dag.D, dag.F]) {
        expect(await frontier.receive(block.cid, block.bytes)).to.equal('stored')
        expect(frontier.complete).to.be.false()
      }
      expect(await frontier.receive(dag.E.cid, dag.E.bytes)).to.equal('stored')
      expect(frontier.complete).to.be.true()
      expect(store.puts).to.have.lengthOf(8)
      expect(sorted(frontier.held())).to.deep.equal(sorted(dag.stored.map(b => b.cid)))
    })

    it('answers duplicate for a held block and does not write it again', async () => {
      await putAll(store, [dag.root, dag.A])
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      const puts = store.puts.length
      expect(await frontier.receive(dag.root.cid, dag.root.bytes)).to.equal('duplicate')
      expect(await frontier.receive(dag.A.cid, dag.A.bytes)).to.equal('duplicate')
      expect(store.puts).to.have.lengthOf(puts)
      expect(sorted(frontier.wants())).to.deep.equal(sorted([dag.B.cid, dag.C.cid, dag.S.cid, dag.F.cid]))
    })

    it('answers duplicate for a block it stored earlier in the session', async () => {
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      expect(await frontier.receive(dag.root.cid, dag.root.bytes)).to.equal('stored')
      expect(await frontier.receive(dag.root.cid, dag.root.bytes)).to.equal('duplicate')
      expect(store.puts).to.have.lengthOf(1)
    })

    it('answers unrequested for a block neither held nor wanted, and does not write it', async () => {
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      // A is below the wanted root, but not wanted yet
      expect(await frontier.receive(dag.A.cid, dag.A.bytes)).to.equal('unrequested')
      const stranger = await rawBlock('stranger')
      expect(await frontier.receive(stranger.cid, stranger.bytes)).to.equal('unrequested')
      expect(await store.has(dag.A.cid)).to.be.false()
      expect(await store.has(stranger.cid)).to.be.false()
      expect(store.puts).to.deep.equal([])
      expect(keys(frontier.wants())).to.deep.equal(keys([dag.root.cid]))
    })

    it('answers unrequested for a block in the store that is not reachable from the roots', async () => {
      const stranger = await rawBlock('stranger in the store')
      await putAll(store, [stranger])
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      expect(await frontier.receive(stranger.cid, stranger.bytes)).to.equal('unrequested')
      expect(store.puts).to.have.lengthOf(1)
    })

    it('rejects a wanted block whose bytes do not hash to its CID, stores nothing, and still wants it', async () => {
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      const err = await rejection(frontier.receive(dag.root.cid, flip(dag.root.bytes)))
      expect(err).to.have.property('name', HashMismatchError.name)
      expect(await store.has(dag.root.cid)).to.be.false()
      expect(store.puts).to.deep.equal([])
      expect(frontier.isWanted(dag.root.cid)).to.be.true()
      expect(frontier.holds(dag.root.cid)).to.be.false()
      expect(keys(frontier.wants())).to.deep.equal(keys([dag.root.cid]))
      // the right bytes are still accepted afterwards
      expect(await frontier.receive(dag.root.cid, dag.root.bytes)).to.equal('stored')
    })

    it('rejects a wanted block with another block\'s bytes', async () => {
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      const err = await rejection(frontier.receive(dag.root.cid, dag.B.bytes))
      expect(err).to.have.property('name', HashMismatchError.name)
      expect(store.puts).to.deep.equal([])
    })

    it('rejects a wanted block with an unsupported hash and stores nothing', async () => {
      const bytes = dagCbor.encode({ odd: 'hash' })
      const odd = CID.createV1(dagCbor.code, Digest.create(0x300042, (await sha256.digest(bytes)).digest))
      const frontier = await ReceiverFrontier.create([odd], { blockstore: store })
      const err = await rejection(frontier.receive(odd, bytes))
      expect(err).to.have.property('name', UnsupportedHashError.name)
      expect(store.puts).to.deep.equal([])
      expect(await store.has(odd)).to.be.false()
      expect(frontier.isWanted(odd)).to.be.true()
    })

    it('rejects a wanted block whose codec is unknown, even though it hashes right, and stores nothing', async () => {
      const bytes = dagCbor.encode({ made: 'up codec', link: dag.C.cid })
      const odd = CID.createV1(0x300001, await sha256.digest(bytes))
      const frontier = await ReceiverFrontier.create([odd], { blockstore: store })
      const err = await rejection(frontier.receive(odd, bytes))
      expect(err).to.have.property('name', UnknownCodecError.name)
      expect(await store.has(odd)).to.be.false()
      expect(store.puts).to.deep.equal([])
      expect(frontier.isWanted(odd)).to.be.true()
    })

    it('rejects a wanted dag-cbor block that hashes right but does not decode, and stores nothing', async () => {
      const bytes = new Uint8Array([0xa1, 0x61])
      const cid = CID.createV1(dagCbor.code, await sha256.digest(bytes))
      const frontier = await ReceiverFrontier.create([cid], { blockstore: store })
      const err = await rejection(frontier.receive(cid, bytes))
      expect(err).to.have.property('name', InvalidBlockError.name)
      expect(store.puts).to.deep.equal([])
      expect(frontier.isWanted(cid)).to.be.true()
    })

    it('verifies and reads links with the given verifier and linkReader', async () => {
      const bytes = new TextEncoder().encode(dag.C.cid.toString())
      const odd = CID.createV1(0x300001, Digest.create(0x300042, (await sha256.digest(bytes)).digest))
      const frontier = await ReceiverFrontier.create([odd], {
        blockstore: store,
        linkReader: new LinkReader({ codecs: [{ code: 0x300001, decode: b => [CID.parse(new TextDecoder().decode(b))] }] }),
        verifier: new BlockVerifier({ hashers: [{ name: 'renamed-sha256', code: 0x300042, encode: sha256.encode, digest: async input => Digest.create(0x300042, (await sha256.digest(input)).digest) }] })
      })
      expect(await frontier.receive(odd, bytes)).to.equal('stored')
      expect(keys(frontier.wants())).to.deep.equal(keys([dag.C.cid]))
    })

    it('does not want what the store already holds below a received block', async () => {
      // the store holds B's whole subgraph (B, S, D, E) but not root
      await putAll(store, [dag.B, dag.S, dag.D, dag.E])
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      expect(keys(frontier.wants())).to.deep.equal(keys([dag.root.cid]))
      expect(await frontier.receive(dag.root.cid, dag.root.bytes)).to.equal('stored')
      // A is missing (and C below it), F below I is missing; B, S, D, E are held
      expect(keys(frontier.wants())).to.deep.equal(keys([dag.A.cid, dag.F.cid]))
      expect(sorted(frontier.held())).to.deep.equal(sorted([dag.root.cid, dag.B.cid, dag.S.cid, dag.D.cid, dag.E.cid]))
      expect(await frontier.receive(dag.A.cid, dag.A.bytes)).to.equal('stored')
      // S below A is held already: only C is new
      expect(keys(frontier.wants())).to.deep.equal(keys([dag.F.cid, dag.C.cid]))
      expect(await frontier.receive(dag.S.cid, dag.S.bytes)).to.equal('duplicate')
    })

    it('refuses overlapping receive calls for wanted blocks', async () => {
      const frontier = await ReceiverFrontier.create([dag.A.cid, dag.B.cid], { blockstore: store })
      const first = frontier.receive(dag.A.cid, dag.A.bytes)
      const second = rejection(frontier.receive(dag.B.cid, dag.B.bytes))
      expect(await first).to.equal('stored')
      expect((await second).message).to.include('must not overlap')
      expect(frontier.isWanted(dag.B.cid)).to.be.true()
      // once the first call is done the next one is accepted
      expect(await frontier.receive(dag.B.cid, dag.B.bytes)).to.equal('stored')
    })

    it('passes the abort signal on', async () => {
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      const err = await rejection(frontier.receive(dag.root.cid, dag.root.bytes, { signal: AbortSignal.abort() }))
      expect(err.name).to.equal('AbortError')
      expect(await store.has(dag.root.cid)).to.be.false()
      expect(frontier.isWanted(dag.root.cid)).to.be.true()
    })

    it('is not confused by a received identity CID', async () => {
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: store })
      expect(await frontier.receive(dag.I.cid, dag.I.bytes)).to.equal('unrequested')
      expect(store.puts).to.deep.equal([])
    })
  })

  describe('mirroring', () => {
    it('mirrors a whole DAG into an empty store by sending the wants', async () => {
      const source = new MemoryBlockstore()
      await putAll(source, dag.stored)
      const receiver = new CountingBlockstore()
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: receiver })
      const tally = await mirrorWants(frontier, source)
      expect(frontier.complete).to.be.true()
      expect(tally).to.deep.equal({ stored: 8, duplicate: 0, unrequested: 0 })
      expect(receiver.puts).to.have.lengthOf(8)
      for (const block of dag.stored) {
        expect(await getBytes(receiver, block.cid)).to.equalBytes(block.bytes)
      }
      expect(sorted(frontier.held())).to.deep.equal(sorted(dag.stored.map(b => b.cid)))
    })

    it('mirrors a wide and deep dag-pb DAG', async () => {
      const source = new MemoryBlockstore()
      const all: Block[] = []
      let level: Block[] = []
      for (let i = 0; i < 64; i++) {
        level.push(await rawBlock(`leaf ${i}`))
      }
      all.push(...level)
      while (level.length > 1) {
        const next: Block[] = []
        for (let i = 0; i < level.length; i += 4) {
          next.push(await pbBlock(`node ${all.length + i}`, level.slice(i, i + 4).map(b => b.cid)))
        }
        all.push(...next)
        level = next
      }
      await putAll(source, all)
      const receiver = new MemoryBlockstore()
      const frontier = await ReceiverFrontier.create([level[0].cid], { blockstore: receiver })
      const tally = await mirrorWalk(frontier, source, receiver)
      expect(tally).to.deep.equal({ stored: all.length, duplicate: 0, unrequested: 0 })
      for (const block of all) {
        expect(await receiver.has(block.cid)).to.be.true()
      }
    })

    it('mirrors only what is missing into a partly filled store', async () => {
      const source = new MemoryBlockstore()
      await putAll(source, dag.stored)
      const receiver = new CountingBlockstore()
      await putAll(receiver, [dag.B, dag.S, dag.C])
      const frontier = await ReceiverFrontier.create([dag.root.cid], { blockstore: receiver })
      const tally = await mirrorWants(frontier, source)
      // root, A, D, E, F were missing
      expect(tally).to.deep.equal({ stored: 5, duplicate: 0, unrequested: 0 })
      expect(receiver.puts).to.have.lengthOf(3 + 5)
      for (const block of dag.stored) {
        expect(await receiver.has(block.cid)).to.be.true()
      }
    })

    it('random DAGs: wants()/receive() fetch exactly the missing reachable blocks', async () => {
      await fc.assert(fc.asyncProperty(arbitraryDag(30), fc.infiniteStream(fc.boolean()), fc.boolean(), async ({ specs, roots }, coins, walk) => {
        const blocks = await buildDag(specs)
        const hashed = specs.map((_, i) => i).filter(i => !isIdentity(blocks[i]))
        const source = new MemoryBlockstore()
        await putAll(source, hashed.map(i => blocks[i]))

        // the receiver starts with a random subset of all blocks, reachable or not
        const receiver = new CountingBlockstore()
        const present = new Set(hashed.filter(() => coins.next().value === true))
        await putAll(receiver, [...present].map(i => blocks[i]))
        const initialPuts = receiver.puts.length

        const reach = [...reachable(specs, roots)].filter(i => !isIdentity(blocks[i]))
        const lacking = reach.filter(i => !present.has(i))

        const frontier = await ReceiverFrontier.create(roots.map(r => blocks[r].cid), { blockstore: receiver })
        const tally = walk
          ? await mirrorWalk(frontier, source, receiver)
          : await mirrorWants(frontier, source)

        expect(frontier.complete).to.be.true()
        expect(tally.stored).to.equal(lacking.length)
        expect(tally.unrequested).to.equal(0)
        expect(tally.duplicate).to.equal(0)
        expect(receiver.puts.length - initialPuts).to.equal(lacking.length)
        for (const i of reach) {
          expect(await getBytes(receiver, blocks[i].cid)).to.equalBytes(blocks[i].bytes)
        }
        expect(sorted(frontier.held())).to.deep.equal(sorted(reach.map(i => blocks[i].cid)))
        expect(frontier.holdCount).to.equal(reach.length)
      }), { numRuns: 100 })
    })
  })

  describe('identity blocks', () => {
    it('never wants or stores an identity block, and follows its links', async () => {
      const inner = identityCborBlock({ leaf: dag.D.cid })
      const top = await pbBlock('top', [inner.cid])
      const source = new MemoryBlockstore()
      await putAll(source, [top, dag.D])
      const receiver = new CountingBlockstore()
      const frontier = await ReceiverFrontier.create([top.cid], { blockstore: receiver })
      await mirrorWants(frontier, source)
      expect(keys(receiver.puts)).to.deep.equal(keys([top.cid, dag.D.cid]))
      expect(sorted(frontier.held())).to.deep.equal(sorted([top.cid, dag.D.cid]))
    })
  })

  describe('trustWhole', () => {
    /** Version 1 (a tree three levels deep: dag-cbor and dag-pb interior nodes, raw leaves), held whole, and a version 2 root over it */
    interface Versions {
      old: Block[]
      root: Block
      store: ReadCountingBlockstore
    }

    async function versions (salt: string): Promise<Versions> {
      const old = await buildDag(treeSpecs(3, 2), salt)
      const root = await cborBlock({ version: 2, previous: old[0].cid })
      const store = new ReadCountingBlockstore()
      await putAll(store, old)
      return { old, root, store }
    }

    /** The blocks of `blocks` that a walk must read for their links (raw leaves it only looks up) */
    function interior (blocks: Block[]): Block[] {
      return blocks.filter(block => block.cid.code !== raw.code)
    }

    it('holds a trusted block that a received block links to without reading it or anything below it', async () => {
      const { old, root, store } = await versions('trusted')
      const frontier = await ReceiverFrontier.create([root.cid], { blockstore: store })
      await frontier.trustWhole(old.map(block => block.cid))

      expect(await frontier.receive(root.cid, root.bytes)).to.equal('stored')

      expect(frontier.complete).to.be.true()
      expect(frontier.holds(old[0].cid)).to.be.true()
      for (const block of old) {
        expect(store.readsOf(block.cid), `reads of ${block.cid}`).to.equal(0)
      }
    })

    it('trusts a shared set of keys the same way, without changing it', async () => {
      const { old, root, store } = await versions('trusted set')
      const frontier = await ReceiverFrontier.create([root.cid], { blockstore: store })
      const shared = new Set(old.map(block => cidKey(block.cid)))
      frontier.trustWholeSet(shared)

      expect(await frontier.receive(root.cid, root.bytes)).to.equal('stored')

      expect(frontier.complete).to.be.true()
      expect(frontier.holds(old[1].cid)).to.be.true()
      expect(shared.size).to.equal(old.length)
      for (const block of old) {
        expect(store.readsOf(block.cid), `reads of ${block.cid}`).to.equal(0)
      }
      // a block of the trusted DAG sent anyway is a duplicate, not written again
      expect(await frontier.receive(old[2].cid, old[2].bytes)).to.equal('duplicate')
    })

    it('holds a link into a shared set without a store lookup while the set\'s held check passes', async () => {
      const { old, root, store } = await versions('trusted set, held')
      const frontier = await ReceiverFrontier.create([root.cid], { blockstore: store })
      frontier.trustWholeSet(new Set(old.map(block => cidKey(block.cid))), { held: () => true })

      expect(await frontier.receive(root.cid, root.bytes)).to.equal('stored')

      expect(frontier.complete).to.be.true()
      expect(frontier.holds(old[0].cid)).to.be.true()
      expect(store.lookupsOf(old[0].cid)).to.equal(0)
    })

    it('looks a link into a shared set up once its held check fails, and wants the block deleted meanwhile', async () => {
      const { old, root, store } = await versions('trusted set, deleted')
      const frontier = await ReceiverFrontier.create([root.cid], { blockstore: store })
      let nothingDeleted = true
      frontier.trustWholeSet(new Set(old.map(block => cidKey(block.cid))), { held: () => nothingDeleted })
      await store.delete(old[0].cid)
      nothingDeleted = false

      expect(await frontier.receive(root.cid, root.bytes)).to.equal('stored')

      expect(store.lookupsOf(old[0].cid)).to.equal(1)
      expect(frontier.complete).to.be.false()
      expect(keys(frontier.wants())).to.deep.equal(keys([old[0].cid]))
    })

    it('without trust, the same link makes the frontier read every held interior block below it', async () => {
      const { old, root, store } = await versions('untrusted')
      const frontier = await ReceiverFrontier.create([root.cid], { blockstore: store })

      expect(await frontier.receive(root.cid, root.bytes)).to.equal('stored')

      expect(frontier.complete).to.be.true()
      expect(sorted(frontier.held())).to.deep.equal(sorted([root.cid, ...old.map(block => block.cid)]))
      for (const block of interior(old)) {
        expect(store.readsOf(block.cid), `reads of ${block.cid}`).to.equal(1)
      }
    })

    it('walks a held block that is not trusted and stops at the trusted blocks below it', async () => {
      const { old, root, store } = await versions('partly trusted')
      const frontier = await ReceiverFrontier.create([root.cid], { blockstore: store })
      // only the subtree under node 1 (nodes 1, 3, 4 and their leaves 7 to 10): the old root and node 2's subtree are walked
      const trusted = new Set([1, 3, 4, 7, 8, 9, 10])
      await frontier.trustWhole(old.filter((_, i) => trusted.has(i)).map(block => block.cid))

      expect(await frontier.receive(root.cid, root.bytes)).to.equal('stored')

      expect(frontier.complete).to.be.true()
      old.forEach((block, i) => {
        const walked = !trusted.has(i) && block.cid.code !== raw.code
        expect(store.readsOf(block.cid), `reads of node ${i}`).to.equal(walked ? 1 : 0)
      })
    })

    it('still wants a trusted block that the store no longer holds', async () => {
      const { old, root, store } = await versions('trusted then deleted')
      const frontier = await ReceiverFrontier.create([root.cid], { blockstore: store })
      await frontier.trustWhole(old.map(block => block.cid))
      await store.delete(old[0].cid)

      expect(await frontier.receive(root.cid, root.bytes)).to.equal('stored')

      expect(frontier.complete).to.be.false()
      expect(keys(frontier.wants())).to.deep.equal(keys([old[0].cid]))
    })

    it('answers duplicate for a block below a trusted block, and does not write it', async () => {
      const { old, root } = await versions('trusted duplicates')
      const store = new CountingBlockstore()
      await putAll(store, old)
      const frontier = await ReceiverFrontier.create([root.cid], { blockstore: store })
      await frontier.trustWhole(old.map(block => block.cid))
      expect(await frontier.receive(root.cid, root.bytes)).to.equal('stored')
      const puts = store.puts.length

      // a sender that has not read the receiver's Bloom yet sends the old blocks too: the receiver holds them
      for (const block of old) {
        expect(await frontier.receive(block.cid, block.bytes), `outcome of ${block.cid}`).to.equal('duplicate')
      }
      expect(store.puts).to.have.lengthOf(puts)
      expect(frontier.complete).to.be.true()
    })
  })

  describe('the node-wide held budget', () => {
    it('takes one for each held block found in the store, and release gives them all back', async () => {
      const dag = await buildDag(treeSpecs(3, 2), 'held budget')
      const store = new MemoryBlockstore()
      // the store holds everything but one leaf: 14 held blocks, 1 want
      await putAll(store, dag.slice(0, 14))
      const heldBudget = new Budget('heldCids', 100)

      const frontier = await ReceiverFrontier.create([dag[0].cid], { blockstore: store, heldBudget })

      expect(frontier.wantCount).to.equal(1)
      expect(heldBudget.used).to.equal(14)
      frontier.release()
      expect(heldBudget.used).to.equal(0)
    })

    it('waits for room when the budget is used up, and goes on once another session gives some back', async () => {
      const dag = await buildDag(treeSpecs(2, 2), 'held budget wait')
      const store = new MemoryBlockstore()
      await putAll(store, dag)
      const heldBudget = new Budget('heldCids', 7)
      const other = await ReceiverFrontier.create([dag[0].cid], { blockstore: store, heldBudget })
      expect(heldBudget.used).to.equal(7)

      const waiting = ReceiverFrontier.create([dag[0].cid], { blockstore: store, heldBudget })
      await new Promise(resolve => setTimeout(resolve, 50))
      other.release()
      const frontier = await waiting

      expect(frontier.complete).to.be.true()
      expect(heldBudget.used).to.equal(7)
    })

    it('fails with LimitExceededError when no room comes, and keeps nothing', async function () {
      this.timeout(10_000)
      const dag = await buildDag(treeSpecs(2, 2), 'held budget full')
      const store = new MemoryBlockstore()
      await putAll(store, dag)
      const heldBudget = new Budget('heldCids', 3)
      heldBudget.charge(3)

      const err = await rejection(ReceiverFrontier.create([dag[0].cid], { blockstore: store, heldBudget }))

      expect(err.name).to.equal(LimitExceededError.name)
      expect(heldBudget.used).to.equal(3)
    })
  })
})
