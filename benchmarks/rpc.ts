/* eslint-disable no-console */

/**
 * Request/answer over a forked child's IPC channel: `Child` in a runner
 * (./index.ts, ./many/index.ts), `serve` in its children (./worker.ts,
 * ./many/server.ts, ./many/clients.ts).
 */

import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'

interface Pending {
  resolve(value: unknown): void
  reject(err: Error): void
  timer: NodeJS.Timeout
}

interface Answer {
  id: number
  ok: boolean
  result?: unknown
  error?: string
}

interface Request {
  id: number
  op: string
  args?: unknown
}

/** A child process the runner drives */
export class Child {
  readonly name: string
  private readonly child: ChildProcess
  private readonly pending = new Map<number, Pending>()
  private nextId = 0
  private exited = false
  private readonly defaultTimeoutMs: number

  /** `timeoutMs`: how long a call waits for its answer unless it says otherwise */
  constructor (name: string, file: string, execArgv: string[] = [], timeoutMs = 600_000) {
    this.name = name
    this.defaultTimeoutMs = timeoutMs
    this.child = fork(file, [], {
      execArgv: ['--expose-gc', '--disable-warning=ExperimentalWarning', ...execArgv],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc']
    })
    const forward = (chunk: Buffer): void => {
      for (const line of chunk.toString().split('\n').filter(l => l.length > 0)) {
        process.stderr.write(`[${name}] ${line}\n`)
      }
    }
    this.child.stdout?.on('data', forward)
    this.child.stderr?.on('data', forward)
    this.child.on('message', (message: Answer) => {
      const pending = this.pending.get(message.id)
      if (pending == null) {
        return
      }
      this.pending.delete(message.id)
      clearTimeout(pending.timer)
      if (message.ok) {
        pending.resolve(message.result)
      } else {
        pending.reject(new Error(`${name}: ${message.error}`))
      }
    })
    this.child.on('exit', (code, signal) => {
      this.exited = true
      for (const pending of this.pending.values()) {
        clearTimeout(pending.timer)
        pending.reject(new Error(`${name} exited (${code ?? signal})`))
      }
      this.pending.clear()
    })
  }

  get pid (): number | undefined {
    return this.child.pid
  }

  /** False once the child has exited */
  get alive (): boolean {
    return !this.exited
  }

  async call<T> (op: string, args: unknown = {}, timeoutMs = this.defaultTimeoutMs): Promise<T> {
    if (this.exited) {
      throw new Error(`${this.name} has exited`)
    }
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`${this.name}: ${op} did not answer within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer })
      this.child.send({ id, op, args } satisfies Request)
    })
  }

  /** Asks the child to exit, and kills it if it has not within `graceMs` */
  async close (graceMs = 20_000): Promise<void> {
    if (this.exited) {
      return
    }
    const exited = new Promise<void>(resolve => { this.child.once('exit', () => { resolve() }) })
    this.call('exit', {}, graceMs).catch(() => {})
    const timer = setTimeout(() => { this.child.kill('SIGKILL') }, graceMs)
    await exited
    clearTimeout(timer)
  }
}

/** In a child: answers the runner's requests with `handlers`; `exit` runs `onExit` and ends the process */
export function serve (handlers: Record<string, (args: any) => Promise<unknown>>, onExit: () => Promise<void>, name = 'child'): void {
  process.on('unhandledRejection', (err) => {
    console.error(`${name}: unhandled rejection -`, err)
  })
  const all: Record<string, (args: any) => Promise<unknown>> = {
    ...handlers,
    exit: async () => {
      await Promise.race([onExit(), new Promise(resolve => setTimeout(resolve, 15_000))])
      setImmediate(() => process.exit(0))
    }
  }
  process.on('message', (message: Request) => {
    const handler = all[message.op]
    void (async () => {
      try {
        if (handler == null) {
          throw new Error(`unknown op ${message.op}`)
        }
        const result = await handler(message.args ?? {})
        process.send?.({ id: message.id, ok: true, result } satisfies Answer)
      } catch (err) {
        process.send?.({ id: message.id, ok: false, error: (err as Error).stack ?? String(err) } satisfies Answer)
      }
    })()
  })
  process.on('disconnect', () => {
    void Promise.race([onExit(), new Promise(resolve => setTimeout(resolve, 5_000))]).finally(() => process.exit(0))
  })
}
