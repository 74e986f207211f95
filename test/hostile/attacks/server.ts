/**
 * The attacked server as a child process (./server-process.ts), so that a
 * crash or a heap limit shows as a dead process instead of taking the test
 * runner down. It runs with a V8 heap limit (SERVER_HEAP_MIB): an attack
 * whose memory is unbounded makes it die visibly rather than thrash the
 * machine.
 */

import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import type { Measures } from './monitor.ts'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { ChildProcess } from 'node:child_process'

/** The server's V8 old-space limit, MiB */
export const SERVER_HEAP_MIB = 1536

export interface ServerConfig {
  /** Honest DAGs to seed (../dags.ts honestDag(0 … n-1)) */
  honestDags: number
  /** Seed the wide DAG (69,905 dag-cbor blocks) */
  wide?: boolean
  /** Seed a ~2 MiB dag-cbor root with 50,000 links to blocks it lacks */
  heavyRoot?: boolean
  /** Use an on-disk store (blockstore-fs) in this directory instead of memory */
  fileDir?: string
  /** Import a UnixFS file of this many pseudo-random bytes (1 MiB chunks) */
  fileBytes?: number
  /** Accept pushes from everyone (the library refuses them by default) */
  allowPush?: boolean
  /** Serve pulls only to these peer ids (the library serves everyone by default) */
  pullers?: string[]
}

export interface ServerReady {
  type: 'ready'
  addrs: string[]
  peerId: string
  roots: { wide?: string, heavy?: string, file?: string }
  seedMs: number
}

export type Request =
  | { id: number, type: 'mark' }
  | { id: number, type: 'report' }
  | { id: number, type: 'cids', from: number, count: number }
  | { id: number, type: 'stop' }

export type Response = { id: number, result: unknown, error?: undefined } | { id: number, error: string }

export interface ServerReport extends Measures {
  sessions: { inbound: number, outbound: number }
  /** carMirror.stats(), when the library has it */
  stats?: unknown
  /** Blocks under hints that ended sessions took from the record of DAGs held whole (see ServedSession) */
  recordedHintBlocks?: number
}

/** How a server process ended */
export interface ServerExit {
  code: number | null
  signal: NodeJS.Signals | null
  /** The end of what it wrote to stderr (a heap-limit crash says "JavaScript heap out of memory") */
  stderr: string
}

type RequestBody = Request extends infer R ? R extends { id: number } ? Omit<R, 'id'> : never : never

const SCRIPT = fileURLToPath(new URL('./server-process.ts', import.meta.url))
const STDERR_KEPT = 4096

export class ServerProcess {
  /** Server processes started and not yet stopped */
  static readonly running = new Set<ServerProcess>()
  readonly child: ChildProcess
  readonly addrs: Multiaddr[]
  readonly roots: { wide?: CID, heavy?: CID, file?: CID }
  readonly seedMs: number
  exit?: ServerExit
  private stderr = ''
  private nextId = 1
  private readonly pending = new Map<number, { resolve(value: unknown): void, reject(err: Error): void }>()

  private constructor (child: ChildProcess, ready: ServerReady) {
    this.child = child
    this.addrs = ready.addrs.map(addr => multiaddr(addr))
    this.roots = Object.fromEntries(Object.entries(ready.roots).map(([name, cid]) => [name, CID.parse(cid)]))
    this.seedMs = ready.seedMs
  }

  /** Starts a server process and waits until it listens and holds its DAGs */
  static async start (config: ServerConfig, timeoutMs: number = 90_000): Promise<ServerProcess> {
    const child = fork(SCRIPT, [JSON.stringify(config)], {
      // atomic marking: a full GC then leaves exactly what is reachable (see liveAfterFullGcs in ./monitor.ts)
      execArgv: [`--max-old-space-size=${SERVER_HEAP_MIB}`, '--expose-gc', '--no-incremental-marking', ...(process.env.SERVER_NODE_OPTIONS?.split(' ').filter(Boolean) ?? [])],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'pipe', 'ipc']
    })
    let stderr = ''
    const onStderr = (chunk: Buffer): void => { stderr = (stderr + chunk.toString()).slice(-STDERR_KEPT) }
    child.stderr?.on('data', onStderr)
    const ready = await new Promise<ServerReady>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new Error(`the server process did not start within ${timeoutMs} ms: ${stderr}`))
      }, timeoutMs)
      child.once('message', (message: ServerReady) => {
        clearTimeout(timer)
        resolve(message)
      })
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`the server process exited before it was ready (code ${code}, signal ${signal}): ${stderr}`))
      })
    })
    const server = new ServerProcess(child, ready)
    ServerProcess.running.add(server)
    child.stderr?.off('data', onStderr)
    server.stderr = stderr
    child.stderr?.on('data', (chunk: Buffer) => { server.stderr = (server.stderr + chunk.toString()).slice(-STDERR_KEPT) })
    child.on('message', (response: Response) => { server.settle(response) })
    child.once('exit', (code, signal) => {
      ServerProcess.running.delete(server)
      server.exit = { code, signal, stderr: server.stderr }
      for (const { reject } of server.pending.values()) {
        reject(new Error(`the server process exited (code ${code}, signal ${signal})`))
      }
      server.pending.clear()
    })
    return server
  }

  get alive (): boolean {
    return this.exit == null && this.child.exitCode == null && this.child.signalCode == null
  }

  get peerId (): string {
    return this.addrs[0].getComponents().find(c => c.name === 'p2p')?.value ?? ''
  }

  /** Collects garbage in the server and starts its measures from here */
  async mark (): Promise<void> {
    await this.request({ type: 'mark' })
  }

  /** The server's measures since the mark; rejects if it died or does not answer within `timeoutMs` */
  async report (timeoutMs: number = 60_000): Promise<ServerReport> {
    return this.request({ type: 'report' }, timeoutMs) as Promise<ServerReport>
  }

  /** CIDs of the wide DAG's blocks `from` to `from + count - 1`, in breadth-first order */
  async wideCids (from: number, count: number): Promise<CID[]> {
    const bytes = await this.request({ type: 'cids', from, count }) as Uint8Array[]
    return bytes.map(b => CID.decode(b))
  }

  /** Stops the server (SIGKILL when it does not exit within 5 s) */
  async stop (): Promise<void> {
    if (!this.alive) {
      return
    }
    const exited = new Promise(resolve => this.child.once('exit', resolve))
    this.request({ type: 'stop' }, 5000).catch(() => {})
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }

  /** Stops every server process still running (a test's deadline may have cut its own cleanup short) */
  static async stopAll (): Promise<void> {
    await Promise.all([...ServerProcess.running].map(async server => server.stop()))
  }

  private async request (body: RequestBody, timeoutMs: number = 30_000): Promise<unknown> {
    if (!this.alive) {
      throw new Error(`the server process is dead (code ${this.exit?.code}, signal ${this.exit?.signal})`)
    }
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`the server process did not answer ${body.type} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, {
        resolve: value => { clearTimeout(timer); resolve(value) },
        reject: err => { clearTimeout(timer); reject(err) }
      })
      this.child.send({ ...body, id })
    })
  }

  private settle (response: Response): void {
    const waiter = this.pending.get(response.id)
    this.pending.delete(response.id)
    if (response.error != null) {
      waiter?.reject(new Error(response.error))
    } else {
      waiter?.resolve(response.result)
    }
  }
}
