import { expect } from 'aegir/chai'
import { RecentRoots } from '../../src/core/recent-roots.ts'
import { rawBlock } from '../fixtures/dag.ts'
import type { CID } from 'multiformats/cid'

async function cids (count: number, label: string): Promise<CID[]> {
  return Promise.all(Array.from({ length: count }, async (_, i) => (await rawBlock(`${label} ${i}`)).cid))
}

describe('core/recent-roots', () => {
  it('keeps each peer\'s latest roots, newest first, without repeats, at most maxRootsPerPeer', async () => {
    const [a, b, c, d] = await cids(4, 'root')
    const recent = new RecentRoots({ maxRootsPerPeer: 3 })
    recent.remember('peer', [a])
    recent.remember('peer', [b])
    recent.remember('peer', [a])
    expect(recent.of('peer').map(String)).to.deep.equal([a, b].map(String))
    recent.remember('peer', [c, d])
    expect(recent.of('peer').map(String)).to.deep.equal([c, d, a].map(String))
    expect(recent.of('someone else')).to.deep.equal([])
  })

  it('forgets the peer heard from longest ago past maxPeers', async () => {
    const [a, b, c] = await cids(3, 'peer root')
    const recent = new RecentRoots({ maxPeers: 2 })
    recent.remember('first', [a])
    recent.remember('second', [b])
    // hearing from the first again makes the second the oldest
    recent.remember('first', [a])
    recent.remember('third', [c])
    expect(recent.of('second')).to.deep.equal([])
    expect(recent.of('first').map(String)).to.deep.equal([a.toString()])
    expect(recent.of('third').map(String)).to.deep.equal([c.toString()])
  })
})
