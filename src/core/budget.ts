import { LimitExceededError } from '../errors.ts'

/**
 * A node-wide allowance of something peers can make the node hold: bytes of
 * buffered frames or Bloom filters, queued CIDs, concurrent walks. Sessions
 * take from it and give back; `acquire` waits (backpressure) while it is
 * used up, `charge` fails at once.
 *
 * @example
 *
 * ```ts
 * const blooms = new Budget('bloomBytes', 64 * 1024 * 1024)
 * blooms.charge(bloom.bytes.byteLength) // throws LimitExceededError when over
 * // ... later
 * blooms.release(bloom.bytes.byteLength)
 * ```
 */
export class Budget {
  readonly name: string
  readonly limit: number
  private usedAmount = 0
  private readonly waiters: Array<() => void> = []

  constructor (name: string, limit: number) {
    this.name = name
    this.limit = limit
  }

  /** How much is taken now */
  get used (): number {
    return this.usedAmount
  }

  /** True when nothing more may be taken */
  get exhausted (): boolean {
    return this.usedAmount >= this.limit
  }

  /** Takes `amount` when it fits and returns true; otherwise takes nothing and returns false */
  tryTake (amount: number): boolean {
    if (this.usedAmount + amount > this.limit && this.usedAmount > 0) {
      return false
    }
    this.usedAmount += amount
    return true
  }

  /**
   * Takes `amount` or fails.
   *
   * @throws {LimitExceededError} when it does not fit
   */
  charge (amount: number): void {
    if (!this.tryTake(amount)) {
      throw new LimitExceededError(`The node's ${this.name} budget (${this.limit}) is used up`)
    }
  }

  /** Takes `amount` even past the limit (for what is already in memory); later takers wait */
  force (amount: number): void {
    this.usedAmount += amount
  }

  /**
   * Waits until `amount` fits, then takes it. An amount larger than the whole
   * limit is granted once nothing else is taken, so it cannot wait forever.
   */
  async acquire (amount: number, signal?: AbortSignal): Promise<void> {
    while (!this.tryTake(amount)) {
      await this.nextRelease(signal)
    }
  }

  /** Waits until the budget is no longer used up (takes nothing) */
  async whenAvailable (signal?: AbortSignal): Promise<void> {
    while (this.exhausted) {
      await this.nextRelease(signal)
    }
  }

  /** Resolves at the next `release` */
  async nextRelease (signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const index = this.waiters.indexOf(wake)
        if (index >= 0) {
          this.waiters.splice(index, 1)
        }
        reject(signal?.reason)
      }
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      this.waiters.push(wake)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Gives back `amount` and wakes every waiter to try again */
  release (amount: number): void {
    this.usedAmount = Math.max(0, this.usedAmount - amount)
    for (const wake of this.waiters.splice(0)) {
      wake()
    }
  }

  /** Runs `work` holding one unit (a concurrency slot) */
  async run<T> (work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.acquire(1, signal)
    try {
      return await work()
    } finally {
      this.release(1)
    }
  }
}

/**
 * Lets long local loops give the event loop a turn: `maybeYield()` waits for
 * a macrotask once `sliceMs` have passed since the last turn, so no loop
 * blocks timers and I/O for longer than that.
 *
 * @example
 *
 * ```ts
 * const turn = new Yielder()
 * for (const cid of many) {
 *   await turn.maybeYield(signal)
 *   check(cid)
 * }
 * ```
 */
export class Yielder {
  private readonly sliceMs: number
  private sliceStart = now()

  constructor (sliceMs = DEFAULT_SLICE_MS) {
    this.sliceMs = sliceMs
  }

  async maybeYield (signal?: AbortSignal): Promise<void> {
    if (now() - this.sliceStart < this.sliceMs) {
      return
    }
    await nextMacrotask()
    signal?.throwIfAborted()
    this.sliceStart = now()
  }
}

/** How long a local loop may run before it lets other work in (ms) */
export const DEFAULT_SLICE_MS = 10

function now (): number {
  return globalThis.performance?.now() ?? Date.now()
}

async function nextMacrotask (): Promise<void> {
  await new Promise<void>(resolve => {
    if (typeof globalThis.setImmediate === 'function') {
      globalThis.setImmediate(resolve)
    } else {
      setTimeout(resolve, 0)
    }
  })
}
