import { expect } from 'aegir/chai'
import { Uint8ArrayList } from 'uint8arraylist'
import { compact } from '../../src/transport/framed-stream.ts'

describe('transport/compact', () => {
  it('copies a frame that is a small view into a large buffer, so waiting frames hold only their own bytes', () => {
    const chunk = new Uint8Array(64 * 1024)
    chunk.set([1, 2, 3, 4, 5], 100)
    const frame = new Uint8ArrayList(chunk.subarray(100, 105), new Uint8Array([6, 7]))
    const kept = compact(frame)
    expect(kept.subarray()).to.deep.equal(new Uint8Array([1, 2, 3, 4, 5, 6, 7]))
    let held = 0
    for (const part of kept) {
      held += part.buffer.byteLength
    }
    expect(held).to.equal(7)
  })

  it('keeps a frame that fills its buffers as it is (no copy of block frames)', () => {
    const frame = new Uint8ArrayList(new Uint8Array(64 * 1024).fill(9), new Uint8Array(1000).fill(8))
    expect(compact(frame)).to.equal(frame)
  })
})
