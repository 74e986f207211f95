/**
 * The `helia-car-mirror` command, run as users run it: each call is a
 * subprocess of the built CLI (dist/cli/index.js) on its own repository
 * folder; servers listen on 127.0.0.1.
 */

import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'aegir/chai'
import { FsBlockstore } from 'blockstore-fs'
import { pseudoRandomBytes, verifiesSha256 } from '../fixtures/dags.ts'
import type { ChildProcess } from 'node:child_process'

// the built command, as the package's `bin` names it, whether this suite runs from test/ or dist/test/
const ROOT = new URL(import.meta.url.includes('/dist/test/') ? '../../../' : '../../', import.meta.url)
const CLI = fileURLToPath(new URL('dist/cli/index.js', ROOT))
const MiB = 1024 * 1024

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs the CLI to its end */
async function run (args: string[]): Promise<Run> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  return finished(child)
}

async function finished (child: ChildProcess): Promise<Run> {
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', resolve)
  })
  return { code, stdout, stderr }
}

/** The JSON objects a `--json` run printed, one per line, and nothing else */
function jsonLines (text: string): Array<Record<string, any>> {
  return text.trim().split('\n').map(line => JSON.parse(line))
}

interface Server {
  address: string
  peerId: string
  /** Session lines printed so far */
  sessions: Array<Record<string, any>>
  /** Ctrl-C, then the server's exit */
  stop(): Promise<Run>
}

/** Starts `serve --json` on `repo` and waits for its addresses */
async function serve (repo: string, args: string[] = []): Promise<Server> {
  const child = spawn(process.execPath, [CLI, 'serve', '--repo', repo, '--listen', '/ip4/127.0.0.1/tcp/0/ws', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const exit = finished(child)
  const sessions: Array<Record<string, any>> = []
  const listening = await new Promise<Record<string, any>>((resolve, reject) => {
    let buffered = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8')
      let end: number
      while ((end = buffered.indexOf('\n')) >= 0) {
        const message = JSON.parse(buffered.slice(0, end))
        buffered = buffered.slice(end + 1)
        if (message.type === 'listening') {
          resolve(message)
        } else {
          sessions.push(message)
        }
      }
    })
    exit.then(result => { reject(new Error(`serve exited with ${result.code}: ${result.stderr}`)) }, reject)
  })
  return {
    address: listening.multiaddrs[0],
    peerId: listening.peerId,
    sessions,
    stop: async () => {
      child.kill('SIGINT')
      return exit
    }
  }
}

/** Every file under `dir` with its bytes, by path relative to `dir`; folders as null */
async function tree (dir: string, prefix = ''): Promise<Map<string, Uint8Array | null>> {
  const out = new Map<string, Uint8Array | null>()
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const path = prefix === '' ? entry.name : `${prefix}/${entry.name}`
    if (entry.isDirectory()) {
      out.set(path, null)
      for (const [child, bytes] of await tree(dir, path)) {
        out.set(child, bytes)
      }
    } else {
      out.set(path, await readFile(join(dir, path)))
    }
  }
  return out
}

/** Verifies every block of a repository against its CID, and counts them */
async function verifiedBlocks (repo: string): Promise<number> {
  const store = new FsBlockstore(join(repo, 'blocks'))
  await store.open()
  let count = 0
  try {
    for await (const { cid, bytes } of store.getAll()) {
      const chunks: Uint8Array[] = []
      for await (const chunk of bytes) {
        chunks.push(chunk)
      }
      expect(await verifiesSha256({ cid, bytes: Buffer.concat(chunks) }), `block ${cid}`).to.be.true()
      count++
    }
  } finally {
    await store.close()
  }
  return count
}

