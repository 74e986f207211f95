import { expect } from 'aegir/chai'
import { UsageError, defaultRepo, parseCommand } from '../../cli/args.ts'
import { formatBytes, formatDuration, formatProgress } from '../../cli/progress.ts'

describe('CLI arguments', () => {
  it('parses a pull with repeated hints, --out, --pin and --json', () => {
    const parsed = parseCommand(['pull', '/ip4/127.0.0.1/tcp/4010/ws', 'bafyroot', '--hint', 'bafyone', '--hint', 'bafytwo', '--out', 'files', '--pin', '--json', '--repo', 'r'])
    expect(parsed).to.include({ command: 'pull', out: 'files', pin: true, json: true, repo: 'r', progress: false })
    expect(parsed.positionals).to.deep.equal(['/ip4/127.0.0.1/tcp/4010/ws', 'bafyroot'])
    expect(parsed.hints).to.deep.equal(['bafyone', 'bafytwo'])
  })

  it('takes the repository from HELIA_CAR_MIRROR_REPO, else a folder in the home directory', () => {
    expect(parseCommand(['stat'], { HELIA_CAR_MIRROR_REPO: '/srv/repo' }).repo).to.equal('/srv/repo')
    expect(defaultRepo({})).to.match(/\.helia-car-mirror$/)
    expect(parseCommand(['stat', '--repo', 'here'], { HELIA_CAR_MIRROR_REPO: '/srv/repo' }).repo).to.equal('here')
  })

  it('--help and no command mean help', () => {
    expect(parseCommand([]).command).to.equal('help')
    expect(parseCommand(['pull', '--help']).command).to.equal('help')
  })

  it('throws UsageError for unknown commands and options, wrong arity and options of other commands', () => {
    for (const argv of [['nope'], ['ls'], ['ls', 'a', 'b'], ['serve', 'extra'], ['push', 'a', 'b', '--pin'], ['serve', '--hint', 'x'], ['stat', '--frob']]) {
      expect(() => parseCommand(argv), argv.join(' ')).to.throw(UsageError)
    }
  })
})

describe('CLI progress lines', () => {
  it('formats bytes and durations for people', () => {
    expect(formatBytes(0)).to.equal('0 B')
    expect(formatBytes(1023)).to.equal('1023 B')
    expect(formatBytes(1536)).to.equal('1.5 KiB')
    expect(formatBytes(5 * 1024 * 1024 * 1024)).to.equal('5.0 GiB')
    expect(formatDuration(4_400)).to.equal('4s')
    expect(formatDuration(185_000)).to.equal('3m05s')
    expect(formatDuration(3_720_000)).to.equal('1h02m')
  })

  it('shows a bar, percentage, counts, rate and time left when the total is known', () => {
    const line = formatProgress('push', { blocks: 50, bytes: 1024 * 1024, elapsedMs: 2000, totalBlocks: 100, totalBytes: 4 * 1024 * 1024 })
    expect(line).to.equal('push [#####---------------]  25%  50/100 blocks  1.0/4.0 MiB  512.0 KiB/s  ETA 6s')
  })

  it('shows counts and rate without a total, and no time left before a second has passed', () => {
    expect(formatProgress('pull', { blocks: 3, bytes: 3000, elapsedMs: 1000 })).to.equal('pull 3 blocks  2.9 KiB  2.9 KiB/s')
    expect(formatProgress('push', { blocks: 1, bytes: 10, elapsedMs: 10, totalBlocks: 4, totalBytes: 40 })).to.equal('push [#####---------------]  25%  1/4 blocks  10/40 B  1000 B/s')
  })
})
