/**
 * A virtual clock for the simulation. Every delay (delivery of a chunk, a
 * slow store read) is an event at a virtual time; the run loop lets pending
 * microtasks settle (one `setImmediate`) before it fires the next event, so
 * a run is deterministic: the sessions use no real timers or I/O, only
 * promises and the occasional `setImmediate` of a long walk.
 */

interface Event {
  at: number
  seq: number
  fire(): void
}

export type RunResult = 'done' | 'stalled' | 'event-limit'

export class Scheduler {
  now = 0
  events = 0
  private readonly heap: Event[] = []
  private seq = 0

  /** Runs `fire` after `delay` virtual time units */
  at (delay: number, fire: () => void): void {
    this.push({ at: this.now + Math.max(0, delay), seq: this.seq++, fire })
  }

  async sleep (delay: number): Promise<void> {
    await new Promise<void>(resolve => { this.at(delay, resolve) })
  }

  /**
   * Fires events in time order until `finished()` holds, no event is left
   * (everything waits on something that never comes: a deadlock) or
   * `maxEvents` have fired (a livelock).
   */
  async run (finished: () => boolean, maxEvents: number): Promise<RunResult> {
    let idleTurns = 0
    while (true) {
      await new Promise(resolve => setImmediate(resolve))
      if (finished()) {
        return 'done'
      }
      const event = this.pop()
      if (event == null) {
        // a walk that gave the event loop a turn (setImmediate) is not waiting on us: give it a few
        if (++idleTurns <= 3) {
          continue
        }
        return 'stalled'
      }
      idleTurns = 0
      if (++this.events > maxEvents) {
        return 'event-limit'
      }
      this.now = event.at
      event.fire()
    }
  }

  private before (a: Event, b: Event): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq)
  }

  private push (event: Event): void {
    const heap = this.heap
    let i = heap.push(event) - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(heap[i], heap[parent])) {
        break
      }
      [heap[i], heap[parent]] = [heap[parent], heap[i]]
      i = parent
    }
  }

  private pop (): Event | undefined {
    const heap = this.heap
    const top = heap[0]
    const last = heap.pop()
    if (top == null || last == null || heap.length === 0) {
      return top
    }
    heap[0] = last
    let i = 0
    while (true) {
      const l = 2 * i + 1
      const r = l + 1
      let min = i
      if (l < heap.length && this.before(heap[l], heap[min])) {
        min = l
      }
      if (r < heap.length && this.before(heap[r], heap[min])) {
        min = r
      }
      if (min === i) {
        return top
      }
      [heap[i], heap[min]] = [heap[min], heap[i]]
      i = min
    }
  }
}
