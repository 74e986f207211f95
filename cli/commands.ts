/**
 * The CLI's commands. Each opens the repository, does its work through the
 * package's public API and writes its results: one JSON object per result
 * with `--json`, lines for people otherwise. Progress goes to stderr.
 */

import { stat as statPath } from 'node:fs/promises'
import { unixfs } from '@helia/unixfs'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { walkDag } from 'helia-car-mirror/core'
import { CID } from 'multiformats/cid'
import { UsageError } from './args.ts'
import { exportTo, importPath } from './files.ts'
import { ProgressBar, formatBytes, progressShown } from './progress.ts'
import { openRepo, repoBlockTotals } from './repo.ts'
import type { ParsedCommand } from './args.ts'
import type { ProgressOutput } from './progress.ts'
import type { CliNode } from './repo.ts'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { CarMirrorProgressEvents, ServedSession, TransferStats } from 'helia-car-mirror'

/** Where a command writes, and what stops it (Ctrl-C) */
export interface CommandContext {
  stdout: ProgressOutput
  stderr: ProgressOutput
  signal: AbortSignal
}

/** Where `serve` listens unless `--listen` says otherwise: loopback only, a fixed port */
export const DEFAULT_LISTEN = '/ip4/127.0.0.1/tcp/4010/ws'

function parseCid (text: string, what: string): CID {
  try {
    return CID.parse(text)
  } catch {
    throw new UsageError(`${what} '${text}' is not a CID`)
  }
}

function parseAddress (text: string): Multiaddr {
  try {
    return multiaddr(text)
  } catch {
    throw new UsageError(`'${text}' is not a multiaddr (e.g. /ip4/127.0.0.1/tcp/4010/ws/p2p/12D3KooW...)`)
  }
}

/** TransferStats as JSON: CIDs as strings */
function statsJson (kind: 'pull' | 'push', stats: TransferStats): Record<string, unknown> {
  const providers = stats.providers?.map(({ error, ...provider }) => ({ ...provider, ...(error != null ? { error: `${error.name}: ${error.message}` } : {}) }))
  return { type: kind, ...stats, roots: stats.roots.map(String), ...(providers != null ? { providers } : {}) }
}

function line (out: ProgressOutput, text: string): void {
  out.write(`${text}\n`)
}

function summary (kind: 'pull' | 'push', stats: TransferStats): string {
  const blocks = kind === 'pull' ? stats.blocksReceived : stats.blocksSent
  const bytes = kind === 'pull' ? stats.blockBytesReceived : stats.blockBytesSent
  const trips = `${stats.roundTrips} round trip${stats.roundTrips === 1 ? '' : 's'}`
  const pooled = stats.providers == null ? '' : `, from ${stats.providers.length} peers at once${poolDrops(stats.providers)}`
  return `${kind === 'pull' ? 'pulled' : 'pushed'} ${stats.roots[0]}: ${blocks} blocks (${formatBytes(bytes)}) ${kind === 'pull' ? 'received' : 'sent'} in ${stats.durationMs} ms, ${trips}, ${formatBytes(stats.bytesSent + stats.bytesReceived)} on the wire${pooled}`
}

/** The peers a pool dropped, and why: empty when none was */
function poolDrops (providers: NonNullable<TransferStats['providers']>): string {
  const dropped = providers.filter(provider => provider.error != null)
  return dropped.length === 0 ? '' : ` (dropped: ${dropped.map(provider => `${provider.peer} ${provider.error?.name}`).join(', ')})`
}

/** Opens the repository for one command and stops the node afterwards, whatever happens */
async function withNode<T> (command: ParsedCommand, run: (node: CliNode) => Promise<T>, options: Parameters<typeof openRepo>[1] = {}): Promise<T> {
  const node = await openRepo(command.repo, options)
  try {
    return await run(node)
  } finally {
    await node.stop()
  }
}

/** How many items an iterable yields */
async function count (items: AsyncIterable<unknown>): Promise<number> {
  let n = 0
  for await (const _ of items) {
    n++
  }
  return n
}

