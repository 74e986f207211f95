import { peerIdFromCID } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { hasBlock, readBlock } from './core/blocks.ts'
import { cidKey } from './core/cid-key.ts'
import { FetchPlanner } from './core/fetch-plan.ts'
import { untilAborted } from './core/signal.ts'
import { BlockNotFoundError, LimitExceededError } from './errors.ts'
import type { BrokerPullOptions } from './car-mirror.ts'
import type { BlockSource } from './core/blocks.ts'
import type { FetchPlan } from './core/fetch-plan.ts'
import type { ReceiverSession } from './core/receiver.ts'
import type { BrokerStats, PeerTarget, TransferStats } from './index.ts'
import type { BlockRetrievalOptions, CreateSessionOptions, ProviderOptions, SessionBlockBroker } from '@helia/interface'
import type { AbortOptions, Logger } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** What the broker needs of the CAR Mirror service: pulls it can follow */
export interface BrokerHost {
  /** Pulls the DAGs under `roots` (the broker passes its own options) */
  pull(roots: CID | CID[], options?: BrokerPullOptions): Promise<TransferStats>
}

/** Options of the block broker */
export interface CarMirrorBlockBrokerInit {
  /**
   * Most roots one pull names
   *
   * @default 1000
   */
  maxRoots?: number
  /** Where the broker logs its pulls */
  log: Logger
}

/** What a caller of `pullDag` may follow of the pull */
export interface PullTaps {
  /** Each receiver the pull creates (one per provider tried) */
  onReceiver?(receiver: ReceiverSession): void
  /** Each block the pull verified, as its write begins */
  onBlockStored?(cid: CID): void
}

/** A pull the broker started, as retrieves that may join it see it */
interface BrokerPull {
  /** Keys of its roots */
  roots: Set<string>
  shallow: boolean
  /** The roots' keys in order, and shallowness: two plans with the same signature are the same pull */
  signature: string
  /** Its receiver once it has one: its wants are the blocks on their way */
  receiver?: ReceiverSession
  /** Settles (never rejects) when the pull has ended */
  ended: Promise<void>
}

/** A block some retrieve waits for */
class Delivery {
  readonly promise: Promise<Uint8Array>
  resolve!: (bytes: Uint8Array) => void
  reject!: (err: Error) => void

  constructor () {
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
    // a delivery whose retrieves were all aborted must not be an unhandled rejection
    this.promise.catch(() => {})
  }

  async wait (signal?: AbortSignal): Promise<Uint8Array> {
    return untilAborted(this.promise, signal)
  }
}

/**
 * Helia's block broker `car-mirror`: a block Helia asks for is fetched with
 * a CAR Mirror pull from a provider (the call's `providers`, connected peers
 * that speak CAR Mirror, then routing), following the {@link FetchPlanner}'s
 * policy: whole subgraphs where the caller will read them all, single blocks
 * where it may follow one path. A block that a pull under way will bring is
 * awaited, not asked for again. `withCarMirror` adds it to the node.
 *
 * @example
 *
 * ```ts
 * const helia = withCarMirror(createHelia()) // adds the broker
 * await helia.start()
 * await helia.libp2p.dial(server)
 * for await (const chunk of unixfs(helia).cat(cid)) { ... } // blocks come over CAR Mirror
 * ```
 */
export class CarMirrorBlockBroker implements SessionBlockBroker {
  readonly name = 'car-mirror'
  /** What the broker has done since the node started */
  readonly stats: BrokerStats = { retrieves: 0, pulls: 0, shallowPulls: 0, joined: 0, blocksReceived: 0, blockBytesReceived: 0, bytesReceived: 0, failures: 0 }
  private readonly host: BrokerHost
  private readonly blockstore: BlockSource
  private readonly log: Logger
  private readonly planner: FetchPlanner
  private readonly deliveries = new Map<string, Delivery>()
  private readonly active = new Set<BrokerPull>()
  private readonly sessionProviders: PeerTarget[]

  constructor (host: BrokerHost, blockstore: BlockSource, init: CarMirrorBlockBrokerInit, sessionProviders: PeerTarget[] = [], shared?: CarMirrorBlockBroker) {
    this.host = host
    this.blockstore = blockstore
    this.log = init.log
    this.sessionProviders = sessionProviders
    // a session shares its broker's pulls, deliveries, policy and counters
    this.planner = shared?.planner ?? new FetchPlanner({ maxRoots: init.maxRoots })
    this.deliveries = shared?.deliveries ?? this.deliveries
    this.active = shared?.active ?? this.active
    this.stats = shared?.stats ?? this.stats
  }

  /**
   * Fetches one block (and, by the policy, what the caller will want next).
   *
   * @throws {NoProviderError} when no provider that speaks CAR Mirror serves it
   * @throws {BlocksNotAvailableError} when the provider lacks it
   */
  async retrieve (cid: CID, options: BlockRetrievalOptions = {}): Promise<Uint8Array> {
    this.stats.retrieves++
    const key = cidKey(cid)
    let delivery = this.deliveries.get(key)
    if (delivery == null) {
      const fresh = new Delivery()
      delivery = fresh
      this.deliveries.set(key, fresh)
      this.fetch(cid, key, fresh, [...this.sessionProviders, ...providerTargets(options)]).catch(err => {
        if (this.deliveries.get(key) === fresh) {
          this.deliveries.delete(key)
        }
        fresh.reject(err)
      })
    } else {
      this.stats.joined++
    }
    const bytes = await delivery.wait(options.signal)
    if (options.maxSize != null && bytes.byteLength > options.maxSize) {
      throw new LimitExceededError(`Block ${cid} has ${bytes.byteLength} bytes, more than the ${options.maxSize} asked for`)
    }
    await options.validateFn?.(bytes)
    return bytes
  }

