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