/** Counts the local DAG under `root`: the total a push shows its progress against */
async function dagSize (node: CliNode, root: CID, signal: AbortSignal): Promise<{ blocks: number, bytes: number, missing: number }> {
  const size = { blocks: 0, bytes: 0, missing: 0 }
  for await (const block of walkDag(node.blockstore, [root], { signal, onMissing: () => { size.missing++ } })) {
    size.blocks++
    size.bytes += block.bytes.byteLength
  }
  return size
}

/** `serve`: listens, prints where, logs each served session, stops on Ctrl-C */
export async function serve (command: ParsedCommand, context: CommandContext): Promise<void> {
  const { stdout, signal } = context
  const onSession = (session: ServedSession): void => {
    if (command.json) {
      line(stdout, JSON.stringify({ type: 'session', ...session, peer: session.peer.toString(), roots: session.roots.map(String), error: session.error?.message }))
      return
    }
    const moved = session.kind === 'push' ? `${session.blocksReceived} blocks (${formatBytes(session.blockBytesReceived)}) received` : `${session.blocksSent} blocks (${formatBytes(session.blockBytesSent)}) sent`
    line(stdout, `${session.kind} of ${session.roots[0] ?? '(nothing)'} by ${session.peer}: ${session.outcome}${session.error != null ? ` (${session.error.message})` : ''}, ${moved} in ${session.durationMs} ms`)
  }
  // parsed before anything listens, so a bad peer id is a usage error
  const allowPush = new Set(command.allowPush.map(id => {
    try {
      return peerIdFromString(id).toString()
    } catch {
      throw new UsageError(`--allow-push '${id}' is not a peer id`)
    }
  }))
  command.listen.forEach(parseAddress)
  const listen = command.listen.length > 0 ? command.listen : [DEFAULT_LISTEN]
  await withNode(command, async node => {
    const addresses = node.libp2p.getMultiaddrs().map(String)
    if (command.json) {
      line(stdout, JSON.stringify({ type: 'listening', peerId: node.libp2p.peerId.toString(), multiaddrs: addresses }))
    } else {
      line(stdout, `peer id: ${node.libp2p.peerId}`)
      for (const address of addresses) {
        line(stdout, `listening on ${address}`)
      }
      line(stdout, allowPush.size > 0 ? `pushes allowed from ${[...allowPush].join(', ')}` : 'pushes refused (allow a peer with --allow-push PEER_ID)')
    }
    await new Promise<void>(resolve => {
      if (signal.aborted) {
        resolve()
      }
      signal.addEventListener('abort', () => { resolve() }, { once: true })
    })
  }, { listen, allowPush, onSession })
}

/** `add PATH`: imports and prints the root */
export async function add (command: ParsedCommand, context: CommandContext): Promise<void> {
  const [path] = command.positionals
  await statPath(path)
  const root = await withNode(command, async node => importPath(node, path, { signal: context.signal }))
  line(context.stdout, command.json ? JSON.stringify({ type: 'add', cid: root.toString(), path }) : root.toString())
}

/** `pull MULTIADDR CID`: mirrors the DAG here, then writes it out with `--out` */
export async function pull (command: ParsedCommand, context: CommandContext): Promise<void> {
  const peers = command.positionals.slice(0, -1).map(parseAddress)
  const root = parseCid(command.positionals[command.positionals.length - 1], 'root')
  const hints = command.hints.map(hint => parseCid(hint, '--hint'))
  await withNode(command, async node => {
    const bar = new ProgressBar(context.stderr, 'pull', { always: command.progress })
    const onProgress = (event: CarMirrorProgressEvents): void => {
      if (event.type === 'car-mirror:block:received') {
        bar.block(event.detail.bytes)
      }
    }
    const options = { hints, pin: command.pin, signal: context.signal, onProgress }
    // several peers: all at once (CAR Pool), each sending a share
    const stats = peers.length === 1 ? await node.carMirror.pull(peers[0], root, options) : await node.carMirror.pull(root, { ...options, providers: peers })
    bar.finish()
    if (command.out != null) {
      await exportTo(node, root, command.out, { signal: context.signal })
    }
    if (command.json) {
      line(context.stdout, JSON.stringify(statsJson('pull', stats)))
    } else {
      line(context.stdout, summary('pull', stats))
      if (command.out != null) {
        line(context.stdout, `wrote ${command.out}`)
      }
    }
  })
}

