import { expect } from 'aegir/chai'
import { Yielder } from '../../src/core/budget.ts'

/** Busy-waits `ms` milliseconds: a stand-in for synchronous work */
function work (ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // spin
  }
}

/** The longest gap between ticks of a 5 ms timer over `ms` milliseconds */
async function worstTimerLag (ms: number): Promise<number> {
  let worst = 0
  let last = performance.now()
  const timer = setInterval(() => {
    const time = performance.now()
    worst = Math.max(worst, time - last)
    last = time
  }, 5)
  await new Promise(resolve => setTimeout(resolve, ms))
  clearInterval(timer)
  return worst
}

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

  it('loops woken one after another in the same turn share its slice', async () => {
    // eight loops, each woken by its own callback of one turn (like eight
    // sessions' frames read in one poll), each working 2 ms between checks:
    // with a clock per loop that turn would run 8 x 10 ms
    const stop = { now: false }
    const wakes: Array<() => void> = []
    const loops = [0, 1, 2, 3, 4, 5, 6, 7].map(async () => {
      await new Promise<void>(resolve => wakes.push(resolve))
      const yielder = new Yielder(10)
      while (!stop.now) {
        await yielder.maybeYield()
        work(2)
      }
    })
    setTimeout(() => {
      for (const wake of wakes) {
        setImmediate(wake)
      }
    }, 20)
    const worstLag = await worstTimerLag(300)
    stop.now = true
    await Promise.all(loops)
    // one shared 10 ms slice (plus the 2 ms step that crosses it) per turn, and the 5 ms timer period
    expect(worstLag).to.be.below(40)
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
