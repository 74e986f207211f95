/**
 * FramedStream's queue of frames waiting to be handled: a peer's tiny
 * frames cost hundreds of bytes each once split and queued, so only so many
 * are split ahead of the reader; the rest wait as bytes.
 */
import { streamPair } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { Budget } from '../../src/core/budget.ts'
import { encodeMessage } from '../../src/core/messages.ts'
import { FramedStream, encodeLength } from '../../src/transport/framed-stream.ts'
import type { Message } from '../../src/core/messages.ts'

/** `count` idle frames (about 10 bytes each) in one buffer, as a peer could write them at once */
function idleFrames (count: number): Uint8Array {
  const parts: Uint8Array[] = []
  for (let i = 0; i < count; i++) {
    const body = encodeMessage({ type: 'idle', statuses: i })
    const bodyBytes = body.reduce((n, part) => n + part.byteLength, 0)
    parts.push(encodeLength(bodyBytes), ...body)
  }
  const all = new Uint8Array(parts.reduce((n, part) => n + part.byteLength, 0))
  let offset = 0
  for (const part of parts) {
    all.set(part, offset)
    offset += part.byteLength
  }
  return all
}

describe('transport/FramedStream frame queue', () => {
  it('splits only a few hundred of a flood of tiny frames ahead of the reader, and still hands over every one in order', async () => {
    const COUNT = 20_000
    const [a, b] = await streamPair()
    const budget = new Budget('bufferedBytes', 32 * 1024 * 1024)
    const reader = new FramedStream(b, { bufferBudget: budget })
    const bytes = idleFrames(COUNT)
    a.send(bytes)
    await a.close()

    // wait until everything arrived at the reader, without reading a message
    const deadline = Date.now() + 5000
    while (reader.bytesRead < bytes.byteLength && Date.now() < deadline) {
      await new Promise(resolve => setTimeout(resolve, 10))
    }
    expect(reader.bytesRead).to.equal(bytes.byteLength)
    expect(reader.queuedFrames).to.be.at.most(256)
    // what is queued is charged with its overhead, the rest as bytes
    expect(budget.used).to.be.at.least(bytes.byteLength)
    expect(budget.used).to.be.below(bytes.byteLength + 256 * 600)

    const statuses: number[] = []
    for await (const message of reader.messages()) {
      statuses.push((message as Extract<Message, { type: 'idle' }>).statuses)
    }
    expect(statuses).to.have.lengthOf(COUNT)
    expect(statuses.every((n, i) => n === i)).to.be.true()
    expect(budget.used, 'all given back').to.equal(0)
  })
})
