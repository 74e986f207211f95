import { expect } from 'aegir/chai'
import { Budget, BudgetShare } from '../../src/core/budget.ts'

/** Lets several macrotasks run */
async function settle (turns: number = 10): Promise<void> {
  for (let i = 0; i < turns; i++) {
    await new Promise(resolve => setTimeout(resolve, 0))
  }
}

describe('core/budget', () => {
  it('whenAvailableInTurn lets waiters through one per turn, each only while there is room: the overshoot is one taker\'s burst', async () => {
    const budget = new Budget('bufferedBytes', 10)
    budget.force(20)
    let through = 0
    // five paused streams, each handing over 6 units of buffered frames when it resumes
    const streams = Array.from({ length: 5 }, async () => {
      await budget.whenAvailableInTurn()
      through++
      budget.force(6)
    })
    await settle()
    expect(through).to.equal(0)

    budget.release(20)
    await settle()
    // the first resumes (6), the second still finds room (12), the rest find the budget used up and wait
    expect(through).to.equal(2)
    expect(budget.used).to.equal(12)

    budget.release(12)
    await settle()
    expect(through).to.equal(4)
    budget.release(12)
    await Promise.all(streams)
    expect(through).to.equal(5)
  })

  it('whenAvailable, by contrast, lets every waiter through at once', async () => {
    const budget = new Budget('bufferedBytes', 10)
    budget.force(20)
    let through = 0
    const streams = Array.from({ length: 5 }, async () => {
      await budget.whenAvailable()
      through++
      budget.force(6)
    })
    budget.release(20)
    await Promise.all(streams)
    expect(through).to.equal(5)
    expect(budget.used).to.equal(30)
  })

  it('peak is the most ever held at once, also past the limit, and does not fall when takers give back', () => {
    const budget = new Budget('queuedWants', 100)
    expect(budget.peak).to.equal(0)
    expect(budget.tryTake(60)).to.be.true()
    expect(budget.tryTake(60)).to.be.false()
    expect(budget.peak).to.equal(60)
    budget.force(70)
    expect(budget.peak).to.equal(130)
    budget.release(130)
    expect(budget.used).to.equal(0)
    expect(budget.peak).to.equal(130)
  })

  it('a session\'s share reports the node\'s peak and fits, as it reports the node\'s use', () => {
    const node = new Budget('queuedWants', 100)
    const share = new BudgetShare(node)
    // nothing taken: even more than the whole limit fits (it must not wait forever)
    expect(share.fits(150)).to.be.true()
    node.force(80)
    expect(share.fits(20)).to.be.true()
    expect(share.fits(21)).to.be.false()
    share.force(30)
    expect(share.peak).to.equal(110)
    expect(node.peak).to.equal(110)
  })
})
