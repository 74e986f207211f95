import { readFile } from 'node:fs/promises'
import * as dagCbor from '@ipld/dag-cbor'
import { expect } from 'aegir/chai'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { BloomFilter } from '../src/core/bloom/bloom-filter.ts'
import { bloomItem, decodeMessage, encodeMessage } from '../src/core/messages.ts'
import { Shard, bucketOf } from '../src/core/pool/shard.ts'
import { encodeLength } from '../src/transport/framed-stream.ts'
import type { Message, PullMessage, StatusMessage } from '../src/core/messages.ts'

/** The example frames in docs/PROTOCOL.md, by name: fenced blocks opened with ```frame NAME (letters, digits, `_` and `-`) */
async function documentedFrames (): Promise<Map<string, Uint8Array>> {
  // aegir runs tests from the repository root
  const text = await readFile('docs/PROTOCOL.md', 'utf8')
  const frames = new Map<string, Uint8Array>()
  for (const match of text.matchAll(/```frame ([\w-]+)\n([0-9a-f ]+)\n```/g)) {
    frames.set(match[1], Uint8Array.from(match[2].trim().split(' '), byte => parseInt(byte, 16)))
  }
  return frames
}

function frameOf (message: Message): Uint8Array {
  const parts = encodeMessage(message)
  const length = parts.reduce((sum, part) => sum + part.byteLength, 0)
  const out = new Uint8Array(length + 8)
  const prefix = encodeLength(length)
  out.set(prefix)
  let offset = prefix.byteLength
  for (const part of parts) {
    out.set(part, offset)
    offset += part.byteLength
  }
  return out.subarray(0, offset)
}

