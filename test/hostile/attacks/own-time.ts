/**
 * How much of a span of the event loop went to this library's own code,
 * read from a V8 CPU profile of the server process: the time of the
 * samples whose stack holds a frame of a module under `src/` (the work the
 * library did itself, and what it called, such as the frames it sent).
 * What is left of a stall is libp2p's (stream negotiation, peer-store
 * writes, decryption of the bytes read) and the runtime's.
 */

import type { Profiler } from 'node:inspector'

export interface OwnTime {
  /** The library's time in samples between `start` and `end` (the monotonic clock, µs), ms */
  (startUs: number, endUs: number): number
}

/** Reads `profile`: which samples are the library's, and when each was taken */
export function ownTime (profile: Profiler.Profile, sourceUrl: string): OwnTime {
  const parent = new Map<number, number>()
  const own = new Map<number, boolean>()
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) {
      parent.set(child, node.id)
    }
  }
  const byId = new Map(profile.nodes.map(node => [node.id, node]))
  const isOwn = (id: number): boolean => {
    const known = own.get(id)
    if (known != null) {
      return known
    }
    const node = byId.get(id)
    const up = parent.get(id)
    const result = node != null && (node.callFrame.url.startsWith(sourceUrl) || (up != null && isOwn(up)))
    own.set(id, result)
    return result
  }
  const samples = profile.samples ?? []
  const deltas = profile.timeDeltas ?? []
  const times: number[] = []
  let time = profile.startTime
  for (let i = 0; i < samples.length; i++) {
    time += deltas[i] ?? 0
    times.push(time)
  }
  return (startUs, endUs) => {
    let total = 0
    for (let i = 0; i < samples.length - 1; i++) {
      if (times[i] >= startUs && times[i] < endUs && isOwn(samples[i])) {
        total += times[i + 1] - times[i]
      }
    }
    return total / 1000
  }
}
