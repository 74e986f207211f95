// The runnable examples in examples/ (the README's quick start, existing
// Helia code, pinning, errors), each run as a user runs it: `node
// examples/NAME.ts` in its own process, from the project root. Each must
// exit 0, and what it prints must show that it did what it says.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { expect } from 'aegir/chai'

// the project root, whether this suite runs from test/ or dist/test/
const ROOT = new URL(import.meta.url.includes('/dist/test/') ? '../../../' : '../../', import.meta.url)

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `node examples/NAME.ts` from the project root to its end */
async function runExample (name: string): Promise<Run> {
  const child = spawn(process.execPath, [fileURLToPath(new URL(`examples/${name}.ts`, ROOT))], {
    cwd: fileURLToPath(ROOT),
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', resolve)
  })
  return { code, stdout, stderr }
}

/** Runs an example that must succeed, and returns what it printed */
async function stdoutOf (name: string): Promise<string> {
  const run = await runExample(name)
  expect(run.code, `examples/${name}.ts exited with ${run.code}; stdout:\n${run.stdout}\nstderr:\n${run.stderr}`).to.equal(0)
  return run.stdout
}

/** The groups of the first match of `pattern` in `text`; fails when there is none */
function match (text: string, pattern: RegExp): string[] {
  const found = pattern.exec(text)
  expect(found, `no line matches ${pattern} in:\n${text}`).to.not.be.null()
  return found?.slice(1) ?? []
}

describe('the runnable examples (examples/*.ts)', function () {
  this.timeout(60_000)

  it('quick-start: pulls the server\'s folder, then pushes a changed version of it back', async () => {
    const out = await stdoutOf('quick-start')

    const [served] = match(out, /^server holds +(\S+)$/m)
    const [pulledRoot, pulledBlocks] = match(out, /^pulled +(\S+): (\d+) blocks/m)
    expect(pulledRoot).to.equal(served)
    // the folder, its three files, and the 2.5 MiB file's three chunks
    expect(Number(pulledBlocks)).to.equal(7)
    const [duplicates, roundTrips] = match(out, /received, (\d+) duplicates, (\d+) round trip/m)
    expect(Number(duplicates)).to.equal(0)
    expect(Number(roundTrips)).to.equal(1)

    const [changed] = match(out, /^client changed (\S+)$/m)
    expect(changed).to.not.equal(served)
    const [pushedRoot, pushedBlocks] = match(out, /^pushed +(\S+): (\d+) blocks/m)
    expect(pushedRoot).to.equal(changed)
    // with the old root as a hint only the new blocks go: the changed file and the folder
    expect(Number(pushedBlocks)).to.equal(2)
    expect(out).to.match(/^server reads +index\.html: <h1>Hello again<\/h1>$/m)
  })

  it('existing-helia: unixfs cat and pins.add, unchanged, fetch over the CAR Mirror broker', async () => {
    const out = await stdoutOf('existing-helia')

    const [, bytes] = match(out, /^cat (\S+): (\d+) bytes$/m)
    expect(Number(bytes)).to.equal(3 * 1024 * 1024)
    const [pinnedRoot, pinned] = match(out, /^pins\.add (\S+): (\d+) blocks pinned$/m)
    // the folder and its one file, each yielded once, the root first
    expect(Number(pinned)).to.equal(2)
    expect(match(out, /^ {2}pinned (\S+)$/m)[0]).to.equal(pinnedRoot)
    const [asked, pulls, received] = match(out, /^broker: (\d+) blocks asked for, (\d+) pulls, (\d+) blocks received$/m)
    // every block came over CAR Mirror: the file's node and its three chunks, the folder and its file
    expect(Number(received)).to.equal(6)
    expect(Number(asked)).to.be.at.least(2)
    // one pull per DAG (plus a shallow one for the file's node), not one per block
    expect(Number(pulls)).to.be.within(2, 3)
  })

  it('pinning: a DAG pulled with pin survives gc(); one pulled without it does not', async () => {
    const out = await stdoutOf('pinning')

    const [kept, keptBlocks] = match(out, /^pulled with pin: +(\S+): (\d+) blocks, pinned: true$/m)
    const [temporary, temporaryBlocks] = match(out, /^pulled without pin: (\S+): (\d+) blocks, pinned: false$/m)
    expect(Number(keptBlocks)).to.equal(4)
    expect(Number(temporaryBlocks)).to.equal(4)
    // the 2.5 MiB of chunks and the file's node
    const [keptBytes] = match(out, new RegExp(`^after gc: ${kept}: 4 blocks \\((\\d+) bytes\\) held, 0 missing$`, 'm'))
    expect(Number(keptBytes)).to.be.within(2.5 * 1024 * 1024, 2.5 * 1024 * 1024 + 1024)
    expect(out).to.include(`after gc: ${temporary}: 0 blocks (0 bytes) held, 1 missing`)
  })

  it('errors: prints the error of each failure, typed where CAR Mirror throws it', async () => {
    const out = await stdoutOf('errors')

    expect(out).to.match(/^peer without CAR Mirror: UnsupportedProtocolError: .*\/car-mirror\/stream\/1\.0\.0/m)
    // libp2p's WebSockets transport decides what a failed dial throws; it must throw something
    expect(out).to.match(/^unreachable address: DialError: Dialling the peer failed: \S.*$/m)
    expect(out).to.match(/^refused push: SessionRefusedError: /m)
    expect(out).to.match(/^aborted pull: TimeoutError: /m)
    const [lost] = match(out, /^the server lost (\S+)$/m)
    expect(out).to.match(/^missing blocks: BlocksNotAvailableError: /m)
    expect(match(out, /^ {2}err\.cids: (.+)$/m)[0]).to.equal(lost)
    expect(out).to.not.include('no error')
  })
})
