/**
 * Statistics the benchmark runners share
 */

/**
 * The median of `values` (the mean of the middle two for an even count; NaN for none)
 *
 * @example
 *
 * ```ts
 * median([3, 1, 2]) // 2
 * ```
 */
export function median (values: number[]): number {
  if (values.length === 0) {
    return NaN
  }
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