  /** A session of Helia's `blockstore.createSession(root)`: the same broker, with the session's providers first */
  createSession (options: CreateSessionOptions = {}): SessionBlockBroker {
    const providers = providerTargets(options)
    const session = new CarMirrorBlockBroker(this.host, this.blockstore, { log: this.log }, providers, this)
    return session
  }

  /** Adds a provider that this session's retrieves try first */
  async addPeer (peer: CID | Multiaddr | Multiaddr[], options?: AbortOptions): Promise<void> {
    options?.signal?.throwIfAborted()
    this.sessionProviders.push(...providerTargets({ providers: [peer] }))
  }

  /**
   * Pulls the whole DAG under `root` as one broker pull, which retrieves of
   * its blocks join (what `pins.add(root)` runs before it walks)
   */
  async pullDag (root: CID, options: AbortOptions & PullTaps = {}): Promise<void> {
    await this.run({ roots: [root], shallow: false }, [...this.sessionProviders], undefined, options.signal, options)
  }

  /** Gets the block to `delivery`: from the store, from a pull under way, or from a new pull */
  private async fetch (cid: CID, key: string, delivery: Delivery, providers: PeerTarget[]): Promise<void> {
    while (true) {
      if (await hasBlock(this.blockstore, cid, { offline: true })) {
        this.deliver(key, await readBlock(this.blockstore, cid, { offline: true }))
        return
      }
      let carrier = this.carrierOf(cid, key)
      if (carrier == null) {
        const plan = this.planner.plan(cid)
        carrier = this.sameAs(plan)
        if (carrier == null) {
          await this.run(plan, providers)
          if (this.deliveries.get(key) === delivery) {
            throw new BlockNotFoundError(`A pull of ${plan.roots[0]} ended without ${cid}`)
          }
          return
        }
      }
      this.stats.joined++
      await carrier.ended
      if (this.deliveries.get(key) !== delivery) {
        return
      }
    }
  }

  /** A pull under way that will bring `cid`: it is one of its roots, or one of its receiver's wants */
  private carrierOf (cid: CID, key: string): BrokerPull | undefined {
    for (const pull of this.active) {
      if (pull.roots.has(key) || pull.receiver?.frontier.isWanted(cid) === true) {
        return pull
      }
    }
    return undefined
  }

  /** A pull under way (or about to start) for exactly this plan */
  private sameAs (plan: FetchPlan): BrokerPull | undefined {
    const signature = signatureOf(plan)
    for (const pull of this.active) {
      if (pull.signature === signature) {
        return pull
      }
    }
    return undefined
  }

  /**
   * Runs the pull `plan` describes; a block a caller asked for is delivered
   * as soon as it is verified. Follow-up pulls (a file's subgraph) start once
   * this one has ended, so their receivers find its blocks in the store.
   */
  private async run (plan: FetchPlan, providers: PeerTarget[], after?: Promise<void>, signal?: AbortSignal, taps: PullTaps = {}): Promise<void> {
    let end!: () => void
    const pull: BrokerPull = {
      roots: new Set(plan.roots.map(cidKey)),
      shallow: plan.shallow,
      signature: signatureOf(plan),
      ended: new Promise(resolve => { end = resolve })
    }
    this.active.add(pull)
    this.stats.pulls++
    if (plan.shallow) {
      this.stats.shallowPulls++
    }
    try {
      await after
      this.log('broker pull of %s (%d roots, %s)', plan.roots[0], plan.roots.length, plan.shallow ? 'shallow' : 'whole')
      const stats = await this.host.pull(plan.roots, {
        providers,
        shallow: plan.shallow,
        signal,
        onReceiver: receiver => {
          pull.receiver = receiver
          taps.onReceiver?.(receiver)
        },
        onBlockStored: (cid, bytes) => {
          this.stored(cid, bytes, pull, providers)
          taps.onBlockStored?.(cid)
        }
      })
      this.stats.bytesReceived += stats.bytesReceived
    } catch (err) {
      this.stats.failures++
      this.log('broker pull of %s failed - %e', plan.roots[0], err)
      throw err
    } finally {
      this.active.delete(pull)
      end()
    }
  }

  /** A pull stored a block: hand it to whoever waits, and let the policy see what it is */
  private stored (cid: CID, bytes: Uint8Array, pull: BrokerPull, providers: PeerTarget[]): void {
    const key = cidKey(cid)
    const asked = this.deliveries.has(key)
    this.stats.blocksReceived++
    this.stats.blockBytesReceived += bytes.byteLength
    if (pull.shallow) {
      const next = this.planner.learn(cid, bytes, asked)
      if (next != null && this.sameAs(next) == null) {
        this.run(next, providers, pull.ended).catch(() => {
          // retrieves of its blocks re-plan when it ends without them
        })
      }
    }
    this.deliver(key, bytes)
  }

  private deliver (key: string, bytes: Uint8Array): void {
    const delivery = this.deliveries.get(key)
    if (delivery != null) {
      this.deliveries.delete(key)
      delivery.resolve(bytes)
    }
  }
}

/** Helia's `providers` (peer ids as CIDs, or addresses) as CAR Mirror's peer targets */
function providerTargets (options: ProviderOptions): PeerTarget[] {
  return (options.providers ?? []).map(provider => {
    const cid = CID.asCID(provider)
    return cid != null ? peerIdFromCID(cid) : provider as Multiaddr | Multiaddr[]
  })
}

function signatureOf (plan: FetchPlan): string {
  return `${plan.shallow ? 's' : 'w'}:${plan.roots.map(cidKey).join(',')}`
}
