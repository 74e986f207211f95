import { expect } from 'aegir/chai'
import { Yielder } from '../../src/core/budget.ts'

/** Busy-waits `ms` milliseconds: a stand-in for synchronous work */
function work (ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // spin
  }
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
    let worstLag = 0
    let last = performance.now()
    const timer = setInterval(() => {
      const time = performance.now()
      worstLag = Math.max(worstLag, time - last)
      last = time
    }, 5)
    await new Promise(resolve => setTimeout(resolve, 600))
    stop.now = true
    await Promise.all(loops)
    clearInterval(timer)
    // one 10 ms slice per turn of the event loop, not six: the timer runs every few slices at most
    expect(worstLag).to.be.below(60)
    // every loop got its share
    const fewest = Math.min(...rounds)
    const most = Math.max(...rounds)
    expect(fewest).to.be.above(0)
    expect(most / fewest).to.be.below(3)
  })

  it('a loop that waited for I/O since its last check starts a fresh slice instead of yielding', async () => {
    const yielder = new Yielder(10)
    await yielder.maybeYield()
    await new Promise(resolve => setTimeout(resolve, 40))
    let resumedAt = 0
    void new Promise<void>(resolve => { setTimeout(resolve, 0) }).then(() => { resumedAt = performance.now() })
    await yielder.maybeYield()
    // it returned without waiting for a macrotask: the timer above has not fired yet
    expect(resumedAt).to.equal(0)
  })
})
