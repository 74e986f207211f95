/**
 * A benchmark-only "one-shot CAR" protocol: the whole DAG as one CARv1 over
 * one libp2p stream. It is the practical floor of a cold transfer (one round
 * trip plus the bytes) and shows what "upload the whole CAR" costs when the
 * receiver already holds most of it.
 *
 * Pull (`CAR_PULL_PROTOCOL`): the receiver opens a stream and writes the root
 * CID as one length-prefixed frame; the sender answers with a CARv1 of every
 * block under it (breadth-first, `walkDag`) and closes. Push
 * (`CAR_PUSH_PROTOCOL`): the sender opens a stream and writes the CARv1; the
 * receiver answers with one byte (1 = stored, verified) once every block is
 * written.
 *
 * The receiver verifies each block's hash (`BlockVerifier`) before writing it,
 * skips blocks it already holds (counted as duplicates) and pauses the stream
 * while too many bytes wait to be processed.
 */

import * as dagCbor from '@ipld/dag-cbor'
import { LengthPrefixedDecoder } from '@libp2p/utils'
import { varint } from 'multiformats'
import { CID } from 'multiformats/cid'
import { Uint8ArrayList } from 'uint8arraylist'
import { BlockVerifier, LinkReader, walkDag } from '../src/core/index.ts'
import type { LoadCodec } from '../src/index.ts'
import type { AbortOptions, Libp2p, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Blockstore } from 'interface-blockstore'

export const CAR_PULL_PROTOCOL = '/car-mirror-bench/car-pull/1.0.0'
export const CAR_PUSH_PROTOCOL = '/car-mirror-bench/car-push/1.0.0'

/** Largest section accepted (a 2 MiB block plus its CID) */
const MAX_SECTION = 2 * 1024 * 1024 + 1024
/** Sections are gathered into writes of about this size */
const WRITE_BATCH = 256 * 1024
/** Unprocessed bytes above which the receiver pauses the stream */
const HIGH_WATER_MARK = 8 * 1024 * 1024
/** Room for what a paused stream still receives: yamux's largest window (16 MiB) and then some */
const READ_BUFFER_LENGTH = 32 * 1024 * 1024
/** Blockstore writes in flight at once */
const MAX_PENDING_WRITES = 16
/** Block reads the sender keeps in flight */
const READ_AHEAD = 32

/** What the protocol needs from a node */
export interface CarNode {
  libp2p: Pick<Libp2p, 'handle' | 'dialProtocol'>
  blockstore: Blockstore
  getCodec?: LoadCodec
}

export interface CarTransfer {
  /** Blocks in the CAR */
  blocks: number
  /** Block bytes in the CAR */
  blockBytes: number
  /** Blocks the receiver already held (not written again) */
  duplicates: number
}

function lengthPrefix (length: number): Uint8Array {
  return varint.encodeTo(length, new Uint8Array(varint.encodingLength(length)))
}

async function send (stream: Stream, data: Uint8Array | Uint8ArrayList, options: AbortOptions): Promise<void> {
  if (!stream.send(data)) {
    await stream.onDrain(options)
  }
}

/** Writes a CARv1 of every block under `root` (header, then sections, breadth-first) */
export async function writeCar (stream: Stream, blockstore: Blockstore, root: CID, options: AbortOptions & { linkReader?: LinkReader } = {}): Promise<CarTransfer> {
  const header = dagCbor.encode({ roots: [root], version: 1 })
  let batch = new Uint8ArrayList(lengthPrefix(header.byteLength), header)
  let blocks = 0
  let blockBytes = 0
  for await (const block of walkDag(blockstore, [root], { offline: true, readAhead: READ_AHEAD, linkReader: options.linkReader, signal: options.signal })) {
    batch.append(lengthPrefix(block.cid.bytes.byteLength + block.bytes.byteLength), block.cid.bytes, block.bytes)
    blocks++
    blockBytes += block.bytes.byteLength
    if (batch.byteLength >= WRITE_BATCH) {
      await send(stream, batch, options)
      batch = new Uint8ArrayList()
    }
  }
  if (batch.byteLength > 0) {
    await send(stream, batch, options)
  }
  return { blocks, blockBytes, duplicates: 0 }
}

/**
 * The frames of a stream (length-prefixed), with backpressure: the stream is
 * paused while more than HIGH_WATER_MARK bytes wait to be consumed
 */