describe('helia-car-mirror CLI', function () {
  this.timeout(180_000)
  let temp: string
  const servers: Server[] = []

  beforeEach(async () => {
    temp = await mkdtemp(join(tmpdir(), 'car-mirror-cli-'))
  })

  afterEach(async () => {
    await Promise.all(servers.splice(0).map(async server => server.stop()))
    await rm(temp, { recursive: true, force: true })
  })

  /** A source folder: nested folders, an empty file, a file of several chunks */
  async function sourceTree (): Promise<string> {
    const source = join(temp, 'photos')
    await mkdir(join(source, '2026', 'december'), { recursive: true })
    await mkdir(join(source, 'empty-folder'))
    await writeFile(join(source, 'readme.txt'), 'holiday photos\n')
    await writeFile(join(source, 'empty.txt'), '')
    await writeFile(join(source, '2026', 'december', 'large.bin'), pseudoRandomBytes(3 * MiB + 12345, 7))
    await writeFile(join(source, '2026', 'small.bin'), pseudoRandomBytes(40_000, 8))
    return source
  }

  it('prints help with no command, and exits 2 with the help on bad usage', async () => {
    const help = await run([])
    expect(help.code, help.stderr).to.equal(0)
    expect(help.stdout).to.include('Usage: helia-car-mirror')

    const repo = join(temp, 'repo')
    const cases = [
      { args: ['frobnicate'], says: "Unknown command 'frobnicate'" },
      { args: ['pull', '--repo', repo, '/ip4/127.0.0.1/tcp/1/ws'], says: "'pull' takes 2 to 17 arguments, got 1" },
      { args: ['pull', '--repo', repo, '/ip4/127.0.0.1/tcp/1/ws', 'not-a-cid'], says: "root 'not-a-cid' is not a CID" },
      { args: ['pull', '--repo', repo, 'localhost:4010', 'bafkqaaa'], says: "'localhost:4010' is not a multiaddr" },
      { args: ['add', '--repo', repo, '--out', 'x', 'y'], says: "'add' does not take --out" },
      { args: ['stat', '--repo', repo, '--no-such-option'], says: "Unknown option '--no-such-option'" },
      { args: ['serve', '--repo', repo, '--allow-push', 'not-a-peer'], says: "--allow-push 'not-a-peer' is not a peer id" },
      { args: ['push', '--repo', repo, '/ip4/127.0.0.1/tcp/1/ws', join(temp, 'missing-path')], says: 'is neither a CID nor a file or folder' }
    ]
    for (const { args, says } of cases) {
      const result = await run(args)
      expect(result.code, args.join(' ')).to.equal(2)
      expect(result.stderr, args.join(' ')).to.include(says).and.to.include('Usage: helia-car-mirror')
      expect(result.stdout, args.join(' ')).to.equal('')
    }
  })

  it('serves, takes a pushed folder, and another repo pulls it back byte for byte with --out; --json prints only the stats', async () => {
    const source = await sourceTree()
    const server = join(temp, 'server')
    const laptop = join(temp, 'laptop')
    const phone = join(temp, 'phone')
    const [laptopRepo] = jsonLines((await run(['stat', '--repo', laptop, '--json'])).stdout)
    expect(laptopRepo).to.include({ type: 'repo', blocks: 0, pins: 0 })
    const node = await serve(server, ['--allow-push', laptopRepo.peerId])
    servers.push(node)

    const pushed = await run(['push', '--repo', laptop, node.address, source, '--json'])
    expect(pushed.code, pushed.stderr).to.equal(0)
    const [pushStats] = jsonLines(pushed.stdout)
    expect(pushStats.type).to.equal('push')
    expect(pushStats.blocksSent).to.be.greaterThan(10)
    expect(pushStats.blockBytesSent).to.be.greaterThan(3 * MiB)
    const root: string = pushStats.roots[0]

    // the same folder imported again gives the same root, and `add` prints only it
    const added = await run(['add', '--repo', laptop, source])
    expect(added.code).to.equal(0)
    expect(added.stdout).to.equal(`${root}\n`)

    const out = join(temp, 'restored')
    const pulled = await run(['pull', '--repo', phone, node.address, root, '--out', out, '--json'])
    expect(pulled.code, pulled.stderr).to.equal(0)
    const [pullStats] = jsonLines(pulled.stdout)
    expect(pullStats).to.include({ type: 'pull', blocksReceived: pushStats.blocksSent, blockBytesReceived: pushStats.blockBytesSent, duplicateBlocks: 0 })
    expect(pullStats.roots).to.deep.equal([root])

    const expected = await tree(source)
    const restored = await tree(out)
    expect([...restored.keys()].sort()).to.deep.equal([...expected.keys()].sort())
    for (const [path, bytes] of expected) {
      if (bytes == null) {
        expect((await stat(join(out, path))).isDirectory(), path).to.be.true()
      } else {
        expect(restored.get(path), path).to.equalBytes(bytes)
      }
    }

    // ls and stat read the pulled repo
    const listed = jsonLines((await run(['ls', '--repo', phone, root, '--json'])).stdout)
    expect(listed.map(entry => `${entry.name}:${entry.kind}:${entry.size ?? ''}`).sort()).to.deep.equal(['2026:directory:', 'empty-folder:directory:', 'empty.txt:file:0', 'readme.txt:file:15'])
    const [dag] = jsonLines((await run(['stat', '--repo', phone, root, '--json'])).stdout)
    expect(dag).to.include({ type: 'dag', cid: root, blocks: pushStats.blocksSent, bytes: pushStats.blockBytesSent, complete: true })
    // the phone's repo holds that DAG and nothing else
    const [phoneRepo] = jsonLines((await run(['stat', '--repo', phone, '--json'])).stdout)
    expect(phoneRepo).to.include({ type: 'repo', blocks: pushStats.blocksSent, bytes: pushStats.blockBytesSent })

    // a second pull finds every block here: it ends without opening a session
    const again = jsonLines((await run(['pull', '--repo', phone, node.address, root, '--json'])).stdout)[0]
    expect(again).to.include({ blocksReceived: 0, bytesReceived: 0, roundTrips: 0 })

    // the server logged each session it served, with its outcome
    const stopped = await node.stop()
    servers.splice(0)
    expect(stopped.code).to.equal(0)
    const sessions = jsonLines(stopped.stdout).filter(line => line.type === 'session')
    expect(sessions.map(s => `${s.kind}:${s.outcome}:${s.roots[0]}`)).to.deep.equal([`push:done:${root}`, `pull:done:${root}`])
    expect(sessions[0]).to.include({ peer: laptopRepo.peerId, blocksReceived: pushStats.blocksSent })
  })

  it('pulls from two serving repos at once when both are named, with a line per provider in --json', async () => {
    const source = await sourceTree()
    // both repos import the same folder: the same root, the same blocks
    const nodes: Server[] = []
    for (const name of ['server-a', 'server-b']) {
      const added = await run(['add', '--repo', join(temp, name), source])
      expect(added.code, added.stderr).to.equal(0)
      nodes.push(await serve(join(temp, name)))
    }
    servers.push(...nodes)
    const root = (await run(['add', '--repo', join(temp, 'scratch'), source])).stdout.trim()

    const out = join(temp, 'restored')
    const pulled = await run(['pull', '--repo', join(temp, 'phone'), nodes[0].address, nodes[1].address, root, '--out', out, '--json'])
    expect(pulled.code, pulled.stderr).to.equal(0)
    const [stats] = jsonLines(pulled.stdout)
    expect(stats.providers.map((p: Record<string, unknown>) => p.peer)).to.deep.equal(nodes.map(node => node.peerId))
    expect(stats.providers.every((p: Record<string, unknown>) => p.error == null)).to.be.true()
    const expected = await tree(source)
    const restored = await tree(out)
    for (const [path, bytes] of expected) {
      if (bytes != null) {
        expect(restored.get(path), path).to.equalBytes(bytes)
      }
    }

    // without --json: one summary line naming the pool
    const again = await run(['pull', '--repo', join(temp, 'tablet'), nodes[0].address, nodes[1].address, root])
    expect(again.code, again.stderr).to.equal(0)
    expect(again.stdout).to.include('from 2 peers at once')
  })

  it('exits 1 with one line on stderr when the transfer fails: a refused push, missing blocks, an unreachable peer', async () => {
    const source = await sourceTree()
    const node = await serve(join(temp, 'server'))
    servers.push(node)
    const client = join(temp, 'client')

    const refused = await run(['push', '--repo', client, node.address, source])
    expect(refused.code).to.equal(1)
    expect(refused.stderr).to.match(/^error: SessionRefusedError: .*\n$/)

    const root = (await run(['add', '--repo', client, source])).stdout.trim()
    const missing = await run(['pull', '--repo', join(temp, 'other'), node.address, root])
    expect(missing.code).to.equal(1)
    expect(missing.stderr).to.match(/^error: BlocksNotAvailableError: .*\n$/)

    const unreachable = await run(['pull', '--repo', join(temp, 'other'), '/ip4/127.0.0.1/tcp/1/ws', root])
    expect(unreachable.code).to.equal(1)
    expect(unreachable.stderr.split('\n')).to.have.lengthOf(2)
    expect(unreachable.stderr).to.match(/^error: /)
  })

  it('Ctrl-C during a pull exits 130 keeping only verified blocks, and running it again goes on from them', async () => {
    const server = join(temp, 'server')
    const file = join(temp, 'large.bin')
    await writeFile(file, pseudoRandomBytes(64 * MiB, 9))
    const root = (await run(['add', '--repo', server, file])).stdout.trim()
    const [whole] = jsonLines((await run(['stat', '--repo', server, root, '--json'])).stdout)
    const node = await serve(server)
    servers.push(node)
    const client = join(temp, 'client')

    const child = spawn(process.execPath, [CLI, 'pull', '--repo', client, node.address, root, '--progress'], { stdio: ['ignore', 'pipe', 'pipe'] })
    const exit = finished(child)
    // the first progress line comes with the first block: interrupt there
    await new Promise<void>(resolve => {
      child.stderr?.once('data', () => { resolve() })
    })
    child.kill('SIGINT')
    const interrupted = await exit
    expect(interrupted.code, interrupted.stderr).to.equal(130)
    expect(interrupted.stderr).to.match(/^pull +[0-9]+ blocks/)
    expect(interrupted.stderr).to.include('interrupted: the blocks verified so far are kept')
    expect(interrupted.stdout).to.equal('')

    const held = await verifiedBlocks(client)
    expect(held).to.be.greaterThan(0).and.lessThan(whole.blocks)

    const resumed = await run(['pull', '--repo', client, node.address, root, '--json'])
    expect(resumed.code, resumed.stderr).to.equal(0)
    const [stats] = jsonLines(resumed.stdout)
    expect(stats.blocksReceived).to.equal(whole.blocks - held)
    expect(await verifiedBlocks(client)).to.equal(whole.blocks)
  })
})
