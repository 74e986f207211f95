/**
 * The frame splitter: varint length prefixes in their shortest form only
 * (D7), frames split across chunks in any way, limits on the length.
 */

import { expect } from 'aegir/chai'
import { Uint8ArrayList } from 'uint8arraylist'
import { concat } from 'uint8arrays/concat'
import { LimitExceededError, ProtocolError } from '../../src/errors.ts'
import { FrameDecoder } from '../../src/transport/frame-decoder.ts'

/** Every frame the decoder yields for `chunks`, as plain arrays */
function framesOf (decoder: FrameDecoder, chunks: Array<Uint8Array | Uint8ArrayList>): number[][] {
  const frames: number[][] = []
  for (const chunk of chunks) {
    for (const frame of decoder.push(chunk)) {
      frames.push([...frame.subarray()])
    }
  }
  return frames
}

function expectThrowsNamed (run: () => unknown, name: string): void {
  try {
    run()
  } catch (err) {
    expect((err as Error).name, (err as Error).message).to.equal(name)
    return
  }
  throw new Error(`expected a ${name}`)
}

/** The shortest unsigned LEB128 varint of `length` */
function encodeLength (length: number): Uint8Array {
  const out: number[] = []
  let rest = length
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80)
    rest = Math.floor(rest / 0x80)
  }
  out.push(rest)
  return Uint8Array.from(out)
}

function frame (length: number, fill = 7): Uint8Array {
  return concat([encodeLength(length), new Uint8Array(length).fill(fill)])
}

describe('FrameDecoder', () => {
  it('splits frames of one-byte and multi-byte prefixes, fed whole or one byte at a time', () => {
    const stream = concat([frame(0), frame(3, 1), frame(127, 2), frame(128, 3), frame(300, 4), frame(16_384, 5)])
    const expected = [0, 3, 127, 128, 300, 16_384].map((length, i) => new Array(length).fill(i === 0 ? 7 : i))
    expect(framesOf(new FrameDecoder(1 << 20), [stream])).to.deep.equal(expected)
    expect(framesOf(new FrameDecoder(1 << 20), [...stream].map(byte => Uint8Array.of(byte)))).to.deep.equal(expected)
    expect(framesOf(new FrameDecoder(1 << 20), [new Uint8ArrayList(stream.subarray(0, 5), stream.subarray(5, 200)), stream.subarray(200)])).to.deep.equal(expected)
  })

  it('reads the shortest two- and three-byte prefixes', () => {
    expect(framesOf(new FrameDecoder(1 << 20), [Uint8Array.of(0x80, 0x01), new Uint8Array(128)])).to.have.lengthOf(1)
    expect(framesOf(new FrameDecoder(1 << 20), [Uint8Array.of(0x80, 0x80, 0x01), new Uint8Array(16_384)])).to.have.lengthOf(1)
  })

  it('a padded length prefix (80 00 for 0) is a ProtocolError', () => {
    expectThrowsNamed(() => framesOf(new FrameDecoder(1 << 20), [Uint8Array.of(0x80, 0x00)]), ProtocolError.name)
  })

  it('a padded prefix of a non-zero length (ff 00, 81 80 00) is a ProtocolError', () => {
    expectThrowsNamed(() => framesOf(new FrameDecoder(1 << 20), [Uint8Array.of(0xff, 0x00), new Uint8Array(127)]), ProtocolError.name)
    expectThrowsNamed(() => framesOf(new FrameDecoder(1 << 20), [Uint8Array.of(0x81, 0x80, 0x00), new Uint8Array(1)]), ProtocolError.name)
  })

  it('a padded prefix split across chunks is a ProtocolError once its last byte arrives', () => {
    const decoder = new FrameDecoder(1 << 20)
    expect(framesOf(decoder, [Uint8Array.of(0x85)])).to.deep.equal([])
    expectThrowsNamed(() => framesOf(decoder, [Uint8Array.of(0x00)]), ProtocolError.name)
  })

  it('a padded prefix after a valid frame is a ProtocolError', () => {
    expectThrowsNamed(() => framesOf(new FrameDecoder(1 << 20), [concat([frame(2), Uint8Array.of(0x82, 0x00, 1, 2)])]), ProtocolError.name)
  })

  it('a length over the limit is a LimitExceededError, even before the frame arrives', () => {
    expect(framesOf(new FrameDecoder(300), [frame(300)])).to.have.lengthOf(1)
    expectThrowsNamed(() => framesOf(new FrameDecoder(300), [encodeLength(301)]), LimitExceededError.name)
  })

  it('a prefix longer than 9 bytes is a ProtocolError', () => {
    expectThrowsNamed(() => framesOf(new FrameDecoder(Number.MAX_SAFE_INTEGER), [new Uint8Array(10).fill(0x80)]), ProtocolError.name)
  })

  it('keeps an incomplete frame until the rest arrives', () => {
    const decoder = new FrameDecoder(1 << 20)
    const whole = frame(1000, 9)
    expect(framesOf(decoder, [whole.subarray(0, 500)])).to.deep.equal([])
    expect(framesOf(decoder, [whole.subarray(500)])).to.deep.equal([new Array(1000).fill(9)])
  })
})
