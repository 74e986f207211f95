/**
 * Which source a benchmark run measured: the commit, and whether src/ had
 * uncommitted changes (a worker loads src/ when it starts)
 */

import { execFileSync } from 'node:child_process'

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
