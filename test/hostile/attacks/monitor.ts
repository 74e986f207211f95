/**
 * What the server process measures about itself between a `mark` and a
 * `report`: memory (live memory right after every full GC, from V8's GC
 * profile, and after a forced one at the report; everything, garbage included, sampled every 50 ms; peak RSS
 * from the kernel), event-loop
 * delay (perf_hooks' histogram at 10 ms resolution, and a 10 ms interval
 * probe whose late ticks are kept with their time span), garbage-collection
 * pauses (a PerformanceObserver on `gc`), and CPU time.
 *
 * A "stall" is a late tick of the probe: its time outside GC pauses,
 * scaled by the share of the tick's span during which the main thread was
 * on a CPU (its CPU time from /proc/self/task/<pid>/stat, in 10 ms clock
 * ticks). That is the time the event loop spent running JavaScript instead
 * of serving timers and I/O; time the OS gave to other processes (the
 * attackers and the honest client share the machine's cores) is not a
 * stall, and neither is a GC pause, since V8 may collect at any allocation
 * (GC pauses are reported apart, and the raw delay is bounded separately).
 * Without /proc the CPU scaling is left out.
 */

import { readFileSync, writeFileSync } from 'node:fs'
import { PerformanceObserver, monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { GCProfiler } from 'node:v8'

const PROBE_MS = 10
const SAMPLE_MS = 50
/** Late ticks kept (the latest); more than the suite's attacks produce */
const MAX_SPANS = 20_000

interface Span {
  start: number
  end: number
}

interface LateTick extends Span {
  /** Main-thread CPU time during the span, ms (Infinity when unknown) */
  cpuMs: number
}

const THREAD_STAT = `/proc/self/task/${process.pid}/stat`

/** CPU time the main thread has used, in ms (10 ms resolution), or undefined off Linux */
function mainThreadCpuMs (): number | undefined {
  try {
    const stat = readFileSync(THREAD_STAT, 'utf8')
    // fields after the command name: state is the 3rd field, utime the 14th, stime the 15th
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return undefined
  }
}

export interface MemorySnapshot {
  heapUsed: number
  external: number
  rss: number
}

export interface Measures {
  /** After a full GC at the mark */
  baseline: MemorySnapshot
  /** After a full GC at the report */
  now: MemorySnapshot
  /**
   * Highest heapUsed + external right after a full GC (V8's own, or the one
   * forced at the report): the most memory the attack made the server keep
   */
  peakLive: number
  /** Highest heapUsed + external seen, garbage included */
  peakHeapExternal: number
  peakHeapUsed: number
  /** Highest RSS: the kernel's VmHWM (reset at the mark) when readable, else the sampled peak */
  peakRss: number
  /** perf_hooks monitorEventLoopDelay max, ms (GC pauses included) */
  loopDelayMaxMs: number
  /** The probe's latest tick, ms late (GC pauses included) */
  lagMaxMs: number
  /** The longest stall: a late tick's time outside GC pauses, scaled by the main thread's share of CPU in it, ms */
  stallMaxMs: number
  /** Stalls over 100 ms */
  stallsOver100: number
  /** The five longest stalls: when they ended (ms after the mark) and how long they were (GC taken out) */
  worstStalls: Array<{ atMs: number, ms: number }>
  /**
   * The most of one stall that went to the library's own code (see
   * ./own-time.ts), scaled like the stall by the main thread's share of
   * CPU; undefined without a profile
   */
  ownStallMaxMs?: number
  /** The five stalls with the most of the library's own time: when they ended, and that time */
  worstOwnStalls?: Array<{ atMs: number, ms: number }>
  /** The three latest probe ticks: when they ended, how late they were, the main thread's CPU time and the GC pauses in them, ms */
  worstLags: Array<{ atMs: number, lagMs: number, cpuMs: number, gcMs: number }>
  gcMaxMs: number
  gcTotalMs: number
  /** CPU time of the process since the mark (all threads), ms */
  cpuMs: number
  elapsedMs: number
}

function snapshot (): MemorySnapshot {
  const { heapUsed, external, rss } = process.memoryUsage()
  return { heapUsed, external, rss }
}

/**
 * The most heap + external memory left right after any of a GC profile's
 * full (mark-compact) collections, 0 without one. Read from the collection
 * itself, not from a GC observer's callback, which runs later and counts
 * what was allocated meanwhile. Exact only when marking is atomic (the
 * server runs with --no-incremental-marking): an incremental mark keeps
 * everything allocated while it ran for that cycle
 */
function liveAfterFullGcs (profile?: GCProfile): number {
  let most = 0
  for (const gc of profile?.statistics ?? []) {
    if (gc.gcType === 'MarkSweepCompact') {
      // @types/node leaves out the fields V8 reports here
      const after = gc.afterGC.heapStatistics as unknown as { usedHeapSize: number, externalMemory: number }
      most = Math.max(most, after.usedHeapSize + after.externalMemory)
    }
  }
  return most
}

type GCProfile = ReturnType<GCProfiler['stop']>

/** Memory once garbage is collected (the process runs with --expose-gc) */
async function settled (): Promise<MemorySnapshot> {
  const gc = (globalThis as { gc?(): void }).gc
  for (let i = 0; i < 3; i++) {
    gc?.()
    await new Promise(resolve => setTimeout(resolve, 30))
  }
  return snapshot()
}

/** The process's peak resident set (bytes) from /proc, or undefined off Linux */
function kernelPeakRss (): number | undefined {
  try {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))
    return match == null ? undefined : Number(match[1]) * 1024
  } catch {
    return undefined
  }
}

