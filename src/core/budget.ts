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
  /** What the budget counts, as named in errors (for example `bloomBytes`) */
  readonly name: string
  /** The most that may be taken, in the budget's unit (bytes, CIDs or slots) */
  readonly limit: number
  private usedAmount = 0
  private peakAmount = 0
  private readonly waiters: Array<() => void> = []
  /** Takers let through one per macrotask by `whenAvailableInTurn` */
  private readonly turns: Array<() => void> = []
  private turnScheduled = false
  /**
   * Called whenever a taker starts waiting: the node may free what stalled
   * sessions hold (see CarMirror's eviction)
   */
  onShort?: (budget: Budget) => void

  constructor (name: string, limit: number) {
    this.name = name
    this.limit = limit
  }

  /** How much is taken now */
  get used (): number {
    return this.usedAmount
  }

  /** The most ever taken at once since the budget was made */
  get peak (): number {
    return this.peakAmount
  }

  /** True when nothing more may be taken */
  get exhausted (): boolean {
    return this.usedAmount >= this.limit
  }

  /**
   * True when `amount` may be taken now: it fits under the limit, or
   * nothing is taken (an amount larger than the whole limit must not wait forever)
   */
  fits (amount: number): boolean {
    return this.used + amount <= this.limit || this.used <= 0
  }

  /** Takes `amount` when it fits and returns true; otherwise takes nothing and returns false */
  tryTake (amount: number): boolean {
    if (!this.fits(amount)) {
      return false
    }
    this.add(amount)
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
    this.add(amount)
  }

  private add (amount: number): void {
    this.usedAmount += amount
    this.peakAmount = Math.max(this.peakAmount, this.usedAmount)
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

  /**
   * Waits until the budget is no longer used up, then for a turn: waiters get
   * one turn per macrotask, first come first served, and each only while the
   * budget still has room (it waits again otherwise). Paused streams resume
   * one at a time this way, so the frames each one had buffered are counted
   * before the next resumes, instead of all of them overshooting at once.
   */
  async whenAvailableInTurn (): Promise<void> {
    while (true) {
      await this.whenAvailable()
      await new Promise<void>(resolve => {
        this.turns.push(resolve)
        this.scheduleTurn()
      })
      if (!this.exhausted) {
        return
      }
    }
  }

  private scheduleTurn (): void {
    if (this.turnScheduled) {
      return
    }
    this.turnScheduled = true
    nextMacrotask(() => {
      this.turnScheduled = false
      this.turns.shift()?.()
      if (this.turns.length > 0) {
        this.scheduleTurn()
      }
    })
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
      this.onShort?.(this)
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
 * One session's share of a node-wide budget: it takes from and gives back
 * to the node's budget (same limit, same waiters) and counts what this
 * session holds, so the node can tell which session to evict for it.
 *
 * @example
 *
 * ```ts
 * const mine = new BudgetShare(node.queuedWants)
 * mine.force(100)
 * mine.held // 100, and node.queuedWants.used went up by 100
 * ```
 */
export class BudgetShare extends Budget {
  /** The node-wide budget this share takes from and gives back to */
  readonly node: Budget
  /** What this session holds of the node's budget */
  held = 0

  constructor (node: Budget) {
    super(node.name, node.limit)
    this.node = node
  }

  override get used (): number {
    return this.node.used
  }

  override get peak (): number {
    return this.node.peak
  }

  override get exhausted (): boolean {
    return this.node.exhausted
  }

  override tryTake (amount: number): boolean {
    if (!this.node.tryTake(amount)) {
      return false
    }
    this.held += amount
    return true
  }

  override force (amount: number): void {
    this.node.force(amount)
    this.held += amount
  }

  override async nextRelease (signal?: AbortSignal): Promise<void> {
    await this.node.nextRelease(signal)
  }

  override release (amount: number): void {
    const given = Math.min(amount, this.held)
    this.held -= given
    this.node.release(given)
  }
}

/**
 * Lets long local loops give the event loop a turn: `maybeYield()` waits
 * once the node's local loops together have run `sliceMs` in the current
 * turn of the event loop. The clock is node-wide, so a hundred sessions
 * woken by one event (a budget release, a burst of frames) share one slice
 * instead of taking one each. Waiting loops resume one per turn of the
 * event loop, in the order they started waiting, each with a fresh slice,
 * so timers and I/O run between slices and every loop gets its share.
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

  constructor (sliceMs = DEFAULT_SLICE_MS) {
    this.sliceMs = sliceMs
  }

  /**
   * Returns at once while the current slice lasts; otherwise waits for this
   * loop's turn in a later turn of the event loop, then throws the signal's
   * reason if `signal` was aborted meanwhile
   */
  async maybeYield (signal?: AbortSignal): Promise<void> {
    if (!this.due) {
      return
    }
    await nextTurn()
    signal?.throwIfAborted()
  }

  /**
   * True once the current slice is over, when `maybeYield()` would wait. A
   * loop of many short steps asks this first and awaits `maybeYield()` only
   * then, saving a promise per step:
   *
   * @example
   *
   * ```ts
   * if (turn.due) {
   *   await turn.maybeYield(signal)
   * }
   * ```
   */
  get due (): boolean {
    return now() - turnStarted() >= this.sliceMs
  }
}

/** When the current slice started */
let clockStart = 0
/** True while a slice runs: from its start until a tick ends it */
let clockRunning = false
/**
 * True when the running slice belongs to a turn that a tick has closed:
 * the next tick ends it. False for a slice that loops started after the
 * latest tick (in this turn's timers or I/O callbacks)
 */
let sliceClosed = false
/** True while a tick is scheduled */
let tickScheduled = false

/**
 * The start of the current slice, starting one if none runs. Every local
 * loop that runs before the slice ends (woken by any number of timers, I/O
 * callbacks or immediates) shares it.
 */
function turnStarted (): number {
  if (!clockRunning) {
    clockRunning = true
    clockStart = now()
    sliceClosed = false
    scheduleTick()
  }
  return clockStart
}

/** Loops waiting for a turn, in the order they yielded */
const waiting: Array<() => void> = []

function scheduleTick (): void {
  if (!tickScheduled) {
    tickScheduled = true
    nextMacrotask(tick)
  }
}

/**
 * Once per turn of the event loop (an immediate) while local loops run or
 * wait: the slice of the turn before ends, and the first waiting loop
 * resumes, with a fresh slice the rest of this turn shares. A slice that
 * loops started in this turn's timers or I/O callbacks is not replaced: it
 * runs on (the resumed loop takes at least one step in it) and the next
 * tick ends it, so a turn runs at most one slice of local loops.
 */
function tick (): void {
  tickScheduled = false
  if (sliceClosed) {
    clockRunning = false
  }
  const resume = waiting.shift()
  if (resume != null) {
    turnStarted()
  }
  sliceClosed = true
  resume?.()
  if (clockRunning || waiting.length > 0) {
    scheduleTick()
  }
}

/** Waits for this loop's turn: one loop resumes per turn of the event loop */
async function nextTurn (): Promise<void> {
  await new Promise<void>(resolve => {
    waiting.push(resolve)
    scheduleTick()
  })
}

/** How long a local loop may run before it lets other work in (ms) */
export const DEFAULT_SLICE_MS = 10

function now (): number {
  return globalThis.performance?.now() ?? Date.now()
}

function nextMacrotask (callback: () => void): void {
  if (typeof globalThis.setImmediate === 'function') {
    globalThis.setImmediate(callback)
  } else {
    setTimeout(callback, 0)
  }
}
