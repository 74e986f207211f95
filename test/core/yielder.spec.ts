import { expect } from 'aegir/chai'
import { Yielder } from '../../src/core/budget.ts'
import { work, worstTimerLag } from '../fixtures/timing.ts'

describe('core/budget Yielder', () => {
  it('loops that never stop still let timers run between slices, and take turns', async () => {
    const stop = { now: false }
    const rounds = [0, 0, 0, 0, 0, 0]
    // six greedy loops, 1 ms of work between checks
    const loops = rounds.map(async (_, i) => {
      const yielder = new Yielder(10)
      while (!stop.now) {
        work(1)
        rounds[i]++
        await yielder.maybeYield()
      }
    })
    const worstLag = await worstTimerLag(600)
    stop.now = true
    await Promise.all(loops)
    // one 10 ms slice per turn of the event loop, not six: the timer runs every few slices at most
    expect(worstLag).to.be.below(60)
    // every loop got its share
    const fewest = Math.min(...rounds)
    const most = Math.max(...rounds)
    expect(fewest).to.be.above(0)
    expect(most / fewest).to.be.below(3)
  })

  it('due is false while the slice lasts and true once it is over; loops that ask it first still let timers run', async () => {
    const yielder = new Yielder(10)
    await new Promise(resolve => setTimeout(resolve, 5))
    expect(yielder.due).to.be.false()
    work(12)
    expect(yielder.due).to.be.true()

    const stop = { now: false }
    const rounds = [0, 0, 0]
    const loops = rounds.map(async (_, i) => {
      const turn = new Yielder(10)
      while (!stop.now) {
        work(1)
        rounds[i]++
        if (turn.due) {
          await turn.maybeYield()
        }
      }
    })
    const worstLag = await worstTimerLag(300)
    stop.now = true
    await Promise.all(loops)
    expect(worstLag).to.be.below(60)
    expect(Math.min(...rounds)).to.be.above(0)
  })

  it('waiting loops resume one per turn of the event loop, in the order they yielded', async () => {
    const stop = { now: false }
    const order: number[] = []
    // eight loops with 8 ms of work that cannot be split, yielding after each: one runs per turn, not eight (64 ms)
    const loops = [0, 1, 2, 3, 4, 5, 6, 7].map(async (i) => {
      const yielder = new Yielder(0)
      while (!stop.now) {
        await yielder.maybeYield()
        order.push(i)
        work(8)
      }
    })
    const worstLag = await worstTimerLag(400)
    stop.now = true
    await Promise.all(loops)
    expect(worstLag).to.be.below(45)
    expect(order.slice(0, 16)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7])
  })
})
