import { createUnsafe } from 'multiformats/block'
import { readBlock } from './core/blocks.ts'
import { cidKey } from './core/cid-key.ts'
import { Wakeup } from './core/signal.ts'
import { walkDag } from './core/walk.ts'
import { BlockNotFoundError } from './errors.ts'
import type { CarMirrorBlockBroker } from './broker.ts'
import type { ReceiverSession } from './core/receiver.ts'
import type { AddOptions, GraphNode, GraphWalkerComponents, GraphWalkerFactory, Pins, WalkOptions } from '@helia/interface'
import type { Logger } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'

/** Marks a `pins.add` that already pulls as it pins */
const PULLS_FIRST = Symbol.for('helia-car-mirror/pulls-first')

/**
 * Makes `pins.add(root)` (a whole DAG: no `depth` limit, no `walker` of its
 * own) fetch the DAG with one CAR Mirror pull, and pin each block as it
 * arrives instead of after a second walk: Helia's pinning runs with a graph
 * walker that yields the blocks of the pull in the order they are verified,
 * then the blocks the store held already. When the pull fails (no provider
 * speaks CAR Mirror, one lacks blocks), the walker goes on with a walk of the
 * DAG through the node's blockstore, whose block brokers fetch what is still
 * missing (a block pinned twice is counted once by Helia).
 *
 * @example
 *
 * ```ts
 * pullBeforePinning(helia.pins, mirror.broker, log)
 * for await (const cid of helia.pins.add(root)) {} // one pull, pinned as it arrives
 * ```
 */
export function pullBeforePinning (pins: Pins, broker: Pick<CarMirrorBlockBroker, 'pullDag'>, log: Logger): void {
  const patched = pins as Pins & { [PULLS_FIRST]?: boolean }
  if (patched[PULLS_FIRST] === true) {
    return
  }
  const add = pins.add.bind(pins)
  patched.add = async function * (cid: CID, options: AddOptions = {}) {
    const whole = options.depth == null || options.depth === Infinity
    const offline = (options as { offline?: boolean }).offline === true
    if (whole && !offline && options.walker == null && !await pins.isPinned(cid, options)) {
      yield * add(cid, { ...options, walker: arrivalWalker(broker, log) })
      return
    }
    yield * add(cid, options)
  }
  patched[PULLS_FIRST] = true
}

/**
 * A Helia graph walker over a CAR Mirror pull of the DAG: blocks in the
 * order the pull stores them, then the ones the store held already (which
 * the pull's receivers found), each once. Only the CIDs wait in memory: a
 * block is read back from the store when it is yielded.
 */
function arrivalWalker (broker: Pick<CarMirrorBlockBroker, 'pullDag'>, log: Logger): GraphWalkerFactory {
  return (components: GraphWalkerComponents) => ({
    async * walk <T> (root: CID, options: WalkOptions<T> = {}): AsyncGenerator<GraphNode<T>> {
      const arrived: CID[] = []
      const receivers: ReceiverSession[] = []
      const wakeup = new Wakeup()
      let ended = false
      let failure: Error | undefined
      broker.pullDag(root, {
        signal: options.signal,
        onBlockStored: (cid) => {
          arrived.push(cid)
          wakeup.notify()
        },
        onReceiver: (receiver) => { receivers.push(receiver) }
      }).catch((err: Error) => { failure = err }).finally(() => {
        ended = true
        wakeup.notify()
      })

      const yielded = new Set<string>()
      const node = async (cid: CID, read?: Uint8Array): Promise<GraphNode<T>> => {
        yielded.add(cidKey(cid))
        while (true) {
          try {
            const bytes = read ?? await readBlock(components.blockstore, cid, { signal: options.signal, offline: true })
            const codec = await components.getCodec(cid.code)
            return { block: createUnsafe({ cid, bytes, codec }) as GraphNode<T>['block'], depth: 0, path: [cid] }
          } catch (err) {
            // its write began when it was verified: wait for the next block (or the end), by which it is written
            if ((err as Error).name !== BlockNotFoundError.name || ended) {
              throw err
            }
            await wakeup.wait(options.signal)
          }
        }
      }

      while (true) {
        const next = arrived.shift()
        if (next != null) {
          yield await node(next)
          continue
        }
        if (ended) {
          break
        }
        await wakeup.wait(options.signal)
      }
      if (failure != null) {
        options.signal?.throwIfAborted()
        log('pins.add(%s): the CAR Mirror pull failed, walking the DAG through the block brokers - %e', root, failure)
        for await (const block of walkDag(components.blockstore, [root], { signal: options.signal })) {
          if (!yielded.has(cidKey(block.cid))) {
            // the walk has read it already
            yield await node(block.cid, block.bytes)
          }
        }
        return
      }
      for (const receiver of receivers) {
        for (const cid of receiver.frontier.foundHeld()) {
          if (!yielded.has(cidKey(cid))) {
            yield await node(cid)
          }
        }
      }
    }
  })
}
