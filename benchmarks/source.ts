/**
 * Which source a benchmark run measured: the commit, and whether src/ had
 * uncommitted changes (a worker loads src/ when it starts)
 */

import { execFileSync } from 'node:child_process'
import os from 'node:os'
import { relative } from 'node:path'
import { fileURLToPath } from 'node:url'

export interface SourceVersion {
  /** The short commit hash; undefined outside a git checkout */
  commit?: string
  /** True when src/ differs from the commit */
  srcDirty: boolean
}

/**
 * Reads the checkout at `cwd` (default: the current directory)
 *
 * @example
 *
 * ```ts
 * const { commit, srcDirty } = sourceVersion()
 * ```
 */
export function sourceVersion (cwd?: string): SourceVersion {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8' }).trim()
    const srcDirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd, encoding: 'utf8' }).trim().length > 0
    return { commit, srcDirty }
  } catch {
    return { srcDirty: false }
  }
}

/** Where a benchmark ran: the command line, the source measured and the machine */
export interface RunContext {
  /** The command as typed (with the npm script that ran it, if one did) */
  command: string
  /** The commit measured, and whether src/ had changes */
  source: string
  machine: { cpu: string, cores: number, memoryGiB: number, node: string, platform: string }
}

/**
 * The context of a run of the runner at `runnerUrl` (its `import.meta.url`)
 *
 * @example
 *
 * ```ts
 * const { command, source, machine } = runContext(import.meta.url)
 * ```
 */
export function runContext (runnerUrl: string): RunContext {
  const script = process.env.npm_lifecycle_event
  const command = `${script != null ? `npm run ${script} → ` : ''}node ${relative(process.cwd(), fileURLToPath(runnerUrl))} ${process.argv.slice(2).join(' ')}`.trim()
  const version = sourceVersion()
  const source = version.commit == null ? 'unknown (not a git checkout)' : `${version.commit}${version.srcDirty ? ' with uncommitted changes in src/' : ''}`
  const cpus = os.cpus()
  return {
    command,
    source,
    machine: {
      cpu: cpus[0]?.model ?? 'unknown',
      cores: cpus.length,
      memoryGiB: Math.round(os.totalmem() / 1024 ** 3),
      node: process.version,
      platform: `${os.platform()} ${os.release()} ${os.arch()}`
    }
  }
}
