/**
 * Runs server-role transcripts against a peer: shared by the test suite and
 * by the command line (`npm run conformance`).
 */

import { Violation } from './conn.ts'
import type { Conn } from './conn.ts'
import type { Fixture, Graph } from './fixture.ts'
import type { Ctx } from './session.ts'
import type { Tester } from './tester.ts'
import type { Need, Transcript } from './transcripts.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface RunSettings {
  tester: Tester
  fx: Fixture
  /** The addresses of the peer that meets `needs` */
  target(needs: Need[]): Multiaddr[]
  timeout: number
  quiet: number
  keepaliveMs: number
}

export interface RunResult {
  transcript: Transcript
  ok: boolean
  error?: Error
  /** Both directions, one line a frame */
  log: string[]
  notes: string[]
  ms: number
}

/** Runs one transcript on fresh streams; never throws */
export async function runTranscript (transcript: Transcript, settings: RunSettings): Promise<RunResult> {
  const log: string[] = []
  const notes: string[] = []
  const opened: Conn[] = []
  const started = Date.now()
  const ctx: Ctx = {
    fx: settings.fx,
    timeout: settings.timeout,
    quiet: settings.quiet,
    keepaliveMs: settings.keepaliveMs,
    async open (peer: 'sender' | 'receiver', graph?: Graph): Promise<Conn> {
      if (opened.length > 0) {
        log.push(`-- stream ${opened.length + 1}`)
      }
      const names = graph ?? settings.fx.graph
      const conn = await settings.tester.open(settings.target(transcript.needs), {
        timeout: settings.timeout,
        peer,
        log,
        name: cid => names.name(cid)
      })
      opened.push(conn)
      return conn
    },
    note (text: string) {
      notes.push(text)
    }
  }
  let error: Error | undefined
  try {
    await transcript.run(ctx)
  } catch (err) {
    error = err as Error
  } finally {
    for (const conn of opened) {
      conn.abort()
    }
  }
  return { transcript, ok: error == null, error, log, notes, ms: Date.now() - started }
}

/** A failure report: the broken rule, the message and the transcript of frames */
export function report (result: RunResult): string {
  const error = result.error
  const head = error instanceof Violation
    ? `violates ${error.message}`
    : `failed: ${error?.name ?? 'Error'}: ${error?.message ?? ''}`
  return [`${result.transcript.id}: ${head}`, '  frames (> kit, < peer):', ...result.log.map(line => `    ${line}`)].join('\n')
}
