import { xxh3 as native } from '@node-rs/xxhash'
import { expect } from 'aegir/chai'
import { xxh3, xxh3Reference } from '../../../src/core/bloom/xxh3.ts'
import { randomBytes, randomSeed, randomSource } from '../../fixtures/random.ts'

// Node only (imported from test/node.ts): the native xxHash is an N-API addon
describe('xxh3 against the native xxHash', () => {
  it('agrees with the native xxHash on random inputs of every length 0..1100', () => {
    const random = randomSource(1)
    for (let length = 0; length <= 1100; length++) {
      const input = randomBytes(random, length)
      const seed = length % 3 === 0 ? BigInt(length) : randomSeed(random)
      const expected = native.xxh64(input, seed)
      expect(xxh3Reference(input, seed)).to.equal(expected, `reference, length ${length}, seed ${seed}`)
      expect(xxh3(input, seed)).to.equal(expected, `fast path, length ${length}, seed ${seed}`)
    }
  })
})
