/**
 * A level-triggered wake-up: `wait()` resolves once `notify()` has been called
 * since the previous `wait()` resolved, or when the signal aborts.
 */
export class Wakeup {
  private pending = false
  private resolve?: () => void

  /** Wakes the current waiter, or the next one to wait */
  notify (): void {
    this.pending = true
    this.resolve?.()
  }

  /** Resolves once `notify()` has been called since the last wait resolved; rejects when `signal` aborts */
  async wait (signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    if (!this.pending) {
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => { reject(signal?.reason) }
        this.resolve = () => {
          signal?.removeEventListener('abort', onAbort)
          resolve()
        }
        signal?.addEventListener('abort', onAbort, { once: true })
      })
      this.resolve = undefined
    }
    this.pending = false
  }
}

/**
 * `work`, or a rejection with the signal's reason once `signal` aborts: the
 * work itself goes on (others may share it), only this wait ends
 *
 * @example
 *
 * ```ts
 * const bloom = await untilAborted(sharedListing, AbortSignal.timeout(1000))
 * ```
 */
export async function untilAborted<T> (work: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (signal == null) {
    return work
  }
  signal.throwIfAborted()
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(resolve, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
  })
}