/** `push MULTIADDR CID|PATH`: imports a path first, then mirrors the DAG to the peer */
export async function push (command: ParsedCommand, context: CommandContext): Promise<void> {
  const peer = parseAddress(command.positionals[0])
  const target = command.positionals[1]
  const hints = command.hints.map(hint => parseCid(hint, '--hint'))
  let root: CID | undefined
  try {
    root = CID.parse(target)
  } catch {
    // not a CID: a path to import
    await statPath(target).catch(() => { throw new UsageError(`'${target}' is neither a CID nor a file or folder`) })
  }
  await withNode(command, async node => {
    root ??= await importPath(node, target, { signal: context.signal })
    // the totals take a walk of the whole DAG: only for a bar that is drawn
    const size = progressShown(context.stderr, command.progress) ? await dagSize(node, root, context.signal) : undefined
    const complete = size?.missing === 0
    const bar = new ProgressBar(context.stderr, 'push', { always: command.progress, totalBlocks: complete ? size?.blocks : undefined, totalBytes: complete ? size?.bytes : undefined })
    const onProgress = (event: CarMirrorProgressEvents): void => {
      if (event.type === 'car-mirror:block:sent') {
        bar.block(event.detail.bytes)
      }
    }
    const stats = await node.carMirror.push(peer, root, { hints, signal: context.signal, onProgress })
    bar.finish()
    line(context.stdout, command.json ? JSON.stringify(statsJson('push', stats)) : summary('push', stats))
  })
}

/** `ls CID`: a folder's entries (or the file itself), from the repo only */
export async function ls (command: ParsedCommand, context: CommandContext): Promise<void> {
  const root = parseCid(command.positionals[0], 'CID')
  await withNode(command, async node => {
    const fs = unixfs(node)
    for await (const entry of fs.ls(root, { offline: true, signal: context.signal })) {
      const info = await fs.stat(entry.cid, { offline: true, signal: context.signal })
      const size = info.type === 'directory' ? undefined : Number(info.size)
      if (command.json) {
        line(context.stdout, JSON.stringify({ type: 'entry', name: entry.name, cid: entry.cid.toString(), kind: info.type === 'directory' ? 'directory' : 'file', size }))
      } else {
        line(context.stdout, `${entry.cid}  ${info.type === 'directory' ? 'dir'.padStart(10) : String(size).padStart(10)}  ${entry.name}${info.type === 'directory' ? '/' : ''}`)
      }
    }
  })
}

/** `stat [CID]`: the repo's peer id, blocks and bytes; or a DAG's blocks and bytes held here */
export async function stat (command: ParsedCommand, context: CommandContext): Promise<void> {
  const root = command.positionals.length > 0 ? parseCid(command.positionals[0], 'CID') : undefined
  await withNode(command, async node => {
    if (root != null) {
      const size = await dagSize(node, root, context.signal)
      const result = { type: 'dag', cid: root.toString(), blocks: size.blocks, bytes: size.bytes, missingBlocks: size.missing, complete: size.missing === 0 }
      line(context.stdout, command.json ? JSON.stringify(result) : `${root}: ${size.blocks} blocks held (${formatBytes(size.bytes)})${size.missing === 0 ? ', complete' : `, ${size.missing} missing below them`}`)
      return
    }
    const { blocks, bytes } = await repoBlockTotals(command.repo)
    const pins = await count(node.pins.ls({ signal: context.signal }))
    const result = { type: 'repo', repo: command.repo, peerId: node.libp2p.peerId.toString(), blocks, bytes, pins }
    line(context.stdout, command.json ? JSON.stringify(result) : `repo ${command.repo}\npeer id ${result.peerId}\n${blocks} blocks (${formatBytes(bytes)}), ${pins} pins`)
  })
}