function resetKernelPeakRss (): void {
  try {
    writeFileSync('/proc/self/clear_refs', '5')
  } catch {
    // not Linux, or not allowed: the sampled peak stands in
  }
}

function overlap (a: Span, b: Span): number {
  return Math.max(0, Math.min(a.end, b.end) - Math.max(a.start, b.start))
}

export class Monitor {
  private readonly histogram = monitorEventLoopDelay({ resolution: PROBE_MS })
  private late: LateTick[] = []
  private lastCpuMs = mainThreadCpuMs()
  private gcs: Span[] = []
  private lastTick = performance.now()
  private baseline = snapshot()
  private peakLive = 0
  private peakHeapExternal = 0
  private peakHeapUsed = 0
  private peakRss = 0
  private cpu = process.cpuUsage()
  private markedAt = performance.now()
  private frozen = false
  /** Records the heap after each GC, from the mark to the report */
  private gcProfiler?: GCProfiler
  private readonly timers: Array<ReturnType<typeof setInterval>> = []
  private readonly observer: PerformanceObserver

  constructor () {
    this.histogram.enable()
    this.timers.push(setInterval(() => {
      const now = performance.now()
      const cpuMs = mainThreadCpuMs()
      if (now - this.lastTick > 2 * PROBE_MS && !this.frozen) {
        this.late.push({ start: this.lastTick, end: now, cpuMs: cpuMs == null || this.lastCpuMs == null ? Infinity : cpuMs - this.lastCpuMs })
        if (this.late.length > MAX_SPANS) {
          this.late.splice(0, this.late.length - MAX_SPANS)
        }
      }
      this.lastTick = now
      this.lastCpuMs = cpuMs
    }, PROBE_MS))
    this.timers.push(setInterval(() => { this.sample() }, SAMPLE_MS))
    this.observer = new PerformanceObserver(list => {
      for (const entry of list.getEntries()) {
        this.gcs.push({ start: entry.startTime, end: entry.startTime + entry.duration })
      }
      if (this.gcs.length > 4 * MAX_SPANS) {
        this.gcs.splice(0, this.gcs.length - 4 * MAX_SPANS)
      }
    })
    this.observer.observe({ entryTypes: ['gc'] })
  }

  /** Collects garbage (the process runs with --expose-gc), then starts measuring from here */
  async mark (): Promise<void> {
    this.baseline = await settled()
    this.peakLive = this.baseline.heapUsed + this.baseline.external
    this.peakHeapExternal = this.peakLive
    this.peakHeapUsed = this.baseline.heapUsed
    this.peakRss = this.baseline.rss
    resetKernelPeakRss()
    this.histogram.reset()
    this.late = []
    this.gcs = []
    this.lastTick = performance.now()
    this.lastCpuMs = mainThreadCpuMs()
    this.markedAt = this.lastTick
    this.cpu = process.cpuUsage()
    this.frozen = false
    this.gcProfiler?.stop()
    this.gcProfiler = new GCProfiler()
    this.gcProfiler.start()
  }

