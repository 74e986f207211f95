/**
 * The Yielder in Node's event loop: callbacks of one turn (I/O of many
 * sockets, or setImmediate callbacks) each drain their microtasks before
 * the next, so loops woken by them must share the turn's slice.
 */
import { expect } from 'aegir/chai'
import { Yielder } from '../../src/core/budget.ts'
import { work, worstTimerLag } from '../fixtures/timing.ts'

describe('core/budget Yielder in Node', () => {
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
})
