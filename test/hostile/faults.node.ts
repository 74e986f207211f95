/**
 * Faults: connections that drop mid-transfer (then a retry that resends
 * next to nothing) and blockstores that fail. The side whose store failed
 * ends with a BlockstoreError, the other side with a typed error, and every
 * store holds only whole, verified blocks of the DAG.
 */

import { expect } from 'aegir/chai'
import { BlockstoreError, RemoteError } from '../../src/index.ts'
import { heldOf, putBlocks, totalBytes } from '../fixtures/dags.ts'
import { FailingGetBlockstore, FailingPutBlockstore, KiB, bigTree, createNode, expectNoSessions, expectOnlyVerifiedDagBlocks, expectTyped, failOnUnhandledRejections, rejection, snapshot } from './helpers.ts'
import type { BuiltDag } from './helpers.ts'
import type { Block } from '../fixtures/dag.ts'
import type { TestNode } from '../fixtures/nodes.ts'

/** Allowed resend on a retry: 5 % over what was missing */
const RESEND_FACTOR = 1.05

/** Measured numbers, printed once at the end for the README */
const measured: Record<string, string> = {}

describe('faults', function () {
  this.timeout(60_000)
  failOnUnhandledRejections()

  const nodes: TestNode[] = []
  async function node (options: Parameters<typeof createNode>[0] = {}): Promise<TestNode> {
    const created = await createNode(options)
    nodes.push(created)
    return created
  }

  afterEach(async () => {
    await Promise.all(nodes.splice(0).map(async n => n.stop()))
  })

  after(() => {
    if (Object.keys(measured).length > 0) {
      // eslint-disable-next-line no-console
      console.info('      faults, measured:', measured)
    }
  })

  /** Drops every connection between two nodes at once, as a network failure would (no graceful close) */
  function dropConnections (from: TestNode, to: TestNode): void {
    for (const connection of from.libp2p.getConnections(to.libp2p.peerId)) {
      connection.abort(new Error('the network dropped the connection'))
    }
  }

  async function missingOf (store: TestNode['blockstore'], dag: BuiltDag): Promise<Block[]> {
    const held = new Set(await heldOf(store, dag.blocks))
    return dag.blocks.filter(block => !held.has(block.cid.toString()))
  }

  describe('a connection that drops mid-transfer, then a retry', () => {
    let dag: BuiltDag

    before(async () => {
      // 4 MiB in 256 leaves of 16 KiB under 16 + 1 dag-cbor nodes: 273 blocks
      dag = await bigTree(256, 16 * KiB, 16, 'faults/drop')
    })

    it(`a pull cut at about half resumes: the retry receives at most ${RESEND_FACTOR} × the missing bytes`, async () => {
      const server = await node()
      const client = await node()
      await putBlocks(server.blockstore, dag.blocks)
      let stored = 0
      const half = Math.floor(dag.blocks.length / 2)

      const err = await rejection(client.carMirror.pull(server.libp2p.getMultiaddrs(), dag.root, {
        signal: AbortSignal.timeout(20_000),
        onProgress: (event) => {
          if (event.type === 'car-mirror:block:received' && event.detail.outcome === 'stored' && ++stored === half) {
            dropConnections(client, server)
          }
        }
      }))
      expectTyped(err)
      await expectNoSessions(client)
      await expectNoSessions(server)
      await expectOnlyVerifiedDagBlocks(client.blockstore, new Map(), dag.blocks)

      const missing = await missingOf(client.blockstore, dag)
      const missingBytes = totalBytes(missing)
      // the drop really came mid-transfer
      expect(missing.length).to.be.within(1, dag.blocks.length - half)

      const stats = await client.carMirror.pull(server.libp2p.getMultiaddrs(), dag.root, { signal: AbortSignal.timeout(20_000) })

      expect(await missingOf(client.blockstore, dag)).to.deep.equal([])
      await expectOnlyVerifiedDagBlocks(client.blockstore, new Map(), dag.blocks)
      expect(stats.blockBytesReceived).to.be.at.least(missingBytes)
      expect(stats.blockBytesReceived).to.be.at.most(RESEND_FACTOR * missingBytes)
      measured.pullRetry = `${missing.length}/${dag.blocks.length} blocks (${missingBytes} B) missing after the drop (${err.name}); retry received ${stats.blocksReceived} blocks, ${stats.blockBytesReceived} B: ratio ${(stats.blockBytesReceived / missingBytes).toFixed(4)}, ${stats.roundTrips} round trip(s)`
    })

    it(`a push cut at about half resumes: the retry sends at most ${RESEND_FACTOR} × the bytes the server misses, plus the root`, async () => {
      const server = await node({ allowPush: () => true })
      const client = await node()
      await putBlocks(client.blockstore, dag.blocks)
      let sent = 0
      const half = Math.floor(dag.blocks.length / 2)

      const err = await rejection(client.carMirror.push(server.libp2p.getMultiaddrs(), dag.root, {
        signal: AbortSignal.timeout(20_000),
        onProgress: (event) => {
          if (event.type === 'car-mirror:block:sent' && ++sent === half) {
            dropConnections(client, server)
          }
        }
      }))
      expectTyped(err)
      await expectNoSessions(client)
      await expectNoSessions(server)
      await expectOnlyVerifiedDagBlocks(server.blockstore, new Map(), dag.blocks)

      const missing = await missingOf(server.blockstore, dag)
      const missingBytes = totalBytes(missing)
      expect(missing.length).to.be.within(1, dag.blocks.length - 1)
      const rootBytes = dag.blocks[0].bytes.byteLength

      const stats = await client.carMirror.push(server.libp2p.getMultiaddrs(), dag.root, { signal: AbortSignal.timeout(20_000) })

      expect(await missingOf(server.blockstore, dag)).to.deep.equal([])
      await expectOnlyVerifiedDagBlocks(server.blockstore, new Map(), dag.blocks)
      expect(stats.blockBytesSent).to.be.at.least(missingBytes)
      expect(stats.blockBytesSent).to.be.at.most(RESEND_FACTOR * missingBytes + rootBytes)
      measured.pushRetry = `${missing.length}/${dag.blocks.length} blocks (${missingBytes} B) missing at the server after the drop (${err.name}); retry sent ${stats.blocksSent} blocks, ${stats.blockBytesSent} B: ratio ${(stats.blockBytesSent / missingBytes).toFixed(4)} (root ${rootBytes} B), ${stats.roundTrips} pass(es)`
    })
  })

  describe('blockstore errors', () => {
    let dag: BuiltDag
    const FAIL_AFTER = 10

    before(async () => {
      dag = await bigTree(48, 4 * KiB, 4, 'faults/store')
    })

    it(`a client store whose put fails after ${FAIL_AFTER} puts: the pull ends with BlockstoreError; the store holds only whole verified blocks`, async () => {
      const server = await node()
      const store = new FailingPutBlockstore(FAIL_AFTER)
      const client = await node({ blockstore: store })
      await putBlocks(server.blockstore, dag.blocks)

      const err = await rejection(client.carMirror.pull(server.libp2p.getMultiaddrs(), dag.root, { signal: AbortSignal.timeout(10_000) }))

      expectTyped(err, BlockstoreError.name)
      expect(store.puts).to.be.greaterThan(FAIL_AFTER)
      const held = await expectOnlyVerifiedDagBlocks(store, new Map(), dag.blocks)
      expect(held).to.be.at.most(FAIL_AFTER)
      await expectNoSessions(client)
      await expectNoSessions(server)
    })

    it(`a server store whose put fails after ${FAIL_AFTER} puts: the push ends with RemoteError (internal) naming the blockstore`, async () => {
      const store = new FailingPutBlockstore(FAIL_AFTER)
      const server = await node({ allowPush: () => true, blockstore: store })
      const client = await node()
      await putBlocks(client.blockstore, dag.blocks)

      const err = await rejection(client.carMirror.push(server.libp2p.getMultiaddrs(), dag.root, { signal: AbortSignal.timeout(10_000) }))

      expectTyped(err, RemoteError.name)
      expect((err as RemoteError).code).to.equal('internal')
      expect(err.message).to.match(/blockstore/i)
      const held = await expectOnlyVerifiedDagBlocks(store, new Map(), dag.blocks)
      expect(held).to.be.at.most(FAIL_AFTER)
      await expectNoSessions(client)
      await expectNoSessions(server)
    })

    it(`a server store whose get fails after ${FAIL_AFTER} reads: the pull ends with RemoteError (internal); the client holds only verified blocks`, async () => {
      const store = new FailingGetBlockstore(FAIL_AFTER)
      const server = await node({ blockstore: store })
      const client = await node()
      await putBlocks(store, dag.blocks)
      store.armed = true

      const err = await rejection(client.carMirror.pull(server.libp2p.getMultiaddrs(), dag.root, { signal: AbortSignal.timeout(10_000) }))

      expectTyped(err, RemoteError.name)
      expect((err as RemoteError).code).to.equal('internal')
      expect(err.message).to.match(/blockstore/i)
      expect(store.gets).to.be.greaterThan(FAIL_AFTER)
      const held = await expectOnlyVerifiedDagBlocks(client.blockstore, new Map(), dag.blocks)
      expect(held).to.be.below(dag.blocks.length)
      await expectNoSessions(client)
      await expectNoSessions(server)
    })

    it(`a client store whose get fails after ${FAIL_AFTER} reads: the push ends with BlockstoreError; the server holds only verified blocks`, async () => {
      const server = await node({ allowPush: () => true })
      const store = new FailingGetBlockstore(FAIL_AFTER)
      const client = await node({ blockstore: store })
      await putBlocks(store, dag.blocks)
      store.armed = true
      const before = await snapshot(server.blockstore)

      const err = await rejection(client.carMirror.push(server.libp2p.getMultiaddrs(), dag.root, { signal: AbortSignal.timeout(10_000) }))

      expectTyped(err, BlockstoreError.name)
      const held = await expectOnlyVerifiedDagBlocks(server.blockstore, before, dag.blocks)
      expect(held).to.be.below(dag.blocks.length)
      await expectNoSessions(client)
      await expectNoSessions(server)
    })
  })
})
