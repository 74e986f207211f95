// The browser example page (examples/browser/) in real Chromium: the test
// starts `node examples/browser/server.ts` as `npm run example:browser` does,
// picks a folder it wrote with the page's directory input, and checks what
// the page shows against the same folder imported here. With SCREENSHOT=1 it
// saves the finished page as docs/browser-example.png.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { unixfs } from '@helia/unixfs'
import { expect } from 'aegir/chai'
import { MemoryBlockstore } from 'blockstore-core/memory'
import all from 'it-all'
import { chromium } from 'playwright-core'
import type { ChildProcessByStdio } from 'node:child_process'
import type { Readable } from 'node:stream'
import type { Browser, Page } from 'playwright-core'

/** The picked folder's name: the page imports it as the root directory */
const FOLDER = 'site'

/** Deterministic pseudo-random bytes (xorshift32) */
function pseudoRandom (length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length)
  let x = seed
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    bytes[i] = x & 0xff
  }
  return bytes
}

/** The folder's files: a nested subfolder, an empty file and one of more than 1 MiB (several chunks) */
const FILES: Array<{ path: string, bytes: Uint8Array }> = [
  { path: 'index.html', bytes: new TextEncoder().encode('<h1>Mirrored with CAR Mirror</h1>\n') },
  { path: 'empty.txt', bytes: new Uint8Array(0) },
  { path: 'data/random.bin', bytes: pseudoRandom(1536 * 1024 + 123, 0x9e3779b9) },
  { path: 'data/nested/notes.md', bytes: new TextEncoder().encode('# Notes\n\n'.concat('A line of notes.\n'.repeat(500))) },
  { path: 'data/nested/deeper/tiny.json', bytes: new TextEncoder().encode('{"tiny":true}\n') }
]

/** The directories under the root, as the page lists them */
const DIRECTORIES = ['data', 'data/nested', 'data/nested/deeper']

/** A row of the page's tree table */
interface Row {
  path: string | null
  type: string | null
  size: string | null
  verified: string | null
}

type ServerProcess = ChildProcessByStdio<null, Readable, Readable>

describe('the browser example page (examples/browser/) in Chromium', function () {
  this.timeout(60_000)
  let work: string
  let server: ServerProcess
  /** Lines the server printed on stdout, and on stderr */
  const output: string[] = []
  const stderr: string[] = []
  let url: string
  let browser: Browser | undefined

  /** Resolves with the first line the server prints on stdout that matches, or rejects after `ms` */
  async function serverLine (match: (line: string) => boolean, ms: number): Promise<string> {
    const deadline = Date.now() + ms
    while (Date.now() < deadline) {
      const line = output.find(match)
      if (line != null) {
        return line
      }
      if (server.exitCode != null) {
        break
      }
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    throw new Error(`the server printed no such line; it printed:\n${output.join('\n')}\nand on stderr:\n${stderr.join('\n')}`)
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'car-mirror-page-'))
    for (const file of FILES) {
      const path = join(work, FOLDER, file.path)
      await mkdir(dirname(path), { recursive: true })
      await writeFile(path, file.bytes)
    }

    // what `npm run example:browser` runs (from the project root, as aegir's tests are)
    server = spawn(process.execPath, ['examples/browser/server.ts', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
    createInterface({ input: server.stdout }).on('line', line => output.push(line))
    createInterface({ input: server.stderr }).on('line', line => stderr.push(line))
    const first = await serverLine(() => true, 45_000)
    expect(first, 'the first line names the page').to.match(/^open http:\/\/127\.0\.0\.1:\d+\/$/)
    url = first.slice('open '.length)

    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu']
    })
  })

  after(async () => {
    await browser?.close()
    if (server?.exitCode == null) {
      server?.kill('SIGKILL')
    }
    await rm(work, { recursive: true, force: true })
  })

  it('pushes a picked folder, pulls it back into a second node and verifies every file', async () => {
    if (browser == null) {
      throw new Error('no browser')
    }
    // the same folder imported here as the page does: one root directory, CIDv1, raw leaves
    const blockstore = new MemoryBlockstore()
    let expectedRoot: string | undefined
    for await (const entry of unixfs({ blockstore }).addAll(FILES.map(file => ({ path: `${FOLDER}/${file.path}`, content: file.bytes })), { cidVersion: 1, rawLeaves: true })) {
      if (entry.path === FOLDER) {
        expectedRoot = entry.cid.toString()
      }
    }
    const blocks = (await all(blockstore.getAll())).length

    const page: Page = await browser.newPage({ viewport: { width: 1000, height: 800 } })
    const errors: string[] = []
    page.on('pageerror', err => errors.push(err.message))
    try {
      await page.goto(url)
      // idle once the page's nodes are up and the folder input listens (it starts as starting)
      await page.locator('#status[data-state="idle"]').waitFor({ timeout: 30_000 })
      await page.locator('#folder').setInputFiles(join(work, FOLDER))
      await page.locator('#status[data-state="done"], #status[data-state="error"]').waitFor({ timeout: 50_000 })

      expect(await page.locator('#status').textContent()).to.equal(`done: ${FILES.length} files verified`)
      expect(await page.locator('#root-cid').textContent()).to.equal(expectedRoot)
      expect(await page.locator('#file-count').textContent()).to.equal(`${FILES.length} in ${FOLDER}/`)

      // the server's node received the whole DAG from the page's first node
      const pushed = await serverLine(line => line.startsWith(`push done: ${expectedRoot} `), 10_000)
      expect(pushed).to.include(`${blocks} blocks received`)
      expect(await page.locator('#push-stats [data-key="blocksSent"]').getAttribute('data-value')).to.equal(String(blocks))
      expect(await page.locator('#push-progress').evaluate((bar: HTMLProgressElement) => bar.value === bar.max)).to.be.true()
      // and the second node pulled all of it back
      expect(await page.locator('#pull-stats [data-key="blocksReceived"]').getAttribute('data-value')).to.equal(String(blocks))
      expect(await page.locator('#pull-stats [data-key="duplicateBlocks"]').getAttribute('data-value')).to.equal('0')

      const rows: Row[] = await page.locator('#tree tbody tr').evaluateAll(trs => trs.map(tr => ({
        path: tr.getAttribute('data-path'),
        type: tr.getAttribute('data-type'),
        size: tr.getAttribute('data-size'),
        verified: tr.getAttribute('data-verified')
      })))
      const expected: Row[] = [
        ...DIRECTORIES.map(path => ({ path, type: 'directory', size: '0', verified: null })),
        ...FILES.map(file => ({ path: file.path, type: 'file', size: String(file.bytes.byteLength), verified: 'true' }))
      ]
      const byPath = (a: Row, b: Row): number => (a.path ?? '').localeCompare(b.path ?? '')
      expect(rows.sort(byPath)).to.deep.equal(expected.sort(byPath))
      expect(errors, 'uncaught errors in the page').to.be.empty()

      if (process.env.SCREENSHOT === '1') {
        await page.screenshot({ path: 'docs/browser-example.png', fullPage: true })
      }
    } finally {
      await page.close()
    }
  })

  it('stops cleanly on SIGTERM', async () => {
    const exited = once(server, 'exit')
    server.kill('SIGTERM')
    const [code] = await exited
    expect(code).to.equal(0)
    expect(output).to.include('SIGTERM: stopping')
  })
})
