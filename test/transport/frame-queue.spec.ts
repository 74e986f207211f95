/**
 * FramedStream's queue of frames waiting to be handled: a peer's tiny
 * frames cost hundreds of bytes each once split and queued, so only so many
 * are split ahead of the reader; the rest wait as bytes.
 */
import { streamPair } from '@libp2p/utils'
import { expect } from 'aegir/chai'
import { concat } from 'uint8arrays/concat'
import { Budget } from '../../src/core/budget.ts'
import { encodeMessage } from '../../src/core/messages.ts'
import { FramedStream, encodeLength } from '../../src/transport/framed-stream.ts'
import { rawBlock } from '../fixtures/dag.ts'
import type { Message } from '../../src/core/messages.ts'

/** The frames of `messages` in one buffer, as a peer could write them at once */
function framesOf (messages: Message[]): Uint8Array {
  const parts: Uint8Array[] = []
  for (const message of messages) {
    const body = encodeMessage(message)
    const bodyBytes = body.reduce((n, part) => n + part.byteLength, 0)
    parts.push(encodeLength(bodyBytes), ...body)
  }
  return concat(parts)
}

/** `count` idle frames (about 10 bytes each) in one buffer */
function idleFrames (count: number): Uint8Array {
  return framesOf(Array.from({ length: count }, (_, i) => ({ type: 'idle', statuses: i })))
}

/** The first `count` messages the reader hands over (the stream stays open: a closed one is never paused) */
async function readMessages (reader: FramedStream, count: number): Promise<Message[]> {
  const messages: Message[] = []
  if (count === 0) {
    return messages
  }
  for await (const message of reader.messages({ signal: AbortSignal.timeout(20_000) })) {
    messages.push(message)
    if (messages.length === count) {
      break
    }
  }
  return messages
}

/** Each idle message's count */
function counts (messages: Message[]): number[] {
  return messages.map(message => (message as Extract<Message, { type: 'idle' }>).statuses)
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

    const statuses = counts(await readMessages(reader, COUNT))
    expect(statuses).to.have.lengthOf(COUNT)
    expect(statuses.every((n, i) => n === i)).to.be.true()
    expect(budget.used, 'all given back').to.equal(0)
  })

  it('a stream paused for more frame bytes than its limit reads on as its session takes frames, to the last one', async () => {
    // about 3.3 MB of tiny frames: more than the 2 MiB the stream holds unsplit before it pauses
    const COUNT = 300_000
    const [a, b] = await streamPair()
    const budget = new Budget('bufferedBytes', 32 * 1024 * 1024)
    const reader = new FramedStream(b, { bufferBudget: budget })
    a.send(idleFrames(COUNT))
    const statuses = counts(await readMessages(reader, COUNT))
    expect(statuses).to.have.lengthOf(COUNT)
    expect(statuses.every((n, i) => n === i)).to.be.true()
    expect(budget.used).to.equal(0)
  })

  it('a partial large frame never keeps a stream paused: frames larger than a small high-water mark all arrive', async () => {
    const blocks = await Promise.all([0, 1, 2, 3, 4, 5].map(async i => rawBlock(new Uint8Array(1024 * 1024).fill(i))))
    const [a, b] = await streamPair()
    const reader = new FramedStream(b, { highWaterMark: 64 * 1024 })
    a.send(framesOf(blocks.map(block => ({ type: 'block', cid: block.cid, bytes: block.bytes }))))
    const received = await readMessages(reader, blocks.length)
    expect(received.map(message => message.type === 'block' ? message.cid.toString() : message.type)).to.deep.equal(blocks.map(block => block.cid.toString()))
  })
})
