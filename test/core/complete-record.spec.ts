import { expect } from 'aegir/chai'
import { cidKey } from '../../src/core/cid-key.ts'
import { COMPLETE_INDEX_KEY, CompleteRecord, MemoryRecordStorage, completeEntryKey } from '../../src/core/complete-record.ts'
import { bloomOfInSlices } from '../../src/core/messages.ts'
import { buildDag, keys, rawBlock } from '../fixtures/dag.ts'
import { treeSpecs } from '../fixtures/dags.ts'
import type { CID } from 'multiformats/cid'

/** A storage in memory that counts the reads of each key */
class CountingStorage extends MemoryRecordStorage {
  private readonly counts = new Map<string, number>()

  async get (key: string): Promise<Uint8Array | undefined> {
    this.counts.set(key, this.reads(key) + 1)
    return super.get(key)
  }

  reads (key: string): number {
    return this.counts.get(key) ?? 0
  }
}

/** A storage in memory whose writes take a few turns of the event loop; `writing` resolves when the first one begins */
class SlowStorage extends MemoryRecordStorage {
  private began?: () => void
  readonly writing = new Promise<void>(resolve => { this.began = resolve })

  async put (key: string, value: Uint8Array): Promise<void> {
    this.began?.()
    await new Promise(resolve => setTimeout(resolve, 5))
    await super.put(key, value)
  }
}

async function dagOf (label: string): Promise<CID[]> {
  return (await buildDag(treeSpecs(2, 3), label)).map(block => block.cid)
}