describe('docs/PROTOCOL.md byte-level examples', () => {
  let frames: Map<string, Uint8Array>
  let examples: Record<string, Message>

  before(async () => {
    frames = await documentedFrames()
    const bytes = new TextEncoder().encode('hello')
    const cid = CID.createV1(raw.code, await sha256.digest(bytes))
    expect(cid.toString()).to.equal('bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq')
    const bloom = new BloomFilter(new Uint8Array(2), 12)
    bloom.add(bloomItem(cid))
    examples = {
      pull: { type: 'pull', roots: [cid], wants: [cid], bloom },
      'pull-shallow': { type: 'pull', roots: [cid], wants: [], depthLimit: 0 },
      'pull-sharded': { type: 'pull', roots: [cid], wants: [], shard: Shard.of(4, [0, 2]) },
      'pull-interior': { type: 'pull', roots: [cid], wants: [], shard: Shard.of(4, []) },
      'status-shard': { type: 'status', wants: [], shard: Shard.of(4, [2]) },
      push: { type: 'push', roots: [cid], hints: [] },
      header: { type: 'header', roots: [cid] },
      block: { type: 'block', cid, bytes },
      status: { type: 'status', wants: [cid] },
      'status-clear': { type: 'status', wants: [], bloom: null },
      'status-bloom': { type: 'status', wants: [], bloom, rootsHeld: true },
      idle: { type: 'idle', statuses: 1 },
      sync: { type: 'sync', statuses: 1 },
      missing: { type: 'missing', cids: [cid] },
      keepalive: { type: 'keepalive' },
      done: { type: 'done', duplicates: 0 },
      error: { type: 'error', code: 'not-found', message: 'gone', cids: [cid] }
    }
  })

  it('documents one frame for every message type', () => {
    expect([...frames.keys()].sort()).to.deep.equal(Object.keys(examples).sort())
  })

  const checkExample = (name: string): void => {
    const documented = frames.get(name)
    expect(documented, `no ${name} frame in PROTOCOL.md`).to.be.an.instanceOf(Uint8Array)
    expect(frameOf(examples[name])).to.equalBytes(documented as Uint8Array)

    // every documented body is under 128 bytes, so its length prefix is one byte
    const decoded = decodeMessage((documented as Uint8Array).subarray(1))
    expect(frameOf(decoded)).to.equalBytes(documented as Uint8Array)
    expect(decoded.type).to.equal(examples[name].type)
  }

  for (const name of ['pull', 'pull-shallow', 'pull-sharded', 'pull-interior', 'status-shard', 'push', 'header', 'block', 'status', 'status-clear', 'status-bloom', 'idle', 'sync', 'missing', 'keepalive', 'done', 'error']) {
    it(`encodes the ${name} example byte for byte and decodes it back`, () => {
      checkExample(name)
    })
  }

  it('decodes the three Bloom forms of a status (D1): absent = unchanged, empty = clear, non-empty = replace', () => {
    const decoded = (name: string): Message => decodeMessage((frames.get(name) as Uint8Array).subarray(1))
    expect(decoded('status')).to.not.have.property('bloom')
    expect(decoded('status-clear')).to.have.property('bloom', null)
    const replacing = decoded('status-bloom') as { bloom?: BloomFilter | null, rootsHeld?: boolean }
    expect(replacing.bloom?.bytes).to.equalBytes(Uint8Array.of(0x56, 0xd9))
    expect(replacing.bloom?.hashCount).to.equal(12)
    expect(replacing.rootsHeld).to.equal(true)
  })

  it('the sharded examples say what S-15 says: the hello block is in bucket 2 of 4, which both shards own and the empty shard does not', () => {
    const decoded = (name: string): Message => decodeMessage((frames.get(name) as Uint8Array).subarray(1))
    const pull = decoded('pull-sharded') as PullMessage
    const status = decoded('status-shard') as StatusMessage
    expect(pull.shard?.buckets()).to.deep.equal([0, 2])
    expect(status.shard?.buckets()).to.deep.equal([2])
    const cid = (examples.block as { cid: CID }).cid
    expect(bucketOf(cid, 4)).to.equal(2)
    expect(pull.shard?.sends(cid)).to.be.true()
    expect(Shard.of(4, [0, 1, 3]).sends(cid)).to.be.false()
    // a shard of no bucket sends no raw leaf
    const interior = decoded('pull-interior') as PullMessage
    expect(interior.shard?.buckets()).to.deep.equal([])
    expect(interior.shard?.sends(cid)).to.be.false()
  })

  it('rejects malformed shards: sn without sh, a mask of the wrong length, bits past sn, more than 1024 buckets', () => {
    const root = (examples.block as { cid: CID }).cid
    const body = (fields: Record<string, unknown>): Uint8Array => dagCbor.encode({ t: 'pull', rs: [root], sr: [], ...fields })
    expect(() => decodeMessage(body({ sn: 4 }))).to.throw().with.property('name', 'ProtocolError')
    expect(() => decodeMessage(body({ sh: Uint8Array.of(1) }))).to.throw().with.property('name', 'ProtocolError')
    expect(() => decodeMessage(body({ sn: 4, sh: Uint8Array.of(1, 0) }))).to.throw().with.property('name', 'ProtocolError')
    expect(() => decodeMessage(body({ sn: 4, sh: Uint8Array.of(0x10) }))).to.throw().with.property('name', 'ProtocolError')
    expect(() => decodeMessage(body({ sn: 2048, sh: new Uint8Array(256) }))).to.throw().with.property('name', 'ProtocolError')
    expect(() => decodeMessage(body({ sn: 0, sh: new Uint8Array(0) }))).to.throw().with.property('name', 'ProtocolError')
    expect((decodeMessage(body({ sn: 9, sh: Uint8Array.of(0, 1) })) as PullMessage).shard?.buckets()).to.deep.equal([8])
  })

  it('rejects the frame bodies that PROTOCOL.md §9 lists as invalid', () => {
    const bodies = [
      Uint8Array.of(0xa2, 0x61, 0x74, 0x64, 0x69, 0x64, 0x6c, 0x65, 0x61, 0x6e, 0x01), // keys out of canonical order (C-1)
      Uint8Array.of(0xa2, 0x61, 0x6e, 0x18, 0x01, 0x61, 0x74, 0x64, 0x69, 0x64, 0x6c, 0x65), // n: 1 in two bytes (C-1)
      new Uint8Array(0) // an empty body (F-3)
    ]
    for (const body of bodies) {
      expect(() => decodeMessage(body), Array.from(body, byte => byte.toString(16)).join(' ')).to.throw().with.property('name', 'ProtocolError')
    }
  })

  it('has the known answer of PROTOCOL.md §5: item 01 02 03 in a 2-byte filter with 12 hashes is ab 5d', () => {
    const bloom = new BloomFilter(new Uint8Array(2), 12)
    bloom.add(Uint8Array.of(1, 2, 3))
    expect(bloom.bytes).to.equalBytes(Uint8Array.of(0xab, 0x5d))
  })

  it('documents the Bloom bits of the example', () => {
    const bloom = (examples.pull as { bloom: BloomFilter }).bloom
    expect(bloom.bytes).to.equalBytes(Uint8Array.from([0x56, 0xd9]))
  })
})
