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

  it('a turn runs one slice of local loops, however many immediates and timers wake them', async () => {
    // 64 short loops (eight 1 ms steps each), woken by immediates and by
    // timers spread over 7 ms, three rounds: a slice must not start anew at
    // another macrotask of the same turn (an immediate after the one that
    // ended the last slice, or a timer), or a turn runs two slices
    let worstLag = 0
    for (let round = 0; round < 3; round++) {
      const yielder = new Yielder(10)
      const steps = async (): Promise<void> => {
        for (let i = 0; i < 8; i++) {
          await yielder.maybeYield()
          work(1)
        }
      }
      const lag = worstTimerLag(600)
      const loops: Array<Promise<void>> = []
      for (let i = 0; i < 32; i++) {
        loops.push(new Promise<void>(resolve => { setImmediate(() => { void steps().then(resolve) }) }))
        loops.push(new Promise<void>(resolve => { setTimeout(() => { void steps().then(resolve) }, i % 7) }))
      }
      await Promise.all(loops)
      worstLag = Math.max(worstLag, await lag)
    }
    // one 10 ms slice and the 1 ms step that crosses it, then the timer's turn
    expect(worstLag).to.be.below(17)
  })
})