describe('core/complete-record', () => {
  it('gives back the CIDs recorded under a root, the root first, and nothing for a root never recorded', async () => {
    const record = new CompleteRecord({ maxRoots: 4, maxCids: 1000 })
    const [root, ...rest] = await dagOf('listed')
    // the caller's list need not start with the root
    expect(await record.record(root, [...rest].reverse().concat(root), { generation: record.generation })).to.be.true()
    const listed = await record.cidsUnder(root)
    expect(listed?.[0].equals(root)).to.be.true()
    expect(keys(listed ?? []).sort()).to.deep.equal(keys([root, ...rest]).sort())
    expect(await record.cidsUnder((await rawBlock('never recorded')).cid)).to.be.undefined()
  })

  it('a lookup made after record() was called, before it resolved, finds the DAG; the list may come from a function', async () => {
    const record = new CompleteRecord({ maxRoots: 4, maxCids: 1000 })
    const [root, ...rest] = await dagOf('queued')
    let listed = 0
    const recording = record.record(root, async () => { listed++; return rest }, { generation: record.generation })
    expect(keys(await record.cidsUnder(root) ?? []).sort()).to.deep.equal(keys([root, ...rest]).sort())
    expect(await recording).to.be.true()
    expect(listed).to.equal(1)
  })

  it('lasts in its storage: a new record over the same storage finds what an earlier one recorded', async () => {
    const storage = new MemoryRecordStorage()
    const [root, ...rest] = await dagOf('lasting')
    const first = new CompleteRecord({ storage, maxRoots: 4, maxCids: 1000 })
    await first.record(root, rest, { generation: first.generation })
    const later = new CompleteRecord({ storage, maxRoots: 4, maxCids: 1000 })
    expect(keys(await later.cidsUnder(root) ?? []).sort()).to.deep.equal(keys([root, ...rest]).sort())
    expect((await later.roots()).map(String)).to.deep.equal([String(root)])
  })

  it('forgets at once for lookups, and in its storage once forget resolves', async () => {
    const storage = new MemoryRecordStorage()
    const record = new CompleteRecord({ storage, maxRoots: 4, maxCids: 1000 })
    const [root, ...rest] = await dagOf('forgotten')
    await record.record(root, rest, { generation: record.generation })
    const forgetting = record.forget()
    // before the storage is cleared, a lookup already finds nothing
    expect(await record.cidsUnder(root)).to.be.undefined()
    await forgetting
    expect(await storage.get(completeEntryKey(root))).to.be.undefined()
    const later = new CompleteRecord({ storage, maxRoots: 4, maxCids: 1000 })
    expect(await later.cidsUnder(root)).to.be.undefined()
  })

  it('a forget clears entries stored by an earlier process that this one never read', async () => {
    const storage = new MemoryRecordStorage()
    const [root, ...rest] = await dagOf('earlier process')
    const earlier = new CompleteRecord({ storage, maxRoots: 4, maxCids: 1000 })
    await earlier.record(root, rest, { generation: earlier.generation })
    await new CompleteRecord({ storage, maxRoots: 4, maxCids: 1000 }).forget()
    expect(await storage.get(completeEntryKey(root))).to.be.undefined()
    expect(await new CompleteRecord({ storage, maxRoots: 4, maxCids: 1000 }).cidsUnder(root)).to.be.undefined()
  })

  it('drops a recording that began before a forget (a block may have been deleted meanwhile)', async () => {
    const record = new CompleteRecord({ maxRoots: 4, maxCids: 1000 })
    const [root, ...rest] = await dagOf('stale')
    const generation = record.generation
    await record.forget()
    expect(await record.record(root, rest, { generation })).to.be.false()
    expect(await record.cidsUnder(root)).to.be.undefined()
    // one that begins after it is kept
    expect(await record.record(root, rest, { generation: record.generation })).to.be.true()
    expect(await record.cidsUnder(root)).to.not.be.undefined()
  })

  it('a forget while a recording is being stored wins: the entry is not found afterwards', async () => {
    const record = new CompleteRecord({ maxRoots: 4, maxCids: 1000 })
    const [root, ...rest] = await dagOf('racing')
    const recording = record.record(root, rest, { generation: record.generation })
    const forgetting = record.forget()
    await Promise.all([recording, forgetting])
    expect(await record.cidsUnder(root)).to.be.undefined()
  })

  it('a forget while a recording writes to its storage wins, there and in memory', async () => {
    // writes take a few turns of the event loop: the forget comes while the entry is being written
    const storage = new SlowStorage()
    const record = new CompleteRecord({ storage, maxRoots: 4, maxCids: 1000 })
    const [root, ...rest] = await dagOf('forgotten mid-write')
    const recording = record.record(root, rest, { generation: record.generation })
    await storage.writing
    const forgetting = record.forget()
    expect(await recording).to.be.false()
    await forgetting
    expect(await record.cidsUnder(root)).to.be.undefined()
    expect(await storage.get(completeEntryKey(root))).to.be.undefined()
    expect(await new CompleteRecord({ storage, maxRoots: 4, maxCids: 1000 }).cidsUnder(root)).to.be.undefined()
  })

  it('keeps at most maxRoots roots: the one recorded longest ago goes, with its entry', async () => {
    const storage = new MemoryRecordStorage()
    const record = new CompleteRecord({ storage, maxRoots: 2, maxCids: 1000 })
    const dags = await Promise.all(['a', 'b', 'c'].map(dagOf))
    for (const [root, ...rest] of dags) {
      await record.record(root, rest, { generation: record.generation })
    }
    expect(await record.cidsUnder(dags[0][0])).to.be.undefined()
    expect(await storage.get(completeEntryKey(dags[0][0]))).to.be.undefined()
    expect(await record.cidsUnder(dags[1][0])).to.not.be.undefined()
    expect(await record.cidsUnder(dags[2][0])).to.not.be.undefined()
    // two entries and the index
    expect(storage.size).to.equal(3)
    // recording a kept root again makes it the newest
    await record.record(dags[1][0], dags[1].slice(1), { generation: record.generation })
    await record.record(dags[0][0], dags[0].slice(1), { generation: record.generation })
    expect(await record.cidsUnder(dags[2][0])).to.be.undefined()
    expect(await record.cidsUnder(dags[1][0])).to.not.be.undefined()
  })

  it('lookups share one list per root, and the lists kept in memory hold at most maxCids CIDs in all', async () => {
    const storage = new CountingStorage()
    const dags = await Promise.all(['x', 'y'].map(dagOf))
    const writer = new CompleteRecord({ storage, maxRoots: 4, maxCids: 1000 })
    for (const [root, ...rest] of dags) {
      await writer.record(root, rest, { generation: writer.generation })
    }
    // room for one DAG's list at a time
    const record = new CompleteRecord({ storage, maxRoots: 4, maxCids: dags[0].length })
    const [first, again] = await Promise.all([record.cidsUnder(dags[0][0]), record.cidsUnder(dags[0][0])])
    expect(first).to.equal(again)
    expect(storage.reads(completeEntryKey(dags[0][0]))).to.equal(1)
    expect(await record.cidsUnder(dags[0][0])).to.equal(first)
    expect(storage.reads(completeEntryKey(dags[0][0]))).to.equal(1)
    // the second DAG's list pushes the first one out: it is read again
    await record.cidsUnder(dags[1][0])
    const reread = await record.cidsUnder(dags[0][0])
    expect(storage.reads(completeEntryKey(dags[0][0]))).to.equal(2)
    expect(keys(reread ?? [])).to.deep.equal(keys(first ?? []))
  })

  it('gives every caller one shared set of the keys of a recorded DAG, and nothing for a root not recorded', async () => {
    const record = new CompleteRecord({ maxRoots: 4, maxCids: 1000 })
    const [root, ...rest] = await dagOf('keys')
    await record.record(root, rest, { generation: record.generation })
    const [a, b] = await Promise.all([record.keysUnder(root), record.keysUnder(root)])
    expect(a).to.equal(b)
    expect([...a ?? []].sort()).to.deep.equal([root, ...rest].map(cidKey).sort())
    expect(await record.keysUnder((await rawBlock('not recorded')).cid)).to.be.undefined()
    await record.forget()
    expect(await record.keysUnder(root)).to.be.undefined()
  })

  it('gives every caller one shared Bloom of a recorded DAG, the same bits as one built from its list; built at once with eagerBloomBytes', async () => {
    for (const eagerBloomBytes of [undefined, 4096]) {
      const record = new CompleteRecord({ maxRoots: 4, maxCids: 1000, eagerBloomBytes })
      const [root, ...rest] = await dagOf(`bloom ${eagerBloomBytes}`)
      await record.record(root, rest, { generation: record.generation })
      const [a, b] = await Promise.all([record.bloomUnder(root, 4096), record.bloomUnder(root, 4096)])
      expect(a).to.equal(b)
      const built = await bloomOfInSlices([root, ...rest], 4096)
      expect(a?.bytes).to.deep.equal(built.bytes)
      expect(a?.hashCount).to.equal(built.hashCount)
      expect(await record.bloomUnder((await rawBlock('no bloom')).cid, 4096)).to.be.undefined()
    }
  })

  it('does not record a DAG of more than maxCids blocks', async () => {
    const record = new CompleteRecord({ maxRoots: 4, maxCids: 5 })
    const [root, ...rest] = await dagOf('too large')
    expect(rest.length).to.be.greaterThan(5)
    expect(await record.record(root, rest, { generation: record.generation })).to.be.false()
    expect(await record.cidsUnder(root)).to.be.undefined()
  })

  it('an entry whose bytes are not CIDs is not used (the caller walks instead)', async () => {
    const storage = new MemoryRecordStorage()
    const [root, ...rest] = await dagOf('damaged')
    await new CompleteRecord({ storage, maxRoots: 4, maxCids: 1000 }).record(root, rest, { generation: 0 })
    await storage.put(completeEntryKey(root), new Uint8Array([0x01, 0x71, 0x12, 0x20, 0xff]))
    expect(await new CompleteRecord({ storage, maxRoots: 4, maxCids: 1000 }).cidsUnder(root)).to.be.undefined()
    // nor one that lists another root first
    const [other] = await dagOf('other')
    const packed = await storage.get(completeEntryKey(root))
    expect(packed).to.not.be.undefined()
    await new CompleteRecord({ storage, maxRoots: 4, maxCids: 1000 }).record(other, rest, { generation: 0 })
    await storage.put(completeEntryKey(root), await storage.get(completeEntryKey(other)) as Uint8Array)
    expect(await new CompleteRecord({ storage, maxRoots: 4, maxCids: 1000 }).cidsUnder(root)).to.be.undefined()
  })

  it('with maxRoots 0 records nothing and stores nothing', async () => {
    const storage = new MemoryRecordStorage()
    const record = new CompleteRecord({ storage, maxRoots: 0, maxCids: 1000 })
    const [root, ...rest] = await dagOf('off')
    expect(await record.record(root, rest, { generation: record.generation })).to.be.false()
    expect(await record.cidsUnder(root)).to.be.undefined()
    expect(await storage.get(COMPLETE_INDEX_KEY)).to.be.undefined()
  })
})
