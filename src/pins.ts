import type { CarMirrorBlockBroker } from './broker.ts'
import type { AddOptions, Pins } from '@helia/interface'
import type { Logger } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'

/** Marks a `pins.add` that already pulls before it pins */
const PULLS_FIRST = Symbol.for('helia-car-mirror/pulls-first')

/**
 * Makes `pins.add(root)` (a whole DAG: no `depth` limit) pull the DAG with
 * one CAR Mirror pull before Helia's walk pins it, so the walk reads the
 * local store instead of asking a broker block by block. A pull that fails
 * (no provider speaks CAR Mirror, one lacks blocks) is logged, and the walk
 * fetches what is still missing through the node's block brokers as before.
 *
 * @example
 *
 * ```ts
 * pullBeforePinning(helia.pins, mirror.broker, log)
 * for await (const cid of helia.pins.add(root)) {} // one pull, then a local walk
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
    if (whole && !offline && !await pins.isPinned(cid, options)) {
      try {
        await broker.pullDag(cid, { signal: options.signal })
      } catch (err) {
        options.signal?.throwIfAborted()
        log('pins.add(%s): the CAR Mirror pull failed, the walk fetches what is missing - %e', cid, err)
      }
    }
    yield * add(cid, options)
  }
  patched[PULLS_FIRST] = true
}
