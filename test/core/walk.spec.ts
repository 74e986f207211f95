import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { LinkReader } from '../../src/core/links.ts'
import { walkDag } from '../../src/core/walk.ts'
import { BlockNotFoundError, BlockstoreError, UnknownCodecError } from '../../src/errors.ts'
import { arbitraryDag, buildDag, cborBlock, identityCborBlock, isIdentity, keys, pbBlock, putAll, rawBlock, sampleDag, utf8 } from '../fixtures/dag.ts'
import { rejection } from '../fixtures/rejection.ts'
import type { BlockSource } from '../../src/core/blocks.ts'
import type { WalkOptions, WalkedBlock } from '../../src/core/walk.ts'
import type { Block, SampleDag } from '../fixtures/dag.ts'

async function collect (store: BlockSource, roots: CID[], options?: WalkOptions): Promise<WalkedBlock[]> {
  const out: WalkedBlock[] = []
  for await (const block of walkDag(store, roots, options)) {
    out.push(block)
  }
  return out
}

function names (dag: SampleDag, blocks: Array<{ cid: CID }>): string[] {
  const byKey = new Map<string, string>()
  for (const name of ['root', 'A', 'B', 'C', 'D', 'E', 'F', 'S', 'I'] as const) {
    byKey.set(dag[name].cid.toString(), name)
  }
  return blocks.map(({ cid }) => byKey.get(cid.toString()) ?? cid.toString())
}

/** A real store that counts reads and tracks how many are in flight at once */
class TrackingStore implements BlockSource {
  readonly store: MemoryBlockstore
  readonly reads: string[] = []
  inFlight = 0
  maxInFlight = 0

  constructor (store: MemoryBlockstore) {
    this.store = store
  }

  async * get (cid: CID): AsyncGenerator<Uint8Array> {
    this.reads.push(cid.toString())
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    try {
      await new Promise(resolve => setTimeout(resolve, 1))
      yield * this.store.get(cid)
    } finally {
      this.inFlight--
    }
  }

  has (cid: CID): boolean | Promise<boolean> {
    return this.store.has(cid)
  }
}

