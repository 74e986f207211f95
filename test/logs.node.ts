/**
 * What CAR Mirror logs: every session has a logger of its own on both sides
 * (helia:car-mirror:session-N) with its start, its end and what moved; CIDs
 * go through `%c`; a misbehaving or refusing peer is logged at debug level,
 * never as this node's error.
 */
import { expect } from 'aegir/chai'
import { CID } from 'multiformats/cid'
import { SessionRefusedError, createCarMirror } from '../src/index.ts'
import { TREE_V1, addTree, dagCids } from './fixtures/dags.ts'
import { testNodes } from './fixtures/nodes.ts'
import { rejection } from './fixtures/rejection.ts'
import { eventually } from './hostile/helpers.ts'
import type { CarMirror } from '../src/index.ts'
import type { ComponentLogger, Logger } from '@libp2p/interface'

interface Line {
  namespace: string
  level: 'debug' | 'error' | 'trace'
  format: string
  args: unknown[]
}

/** A ComponentLogger that keeps every line, enabled or not */
function recordingLogger (): { logger: ComponentLogger, lines: Line[] } {
  const lines: Line[] = []
  const make = (namespace: string): Logger => {
    const log = (format: string, ...args: unknown[]): void => { lines.push({ namespace, level: 'debug', format, args }) }
    return Object.assign(log, {
      error: (format: string, ...args: unknown[]): void => { lines.push({ namespace, level: 'error', format, args }) },
      trace: (format: string, ...args: unknown[]): void => { lines.push({ namespace, level: 'trace', format, args }) },
      enabled: true,
      newScope: (name: string) => make(`${namespace}:${name}`)
    })
  }
  return { logger: { forComponent: make }, lines }
}

/** The lines of the one session logged under `namespace`'s session-N scopes */
function sessionLines (lines: Line[]): Map<string, Line[]> {
  const sessions = new Map<string, Line[]>()
  for (const line of lines) {
    if (/^helia:car-mirror:session-\d+$/.test(line.namespace)) {
      sessions.set(line.namespace, [...(sessions.get(line.namespace) ?? []), line])
    }
  }
  return sessions
}

describe('logs', () => {
  const { node } = testNodes({ carMirror: false })
  const mirrors: CarMirror[] = []

  afterEach(async () => {
    await Promise.all(mirrors.splice(0).map(async mirror => mirror.stop()))
  })

  async function mirrorOn (allowPush = false): Promise<{ mirror: CarMirror, lines: Line[], node: Awaited<ReturnType<typeof node>> }> {
    const helia = await node()
    const { logger, lines } = recordingLogger()
    const mirror = createCarMirror({ libp2p: helia.libp2p, blockstore: helia.blockstore, logger }, { allowPush: () => allowPush })
    await mirror.start()
    mirrors.push(mirror)
    return { mirror, lines, node: helia }
  }

  it('a pull logs its start and its end, with what moved, under a session scope on each side', async () => {
    const server = await mirrorOn()
    const client = await mirrorOn()
    const root = await addTree(server.node, TREE_V1)
    const stats = await client.mirror.pull(server.node.libp2p.getMultiaddrs(), root)
    // the server logs its end once it has read the client's done
    expect(await eventually(() => server.lines.some(line => line.format.startsWith('%s of %c by %p %s'))), 'the server logged the session\'s end').to.be.true()

    const [clientSession, ...moreClient] = [...sessionLines(client.lines).values()]
    expect(moreClient).to.have.lengthOf(0)
    const start = clientSession[0]
    expect(start.format).to.match(/^pull of %c/)
    expect(start.args[0]).to.be.an.instanceOf(CID)
    expect(String(start.args[0])).to.equal(root.toString())
    const end = clientSession.find(line => line.format.startsWith('done:'))
    expect(end?.args.slice(0, 2), 'blocks and bytes received').to.deep.equal([stats.blocksReceived, stats.blockBytesReceived])

    const [serverSession, ...moreServer] = [...sessionLines(server.lines).values()]
    expect(moreServer).to.have.lengthOf(0)
    expect(serverSession[0].format).to.match(/^serving a pull of %c/)
    expect(String(serverSession[0].args[0])).to.equal(root.toString())
    const served = serverSession.find(line => line.format.startsWith('%s of %c by %p %s'))
    expect(served?.args.slice(0, 4).map(String)).to.deep.equal(['pull', root.toString(), client.node.libp2p.peerId.toString(), 'done'])
    expect(served?.args[5], 'blocks sent').to.equal(stats.blocksReceived)

    expect(await dagCids(client.node.blockstore, root)).to.deep.equal(await dagCids(server.node.blockstore, root))
    expect([...client.lines, ...server.lines].filter(line => line.level === 'error')).to.deep.equal([])
  })

  it('sessions running at once log under scopes of their own', async () => {
    const server = await mirrorOn()
    const client = await mirrorOn()
    const roots = [await addTree(server.node, TREE_V1), await addTree(server.node, TREE_V1.slice(0, 2))]
    await Promise.all(roots.map(async root => client.mirror.pull(server.node.libp2p.getMultiaddrs(), root)))
    const sessions = [...sessionLines(client.lines).values()]
    expect(sessions).to.have.lengthOf(2)
    // each scope names one root from its first line to its last
    const started = sessions.map(lines => String(lines[0].args[0])).sort()
    expect(started).to.deep.equal(roots.map(String).sort())
    for (const lines of sessions) {
      expect(lines.at(-1)?.format).to.match(/^done:/)
    }
  })

  it('a refused push is logged at debug level on both sides, with the refusal the peer sent', async () => {
    const server = await mirrorOn(false)
    const client = await mirrorOn()
    const root = await addTree(client.node, TREE_V1)
    const err = await rejection(client.mirror.push(server.node.libp2p.getMultiaddrs(), root))
    expect(err).to.be.an.instanceOf(SessionRefusedError)
    expect(await eventually(() => server.lines.some(line => line.format.startsWith('%s of %c by %p %s'))), 'the server logged the session\'s end').to.be.true()

    const [clientSession] = [...sessionLines(client.lines).values()]
    expect(clientSession.map(line => line.format)).to.include('peer sent error/%s: %s')
    expect(clientSession.at(-1)?.format).to.match(/^failed after %d block\(s\) - %e/)
    const [serverSession] = [...sessionLines(server.lines).values()]
    expect(serverSession.at(-1)?.args.slice(0, 4).map(String)).to.deep.equal(['push', root.toString(), client.node.libp2p.peerId.toString(), 'refused'])
    expect([...client.lines, ...server.lines].filter(line => line.level === 'error')).to.deep.equal([])
  })
})