  /** Stops taking late ticks (before work that is not the attack's, such as stopping a profiler) */
  freeze (): void {
    this.frozen = true
  }

  /**
   * The measures since the mark; collects garbage once the event-loop
   * figures are taken. With `ownTime` (the library's time in a span of the
   * monotonic clock, µs), each stall is also split into the library's share.
   */
  async report (ownTime?: (startUs: number, endUs: number) => number): Promise<Measures> {
    this.frozen = true
    this.sample()
    let lagMaxMs = 0
    let stallMaxMs = 0
    let stallsOver100 = 0
    const stalls: Array<{ atMs: number, ms: number }> = []
    const lags: Measures['worstLags'] = []
    const ownStalls: Array<{ atMs: number, ms: number }> = []
    // performance.now() is the monotonic clock less the time origin
    const originUs = Number(process.hrtime.bigint() / 1000n) - performance.now() * 1000
    for (const span of this.late) {
      const lag = span.end - span.start - PROBE_MS
      const gc = this.gcs.reduce((total, pause) => total + overlap(span, pause), 0)
      const outsideGc = Math.max(0, lag - gc)
      const onCpu = Math.min(1, span.cpuMs / (span.end - span.start))
      const stall = outsideGc * onCpu
      const atMs = Math.round(span.end - this.markedAt)
      if (ownTime != null) {
        ownStalls.push({ atMs, ms: Math.round(ownTime(originUs + span.start * 1000, originUs + span.end * 1000) * onCpu) })
      }
      lagMaxMs = Math.max(lagMaxMs, lag)
      stallMaxMs = Math.max(stallMaxMs, stall)
      stalls.push({ atMs, ms: Math.round(stall) })
      lags.push({ atMs, lagMs: Math.round(lag), cpuMs: span.cpuMs, gcMs: Math.round(gc) })
      if (stall > 100) {
        stallsOver100++
      }
    }
    const worstStalls = stalls.sort((a, b) => b.ms - a.ms).slice(0, 5)
    const worstOwnStalls = ownTime == null ? undefined : ownStalls.sort((a, b) => b.ms - a.ms).slice(0, 5)
    const worstLags = lags.sort((a, b) => b.lagMs - a.lagMs).slice(0, 3)
    const cpu = process.cpuUsage(this.cpu)
    const loopDelayMaxMs = this.histogram.max / 1e6
    const gcMaxMs = this.gcs.reduce((max, pause) => Math.max(max, pause.end - pause.start), 0)
    const gcTotalMs = this.gcs.reduce((total, pause) => total + pause.end - pause.start, 0)
    const elapsedMs = performance.now() - this.markedAt
    const now = await settled()
    this.peakLive = Math.max(this.peakLive, now.heapUsed + now.external, liveAfterFullGcs(this.gcProfiler?.stop()))
    this.gcProfiler = undefined
    return {
      baseline: this.baseline,
      now,
      peakLive: this.peakLive,
      peakHeapExternal: this.peakHeapExternal,
      peakHeapUsed: this.peakHeapUsed,
      peakRss: Math.max(this.peakRss, kernelPeakRss() ?? 0),
      loopDelayMaxMs,
      lagMaxMs,
      stallMaxMs,
      stallsOver100,
      worstStalls,
      ownStallMaxMs: worstOwnStalls == null ? undefined : (worstOwnStalls[0]?.ms ?? 0),
      worstOwnStalls,
      worstLags,
      gcMaxMs,
      gcTotalMs,
      cpuMs: (cpu.user + cpu.system) / 1000,
      elapsedMs
    }
  }

  stop (): void {
    this.gcProfiler?.stop()
    this.timers.forEach(timer => { clearInterval(timer) })
    this.observer.disconnect()
    this.histogram.disable()
  }

  private sample (): void {
    const { heapUsed, external, rss } = snapshot()
    this.peakHeapExternal = Math.max(this.peakHeapExternal, heapUsed + external)
    this.peakHeapUsed = Math.max(this.peakHeapUsed, heapUsed)
    this.peakRss = Math.max(this.peakRss, rss)
  }
}
