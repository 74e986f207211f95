/**
 * Progress of one transfer on stderr: a bar redrawn in place on a terminal,
 * or a plain line at most twice a second elsewhere (with `--progress`).
 */

/** Where progress goes: a writable with an optional terminal flag */
export interface ProgressOutput {
  write(text: string): unknown
  isTTY?: boolean
}

/** What a transfer has moved so far, and what it will move when known */
export interface ProgressState {
  blocks: number
  bytes: number
  elapsedMs: number
  /** Blocks of the whole DAG, when known (a push walks its DAG first) */
  totalBlocks?: number
  /** Block bytes of the whole DAG, when known */
  totalBytes?: number
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

/**
 * A byte count for people: 1023 B, 1.5 KiB, 23.4 MiB
 *
 * @example
 *
 * ```ts
 * formatBytes(1536) // '1.5 KiB'
 * ```
 */
export function formatBytes (bytes: number): string {
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`
}

/** A duration for people: 45s, 3m05s, 1h02m */
export function formatDuration (ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000))
  if (seconds < 60) {
    return `${seconds}s`
  }
  const minutes = Math.floor(seconds / 60)
  if (minutes < 60) {
    return `${minutes}m${String(seconds % 60).padStart(2, '0')}s`
  }
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`
}

/**
 * One line of progress: a bar when the total is known, then blocks, bytes,
 * rate and (with a total) the time left at the rate so far. A push may end
 * before its total when the peer already holds part of the DAG.
 *
 * @example
 *
 * ```ts
 * formatProgress('push', { blocks: 50, bytes: 1048576, elapsedMs: 1000, totalBlocks: 100, totalBytes: 2097152 })
 * // 'push [##########----------]  50%  50/100 blocks  1.0/2.0 MiB  1.0 MiB/s  ETA 1s'
 * ```
 */
export function formatProgress (label: string, state: ProgressState, width = 20): string {
  const rate = state.elapsedMs > 0 ? state.bytes / (state.elapsedMs / 1000) : 0
  const parts = [label]
  if (state.totalBytes != null && state.totalBytes > 0) {
    const fraction = Math.min(1, state.bytes / state.totalBytes)
    const filled = Math.round(fraction * width)
    parts.push(`[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}%`)
  }
  parts.push(state.totalBlocks != null ? `${state.blocks}/${state.totalBlocks} blocks` : `${state.blocks} blocks`)
  if (state.totalBytes != null) {
    const [done, total] = formatBytes(state.totalBytes).split(' ')
    const scale = 1024 ** UNITS.indexOf(total)
    parts.push(scale === 1 ? `${state.bytes}/${done} B` : `${(state.bytes / scale).toFixed(1)}/${done} ${total}`)
  } else {
    parts.push(formatBytes(state.bytes))
  }
  parts.push(`${formatBytes(Math.round(rate))}/s`)
  // the rate of the first second says little about the rest
  if (state.totalBytes != null && rate > 0 && state.elapsedMs >= 1000) {
    parts.push(`ETA ${formatDuration(Math.max(0, state.totalBytes - state.bytes) / rate * 1000)}`)
  }
  return `${label} ${parts.slice(1).join('  ')}`
}

/**
 * Whether a {@link ProgressBar} on `output` draws anything: on a terminal,
 * or anywhere when `always` is set
 *
 * @example
 *
 * ```ts
 * progressShown(process.stderr, false) // true on a terminal
 * ```
 */
export function progressShown (output: ProgressOutput, always = false): boolean {
  return output.isTTY === true || always
}

/**
 * Draws the progress of one transfer. On a terminal the line is redrawn in
 * place (at most ten times a second); elsewhere, when `always` is set, a
 * line is written at most every 500 ms; otherwise nothing is written.
 */
export class ProgressBar {
  private readonly state: ProgressState = { blocks: 0, bytes: 0, elapsedMs: 0 }
  private readonly started = Date.now()
  private lastDraw = 0
  private readonly interval: number
  private readonly enabled: boolean

  private readonly output: ProgressOutput
  private readonly label: string

  constructor (output: ProgressOutput, label: string, options: { always?: boolean, totalBlocks?: number, totalBytes?: number } = {}) {
    this.output = output
    this.label = label
    this.enabled = progressShown(output, options.always)
    this.interval = output.isTTY === true ? 100 : 500
    this.state.totalBlocks = options.totalBlocks
    this.state.totalBytes = options.totalBytes
  }

  /** Counts one block of `bytes` bytes */
  block (bytes: number): void {
    this.state.blocks++
    this.state.bytes += bytes
    const now = Date.now()
    if (this.enabled && (this.state.blocks === 1 || now - this.lastDraw >= this.interval)) {
      this.draw(now)
    }
  }

  /** Draws the last state and ends the line */
  finish (): void {
    if (!this.enabled) {
      return
    }
    this.draw(Date.now())
    if (this.output.isTTY === true) {
      this.output.write('\n')
    }
  }

  private draw (now: number): void {
    this.lastDraw = now
    this.state.elapsedMs = now - this.started
    const line = formatProgress(this.label, this.state)
    if (this.output.isTTY === true) {
      this.output.write(`\r\x1b[2K${line}`)
    } else {
      this.output.write(`${line}\n`)
    }
  }
}