async function * frames (stream: Stream, options: AbortOptions = {}): AsyncGenerator<Uint8Array> {
  // a paused yamux stream keeps receiving up to its window (which grows to
  // 16 MiB), more than the stream's default 4 MiB read buffer: without room
  // for that, pausing aborts the stream with a StreamBufferError
  stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, READ_BUFFER_LENGTH)
  // a message event may carry many frames at once: the buffer limit is for one event's data
  const decoder = new LengthPrefixedDecoder({ maxDataLength: MAX_SECTION, maxBufferSize: 64 * 1024 * 1024 })
  const queue: Uint8Array[] = []
  let queued = 0
  let paused = false
  let ended = false
  let failure: Error | undefined
  let wake: (() => void) | undefined
  const notify = (): void => {
    wake?.()
    wake = undefined
  }
  const onMessage = (event: { data: Uint8Array | Uint8ArrayList }): void => {
    try {
      for (const frame of decoder.decode(event.data)) {
        const bytes = frame.subarray()
        queue.push(bytes)
        queued += bytes.byteLength
      }
    } catch (err) {
      failure = err as Error
      stream.abort(failure)
    }
    if (queued > HIGH_WATER_MARK && !paused) {
      paused = true
      stream.pause()
    }
    notify()
  }
  const onEnd = (): void => {
    ended = true
    notify()
  }
  const onClose = (event: Event & { error?: Error }): void => {
    ended = true
    failure ??= event.error
    notify()
  }
  stream.addEventListener('message', onMessage)
  stream.addEventListener('remoteCloseWrite', onEnd)
  stream.addEventListener('close', onClose)
  const resume = (): void => {
    paused = false
    // the stream closes its readable end by itself once the remote end has
    // closed and its buffer is empty; it cannot be resumed then
    if (stream.readStatus === 'paused') {
      stream.resume()
    }
  }
  const sleep = async (): Promise<void> => new Promise<void>((resolve) => { wake = resolve })
  const onAbort = (): void => { notify() }
  options.signal?.addEventListener('abort', onAbort)
  try {
    while (true) {
      options.signal?.throwIfAborted()
      const frame = queue.shift()
      if (frame != null) {
        queued -= frame.byteLength
        if (paused && queued < HIGH_WATER_MARK / 2) {
          resume()
        }
        yield frame
        continue
      }
      if (failure != null) {
        throw failure
      }
      if (paused) {
        // data may still wait in the stream's buffer although the remote end closed
        resume()
        continue
      }
      if (ended) {
        return
      }
      await sleep()
    }
  } finally {
    stream.removeEventListener('message', onMessage)
    stream.removeEventListener('remoteCloseWrite', onEnd)
    stream.removeEventListener('close', onClose)
    options.signal?.removeEventListener('abort', onAbort)
  }
}

/** Reads a CARv1 from the stream, verifying and storing every block, until the sender closes */
export async function readCar (stream: Stream, blockstore: Blockstore, verifier: BlockVerifier, options: AbortOptions = {}): Promise<CarTransfer & { roots: CID[] }> {
  let roots: CID[] | undefined
  let blocks = 0
  let blockBytes = 0
  let duplicates = 0
  const writes = new Set<Promise<void>>()
  let writeError: Error | undefined
  const write = (cid: CID, bytes: Uint8Array): void => {
    const written: Promise<void> = (async () => { await blockstore.put(cid, bytes, options) })()
      .catch((err: Error) => { writeError ??= err })
      .finally(() => { writes.delete(written) })
    writes.add(written)
  }
  for await (const frame of frames(stream, options)) {
    if (roots == null) {
      const header = dagCbor.decode<{ roots?: CID[], version?: number }>(frame)
      if (header.version !== 1 || !Array.isArray(header.roots)) {
        throw new Error('not a CARv1 header')
      }
      roots = header.roots
      continue
    }
    const [cid, bytes] = CID.decodeFirst(frame)
    await verifier.verify(cid, bytes)
    blocks++
    blockBytes += bytes.byteLength
    if (await blockstore.has(cid, options)) {
      duplicates++
      continue
    }
    write(cid, bytes)
    if (writes.size >= MAX_PENDING_WRITES) {
      await Promise.race(writes)
    }
    if (writeError != null) {
      throw writeError
    }
  }
  await Promise.all(writes)
  if (writeError != null) {
    throw writeError
  }
  if (roots == null) {
    throw new Error('the stream ended before the CAR header')
  }
  return { roots, blocks, blockBytes, duplicates }
}

/** Serves both directions of the one-shot CAR protocol on a node */
export async function handleOneShotCar (node: CarNode): Promise<void> {
  const verifier = new BlockVerifier()
  const linkReader = new LinkReader({ loadCodec: node.getCodec })
  await node.libp2p.handle(CAR_PULL_PROTOCOL, async (stream) => {
    try {
      const request = frames(stream)
      const first = await request.next()
      await request.return(undefined)
      if (first.done === true) {
        throw new Error('no root requested')
      }
      await writeCar(stream, node.blockstore, CID.decode(first.value), { linkReader })
      await stream.close()
    } catch (err) {
      stream.abort(err as Error)
    }
  }, { maxInboundStreams: 8, maxOutboundStreams: 8 })
  await node.libp2p.handle(CAR_PUSH_PROTOCOL, async (stream) => {
    try {
      await readCar(stream, node.blockstore, verifier)
      await send(stream, Uint8Array.of(1), {})
      await stream.close()
    } catch (err) {
      stream.abort(err as Error)
    }
  }, { maxInboundStreams: 8, maxOutboundStreams: 8 })
}

/** Pulls `root` as one CAR from the peer at `addr` and stores it */
export async function pullCar (node: CarNode, addr: Multiaddr, root: CID, options: AbortOptions = {}): Promise<CarTransfer> {
  const stream = await node.libp2p.dialProtocol(addr, CAR_PULL_PROTOCOL, options)
  try {
    const request = root.bytes
    await send(stream, new Uint8ArrayList(lengthPrefix(request.byteLength), request), options)
    await stream.close(options)
    return await readCar(stream, node.blockstore, new BlockVerifier(), options)
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

/** Pushes `root` as one CAR to the peer at `addr`; resolves once the peer has stored it */
export async function pushCar (node: CarNode, addr: Multiaddr, root: CID, options: AbortOptions = {}): Promise<CarTransfer> {
  const stream = await node.libp2p.dialProtocol(addr, CAR_PUSH_PROTOCOL, options)
  try {
    const sent = await writeCar(stream, node.blockstore, root, { ...options, linkReader: new LinkReader({ loadCodec: node.getCodec }) })
    await stream.close(options)
    const reply = stream[Symbol.asyncIterator]()
    const ack = await reply.next()
    await reply.return?.()
    const chunk = ack.done === true ? undefined : ack.value
    if (chunk == null || chunk.byteLength === 0 || (chunk instanceof Uint8Array ? chunk[0] : chunk.get(0)) !== 1) {
      throw new Error('the receiver did not acknowledge the CAR')
    }
    return sent
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}