describe('core/walk', () => {
  let dag: SampleDag
  let store: MemoryBlockstore

  beforeEach(async () => {
    dag = await sampleDag()
    store = new MemoryBlockstore()
    await putAll(store, dag.stored)
  })

  describe('order', () => {
    it('walks breadth-first by default', async () => {
      const walked = await collect(store, [dag.root.cid])
      expect(names(dag, walked)).to.deep.equal(['root', 'A', 'B', 'C', 'S', 'D', 'F', 'E'])
      expect(walked.map(b => b.depth)).to.deep.equal([0, 1, 1, 2, 2, 2, 2, 3])
    })

    it('walks breadth-first when asked', async () => {
      const walked = await collect(store, [dag.root.cid], { order: 'breadth-first' })
      expect(names(dag, walked)).to.deep.equal(['root', 'A', 'B', 'C', 'S', 'D', 'F', 'E'])
    })

    it('walks in preorder', async () => {
      const walked = await collect(store, [dag.root.cid], { order: 'preorder' })
      expect(names(dag, walked)).to.deep.equal(['root', 'A', 'C', 'S', 'E', 'B', 'D', 'F'])
      expect(walked.map(b => b.depth)).to.deep.equal([0, 1, 2, 2, 3, 1, 2, 2])
    })

    it('walks a tree in depth-first preorder', async () => {
      // l1 -> [l2a -> [x, y], l2b -> [z]]
      const x = await rawBlock('x')
      const y = await rawBlock('y')
      const z = await rawBlock('z')
      const l2a = await pbBlock('l2a', [x.cid, y.cid])
      const l2b = await cborBlock([z.cid])
      const l1 = await pbBlock('l1', [l2a.cid, l2b.cid])
      const tree = new MemoryBlockstore()
      await putAll(tree, [x, y, z, l2a, l2b, l1])
      const walked = await collect(tree, [l1.cid], { order: 'preorder' })
      expect(keys(walked.map(b => b.cid))).to.deep.equal(keys([l1, l2a, x, y, l2b, z].map(b => b.cid)))
      const bfs = await collect(tree, [l1.cid])
      expect(keys(bfs.map(b => b.cid))).to.deep.equal(keys([l1, l2a, l2b, x, y, z].map(b => b.cid)))
    })

    it('returns each block\'s bytes and its links, identity CIDs included', async () => {
      const walked = await collect(store, [dag.root.cid])
      const byName = new Map(names(dag, walked).map((name, i) => [name, walked[i]]))
      for (const name of ['root', 'A', 'B', 'C', 'D', 'E', 'F', 'S'] as const) {
        expect(byName.get(name)?.bytes).to.equalBytes(dag[name].bytes)
      }
      expect(keys(byName.get('root')?.links ?? [])).to.deep.equal(keys([dag.A.cid, dag.B.cid, dag.I.cid]))
      expect(keys(byName.get('A')?.links ?? [])).to.deep.equal(keys([dag.C.cid, dag.S.cid]))
      expect(keys(byName.get('B')?.links ?? [])).to.deep.equal(keys([dag.S.cid, dag.D.cid]))
      expect(byName.get('C')?.links).to.deep.equal([])
    })

    it('gives the same order with readAhead 1, 32 and 0 (taken as 1)', async () => {
      for (const order of ['breadth-first', 'preorder'] as const) {
        const one = await collect(store, [dag.root.cid], { order, readAhead: 1 })
        const many = await collect(store, [dag.root.cid], { order, readAhead: 32 })
        const zero = await collect(store, [dag.root.cid], { order, readAhead: 0 })
        expect(keys(many.map(b => b.cid))).to.deep.equal(keys(one.map(b => b.cid)))
        expect(keys(zero.map(b => b.cid))).to.deep.equal(keys(one.map(b => b.cid)))
        expect(many.map(b => b.depth)).to.deep.equal(one.map(b => b.depth))
      }
    })
  })

  describe('each block once', () => {
    it('visits a shared child once', async () => {
      const walked = await collect(store, [dag.root.cid])
      expect(names(dag, walked).filter(name => name === 'S')).to.have.lengthOf(1)
      expect(new Set(keys(walked.map(b => b.cid))).size).to.equal(walked.length)
    })

    it('visits a child linked twice from the same parent once', async () => {
      const leaf = await rawBlock('twice')
      const parent = await pbBlock('parent', [leaf.cid, leaf.cid])
      await putAll(store, [leaf, parent])
      const walked = await collect(store, [parent.cid])
      expect(keys(walked.map(b => b.cid))).to.deep.equal(keys([parent.cid, leaf.cid]))
    })

    it('visits a wide diamond\'s bottom once', async () => {
      const bottom = await rawBlock('bottom')
      const middles: Block[] = []
      for (let i = 0; i < 20; i++) {
        middles.push(await cborBlock({ i, bottom: bottom.cid }))
      }
      const top = await pbBlock('top', middles.map(b => b.cid))
      await putAll(store, [bottom, ...middles, top])
      for (const order of ['breadth-first', 'preorder'] as const) {
        const walked = await collect(store, [top.cid], { order })
        expect(walked).to.have.lengthOf(22)
        expect(keys(walked.map(b => b.cid)).filter(key => key === bottom.cid.toString())).to.have.lengthOf(1)
      }
    })
  })

  describe('identity CIDs', () => {
    it('does not yield identity blocks but follows their links', async () => {
      const walked = await collect(store, [dag.root.cid])
      expect(keys(walked.map(b => b.cid))).to.not.include(dag.I.cid.toString())
      expect(names(dag, walked)).to.include('F')
      expect(walked.find(b => b.cid.equals(dag.F.cid))?.depth).to.equal(2)
    })

    it('does not read identity blocks from the store', async () => {
      const tracking = new TrackingStore(store)
      await collect(tracking, [dag.root.cid])
      expect(tracking.reads).to.not.include(dag.I.cid.toString())
      expect(tracking.reads).to.have.lengthOf(8)
    })

    it('walks from an identity root', async () => {
      const walked = await collect(store, [dag.I.cid])
      expect(names(dag, walked)).to.deep.equal(['F'])
      expect(walked[0].depth).to.equal(1)
    })

    it('follows a chain of identity blocks', async () => {
      const inner = identityCborBlock({ to: dag.D.cid })
      const outer = identityCborBlock({ to: inner.cid })
      const walked = await collect(store, [outer.cid])
      expect(names(dag, walked)).to.deep.equal(['D'])
      expect(walked[0].depth).to.equal(2)
    })
  })

  describe('skip', () => {
    it('prunes a skipped block and what is only reachable below it', async () => {
      const skipped = dag.A.cid.toString()
      const walked = await collect(store, [dag.root.cid], { skip: cid => cid.toString() === skipped })
      // C is only below A; S (and E below it) is also below B
      expect(names(dag, walked)).to.deep.equal(['root', 'B', 'S', 'D', 'F', 'E'])
    })

    it('prunes a shared block\'s subtree entirely', async () => {
      const skipped = dag.S.cid.toString()
      for (const order of ['breadth-first', 'preorder'] as const) {
        const walked = await collect(store, [dag.root.cid], { order, skip: cid => cid.toString() === skipped })
        expect(names(dag, walked)).to.have.members(['root', 'A', 'B', 'C', 'D', 'F'])
      }
    })

    it('prunes below a skipped identity block', async () => {
      const skipped = dag.I.cid.toString()
      const walked = await collect(store, [dag.root.cid], { skip: cid => cid.toString() === skipped })
      expect(names(dag, walked)).to.deep.equal(['root', 'A', 'B', 'C', 'S', 'D', 'E'])
    })

    it('skips a root', async () => {
      const walked = await collect(store, [dag.root.cid], { skip: cid => cid.equals(dag.root.cid) })
      expect(walked).to.deep.equal([])
    })

    it('does not read skipped blocks, even ahead of the walk', async () => {
      const tracking = new TrackingStore(store)
      const skipped = new Set([dag.A.cid.toString(), dag.D.cid.toString()])
      await collect(tracking, [dag.root.cid], { readAhead: 32, skip: cid => skipped.has(cid.toString()) })
      expect(tracking.reads).to.not.include(dag.A.cid.toString())
      expect(tracking.reads).to.not.include(dag.D.cid.toString())
      expect(tracking.reads).to.not.include(dag.C.cid.toString())
    })

    it('is given the depth of each block', async () => {
      const asked = new Map<string, number[]>()
      await collect(store, [dag.root.cid], {
        readAhead: 1,
        skip: (cid, depth) => {
          const key = cid.toString()
          asked.set(key, [...(asked.get(key) ?? []), depth])
          return false
        }
      })
      for (const [name, depth] of [['root', 0], ['A', 1], ['B', 1], ['I', 1], ['C', 2], ['S', 2], ['D', 2], ['F', 2], ['E', 3]] as const) {
        const depths = asked.get(dag[name].cid.toString())
        expect(depths, name).to.not.be.undefined()
        expect(new Set(depths), name).to.deep.equal(new Set([depth]))
      }
    })

    it('is asked again at visit time, so a block can be skipped after it was read ahead', async () => {
      const tracking = new TrackingStore(store)
      const skipped = new Set<string>()
      const walked: WalkedBlock[] = []
      for await (const block of walkDag(tracking, [dag.root.cid], { readAhead: 32, skip: cid => skipped.has(cid.toString()) })) {
        walked.push(block)
        if (block.cid.equals(dag.A.cid)) {
          skipped.add(dag.B.cid.toString())
        }
      }
      // B was read ahead while A was read, but is not yielded, and D (only below B) is not reached
      expect(tracking.reads).to.include(dag.B.cid.toString())
      expect(tracking.reads).to.not.include(dag.D.cid.toString())
      expect(names(dag, walked)).to.deep.equal(['root', 'A', 'C', 'S', 'F', 'E'])
    })
  })

  describe('depth', () => {
    it('is the length of the first path found', async () => {
      // top -> [mid, deep]; mid -> [deep]: breadth-first finds deep at depth 1
      const deep = await rawBlock('deep')
      const mid = await pbBlock('mid', [deep.cid])
      const top = await pbBlock('top', [mid.cid, deep.cid])
      await putAll(store, [deep, mid, top])
      const bfs = await collect(store, [top.cid])
      expect(bfs.map(b => b.depth)).to.deep.equal([0, 1, 1])
    })
  })

  describe('multiple roots', () => {
    it('walks several roots breadth-first, each block once', async () => {
      const walked = await collect(store, [dag.B.cid, dag.A.cid])
      expect(names(dag, walked)).to.deep.equal(['B', 'A', 'S', 'D', 'C', 'E'])
      expect(walked.map(b => b.depth)).to.deep.equal([0, 0, 1, 1, 1, 2])
    })

    it('walks several roots in preorder, one after the other', async () => {
      const walked = await collect(store, [dag.B.cid, dag.A.cid], { order: 'preorder' })
      expect(names(dag, walked)).to.deep.equal(['B', 'S', 'E', 'D', 'A', 'C'])
    })

    it('walks a repeated root once', async () => {
      const walked = await collect(store, [dag.S.cid, dag.S.cid])
      expect(names(dag, walked)).to.deep.equal(['S', 'E'])
    })

    it('walks a root that is also below another root once, at depth 0', async () => {
      const walked = await collect(store, [dag.A.cid, dag.S.cid])
      expect(names(dag, walked)).to.deep.equal(['A', 'S', 'C', 'E'])
      expect(walked.map(b => b.depth)).to.deep.equal([0, 0, 1, 1])
    })

    it('yields nothing for no roots', async () => {
      expect(await collect(store, [])).to.deep.equal([])
    })
  })

  describe('missing blocks', () => {
    it('throws BlockNotFoundError when it reaches a missing block', async () => {
      await store.delete(dag.D.cid)
      const walked: WalkedBlock[] = []
      const err = await rejection((async () => {
        for await (const block of walkDag(store, [dag.root.cid], { readAhead: 32 })) {
          walked.push(block)
        }
      })())
      expect(err).to.have.property('name', BlockNotFoundError.name)
      expect(err.message).to.include(dag.D.cid.toString())
      // everything before D in breadth-first order was yielded first
      expect(names(dag, walked)).to.deep.equal(['root', 'A', 'B', 'C', 'S'])
    })

    it('throws BlockNotFoundError for a missing root', async () => {
      const err = await rejection(collect(new MemoryBlockstore(), [dag.root.cid]))
      expect(err).to.have.property('name', BlockNotFoundError.name)
    })

    it('reports missing blocks to onMissing and goes on', async () => {
      await store.delete(dag.D.cid)
      await store.delete(dag.S.cid)
      const missing: Array<[string, number]> = []
      const walked = await collect(store, [dag.root.cid], {
        onMissing: (cid, depth) => missing.push([cid.toString(), depth])
      })
      // E is only below S, so it is neither walked nor reported
      expect(names(dag, walked)).to.deep.equal(['root', 'A', 'B', 'C', 'F'])
      expect(missing).to.deep.equal([[dag.S.cid.toString(), 2], [dag.D.cid.toString(), 2]])
    })

    it('reports a missing block once even when it is linked twice', async () => {
      await store.delete(dag.S.cid)
      const missing: string[] = []
      await collect(store, [dag.root.cid], { order: 'preorder', onMissing: cid => missing.push(cid.toString()) })
      expect(missing).to.deep.equal([dag.S.cid.toString()])
    })

    it('reports missing roots', async () => {
      const missing: string[] = []
      const walked = await collect(new MemoryBlockstore(), [dag.root.cid, dag.A.cid], { onMissing: cid => missing.push(cid.toString()) })
      expect(walked).to.deep.equal([])
      expect(missing).to.deep.equal(keys([dag.root.cid, dag.A.cid]))
    })

    it('does not report skipped missing blocks', async () => {
      await store.delete(dag.S.cid)
      const missing: string[] = []
      await collect(store, [dag.root.cid], { skip: cid => cid.equals(dag.S.cid), onMissing: cid => missing.push(cid.toString()) })
      expect(missing).to.deep.equal([])
    })

    it('passes other store errors on even with onMissing', async () => {
      const failing: BlockSource = {
        get: (cid, options) => {
          if (cid.equals(dag.B.cid)) {
            throw new Error('disk on fire')
          }
          return store.get(cid, options)
        },
        has: (cid, options) => store.has(cid, options)
      }
      const err = await rejection(collect(failing, [dag.root.cid], { onMissing: () => {} }))
      expect(err.name).to.equal(BlockstoreError.name)
      expect((err.cause as Error).message).to.equal('disk on fire')
    })
  })

  describe('codecs', () => {
    const LINES_CODE = 0x300001

    async function linesBlock (cids: CID[]): Promise<Block> {
      const bytes = utf8(cids.map(cid => cid.toString()).join('\n'))
      return { cid: CID.createV1(LINES_CODE, await sha256.digest(bytes)), bytes }
    }

    it('throws UnknownCodecError at a block it cannot decode', async () => {
      const odd = await linesBlock([dag.C.cid])
      const top = await pbBlock('top', [odd.cid])
      await putAll(store, [odd, top])
      const err = await rejection(collect(store, [top.cid]))
      expect(err).to.have.property('name', UnknownCodecError.name)
    })

    it('follows links with the given linkReader', async () => {
      const odd = await linesBlock([dag.C.cid, dag.D.cid])
      const top = await pbBlock('top', [odd.cid])
      await putAll(store, [odd, top])
      const linkReader = new LinkReader({
        codecs: [{
          code: LINES_CODE,
          decode: bytes => new TextDecoder().decode(bytes).split('\n').map(line => CID.parse(line))
        }]
      })
      const walked = await collect(store, [top.cid], { linkReader })
      expect(keys(walked.map(b => b.cid))).to.deep.equal(keys([top.cid, odd.cid, dag.C.cid, dag.D.cid]))
    })
  })

  describe('abort', () => {
    it('stops with the signal\'s reason', async () => {
      const controller = new AbortController()
      const walked: WalkedBlock[] = []
      const err = await rejection((async () => {
        for await (const block of walkDag(store, [dag.root.cid], { signal: controller.signal })) {
          walked.push(block)
          if (walked.length === 2) {
            controller.abort()
          }
        }
      })())
      expect(err).to.equal(controller.signal.reason)
      expect(err.name).to.equal('AbortError')
      expect(walked).to.have.lengthOf(2)
    })

    it('stops with a custom reason', async () => {
      const controller = new AbortController()
      const reason = new Error('enough')
      const walked: WalkedBlock[] = []
      const err = await rejection((async () => {
        for await (const block of walkDag(store, [dag.root.cid], { signal: controller.signal, order: 'preorder' })) {
          walked.push(block)
          controller.abort(reason)
        }
      })())
      expect(err).to.equal(reason)
      expect(walked).to.have.lengthOf(1)
    })

    it('yields nothing with an aborted signal', async () => {
      const walked: WalkedBlock[] = []
      const err = await rejection((async () => {
        for await (const block of walkDag(store, [dag.root.cid], { signal: AbortSignal.abort() })) {
          walked.push(block)
        }
      })())
      expect(err.name).to.equal('AbortError')
      expect(walked).to.deep.equal([])
    })

    it('passes the signal to the store', async () => {
      const seen: Array<AbortSignal | undefined> = []
      const recording: BlockSource = {
        get: (cid, options) => {
          seen.push(options?.signal)
          return store.get(cid, options)
        },
        has: (cid, options) => store.has(cid, options)
      }
      const controller = new AbortController()
      await collect(recording, [dag.root.cid], { signal: controller.signal })
      expect(seen).to.have.lengthOf(8)
      expect(seen.every(signal => signal === controller.signal)).to.be.true()
    })
  })

  describe('read ahead', () => {
    it('reads several blocks at once, at most readAhead ahead of the one being visited', async () => {
      const leaves: Block[] = []
      for (let i = 0; i < 30; i++) {
        leaves.push(await rawBlock(`leaf ${i}`))
      }
      const top = await pbBlock('wide', leaves.map(b => b.cid))
      const wide = new MemoryBlockstore()
      await putAll(wide, [top, ...leaves])

      const serial = new TrackingStore(wide)
      const serialWalk = await collect(serial, [top.cid], { readAhead: 1 })
      expect(serial.maxInFlight).to.be.at.most(2)

      const parallel = new TrackingStore(wide)
      const parallelWalk = await collect(parallel, [top.cid], { readAhead: 8 })
      expect(parallel.maxInFlight).to.be.greaterThan(2)
      expect(parallel.maxInFlight).to.be.at.most(9)

      expect(keys(parallelWalk.map(b => b.cid))).to.deep.equal(keys(serialWalk.map(b => b.cid)))
      expect(keys(parallelWalk.map(b => b.cid))).to.deep.equal(keys([top, ...leaves].map(b => b.cid)))
      // every block is read once
      expect(parallel.reads).to.have.lengthOf(31)
      expect(new Set(parallel.reads).size).to.equal(31)
    })
  })

  describe('random DAGs', () => {
    it('yields every reachable hashed block once, parents first, breadth-first depths shortest', async () => {
      await fc.assert(fc.asyncProperty(arbitraryDag(25), fc.constantFrom(1, 3, 32), async ({ specs, roots }, readAhead) => {
        const blocks = await buildDag(specs)
        const source = new MemoryBlockstore()
        await putAll(source, blocks.filter(b => !isIdentity(b)))
        const index = new Map(blocks.map((b, i) => [b.cid.toString(), i]))

        // shortest distances from the roots
        const distance = new Map<number, number>(roots.map(r => [r, 0]))
        const queue = [...roots]
        for (let q = 0; q < queue.length; q++) {
          for (const child of specs[queue[q]].children) {
            if (!distance.has(child)) {
              distance.set(child, (distance.get(queue[q]) ?? 0) + 1)
              queue.push(child)
            }
          }
        }
        const expected = [...distance.keys()].filter(i => !isIdentity(blocks[i]))

        for (const order of ['breadth-first', 'preorder'] as const) {
          const walked = await collect(source, roots.map(r => blocks[r].cid), { order, readAhead })
          const visited = walked.map(b => index.get(b.cid.toString()) as number)
          expect(new Set(visited).size).to.equal(visited.length)
          expect(visited).to.have.members(expected)

          // every block but a root comes after a parent (identity parents are inline and never yielded)
          const before = new Set<number>()
          for (const i of visited) {
            if (!roots.includes(i)) {
              const parents = specs.map((s, p) => s.children.includes(i) ? p : -1).filter(p => p >= 0)
              const hasParentBefore = (p: number): boolean => before.has(p) || (isIdentity(blocks[p]) && (roots.includes(p) || specs.some((s, pp) => s.children.includes(p) && hasParentBefore(pp))))
              expect(parents.some(hasParentBefore), `node ${i} came before its parents`).to.be.true()
            }
            before.add(i)
          }

          if (order === 'breadth-first') {
            expect(walked.map(b => b.depth)).to.deep.equal(visited.map(i => distance.get(i)))
            // breadth-first yields blocks by non-decreasing depth
            for (let i = 1; i < walked.length; i++) {
              expect(walked[i].depth).to.be.at.least(walked[i - 1].depth)
            }
          }
        }
      }), { numRuns: 60 })
    })
  })
})
