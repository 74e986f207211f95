// The browser example page (index.html, served by server.ts): a Helia node in
// the page imports a folder the user picks, pushes it with CAR Mirror to the
// Node server that serves the page, then a second, empty node in the page
// pulls it back, lists the tree and checks every file's bytes against the
// picked file. test/examples/browser-page.node.ts drives it in Chromium.
import { withLibp2pLight } from '@helia/libp2p'
import { unixfs } from '@helia/unixfs'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createHeliaLight } from 'helia'
import { withCarMirror } from 'helia-car-mirror'
import { walkDag } from 'helia-car-mirror/core'
import { concat } from 'uint8arrays/concat'
import { equals } from 'uint8arrays/equals'
import type { UnixFS } from '@helia/unixfs'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Helia } from 'helia'
import type { CarMirrorProgressEvents, HeliaWithCarMirror, TransferStats } from 'helia-car-mirror'
import type { CID } from 'multiformats/cid'

/** What GET /config.json answers */
interface PageConfig {
  /** The server's WebSocket multiaddrs, with its peer id */
  serverAddrs: string[]
}

type PageNode = Helia & HeliaWithCarMirror

/** One entry of the pulled tree */
interface TreeEntry {
  /** Relative to the root directory, e.g. `docs/guide.txt` */
  path: string
  cid: CID
  type: 'file' | 'directory'
  /** File size in bytes (0 for a directory) */
  size: bigint
}

/** TransferStats fields shown, in this order */
const STAT_FIELDS = ['blocksSent', 'blockBytesSent', 'blocksReceived', 'blockBytesReceived', 'bytesSent', 'bytesReceived', 'duplicateBlocks', 'bloomBytes', 'statusFrames', 'roundTrips', 'durationMs'] as const satisfies ReadonlyArray<keyof TransferStats>

/** The element with this id, checked to be of the given type */
function element<T extends HTMLElement> (id: string, type: new () => T): T {
  const found = document.getElementById(id)
  if (!(found instanceof type)) {
    throw new Error(`the page has no #${id}`)
  }
  return found
}

const ui = {
  server: element('server', HTMLElement),
  folder: element('folder', HTMLInputElement),
  fileCount: element('file-count', HTMLElement),
  dagSize: element('dag-size', HTMLElement),
  rootCid: element('root-cid', HTMLElement),
  pushProgress: element('push-progress', HTMLProgressElement),
  pushText: element('push-text', HTMLElement),
  pushStats: element('push-stats', HTMLElement),
  pullProgress: element('pull-progress', HTMLProgressElement),
  pullText: element('pull-text', HTMLElement),
  pullStats: element('pull-stats', HTMLElement),
  tree: element('tree', HTMLTableElement),
  status: element('status', HTMLElement)
}

/**
 * A Helia node for this page: libp2p over WebSockets only, memory stores,
 * CAR Mirror. Call `start()` on it.
 */
function createPageNode (): PageNode {
  return withCarMirror(withLibp2pLight(createHeliaLight(), {
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    // The server listens on plain ws:// at 127.0.0.1, which a browser's
    // default connection gater refuses to dial (DialDeniedError): allow it,
    // for a server on this machine or the LAN only. A public server should
    // listen on wss:// with a DNS name and the page keep the default gater.
    connectionGater: { denyDialMultiaddr: () => false }
  }))
}

function setStatus (state: 'idle' | 'working' | 'done' | 'error', text: string): void {
  ui.status.dataset.state = state
  ui.status.textContent = text
}

function formatBytes (bytes: number | bigint): string {
  let value = Number(bytes)
  if (value < 1024) {
    return `${value} B`
  }
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let unit = -1
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`
}

/** The bytes of a picked file, chunk by chunk as the browser reads them */
async function * fileChunks (file: File): AsyncGenerator<Uint8Array> {
  const reader = file.stream().getReader()
  try {
    while (true) {
      const { done, value } = await reader.read()
      if (done) {
        return
      }
      yield value
    }
  } finally {
    reader.releaseLock()
  }
}

/**
 * The picked folder's name and its files by path relative to it: a
 * `webkitdirectory` input names each file `folder/sub/file.txt`
 */
function pickedFolder (files: File[]): { name: string, files: Map<string, File> } {
  const name = files[0].webkitRelativePath.split('/')[0]
  const byPath = new Map<string, File>()
  for (const file of files) {
    const [top, ...rest] = file.webkitRelativePath.split('/')
    if (top !== name || rest.length === 0) {
      throw new Error(`${file.webkitRelativePath} is not inside the picked folder ${name}`)
    }
    byPath.set(rest.join('/'), file)
  }
  return { name, files: byPath }
}

/** Imports the files as one UnixFS directory (CIDv1, raw leaves) and returns its CID */
async function importFolder (fs: UnixFS, name: string, files: Map<string, File>): Promise<CID> {
  const candidates = [...files].map(([path, file]) => ({ path: `${name}/${path}`, content: fileChunks(file) }))
  let root: CID | undefined
  for await (const entry of fs.addAll(candidates, { cidVersion: 1, rawLeaves: true })) {
    if (entry.path === name) {
      root = entry.cid
    }
  }
  if (root == null) {
    throw new Error(`the import yielded no directory ${name}`)
  }
  return root
}

/** Blocks and block bytes of the DAG under `root`, from the local store */
async function dagSize (helia: PageNode, root: CID): Promise<{ blocks: number, bytes: number }> {
  let blocks = 0
  let bytes = 0
  for await (const block of walkDag(helia.blockstore, [root], { offline: true })) {
    blocks++
    bytes += block.bytes.byteLength
  }
  return { blocks, bytes }
}

/** Follows a transfer's blocks (`car-mirror:block:sent` or `:received`) on a progress bar */
function progressOf (kind: 'sent' | 'received', bar: HTMLProgressElement, text: HTMLElement, total: { blocks: number, bytes: number }): (event: CarMirrorProgressEvents) => void {
  let blocks = 0
  let bytes = 0
  bar.max = Math.max(total.bytes, 1)
  bar.value = 0
  const show = (): void => {
    bar.value = bytes
    text.textContent = `${blocks} / ${total.blocks} blocks ${kind}, ${formatBytes(bytes)} / ${formatBytes(total.bytes)}`
  }
  show()
  return event => {
    if ((kind === 'sent' && event.type === 'car-mirror:block:sent') || (kind === 'received' && event.type === 'car-mirror:block:received')) {
      blocks++
      bytes += event.detail.bytes
      show()
    }
  }
}

/** Fills a `<dl>` with a transfer's figures; each `<dd>` has `data-key` and the raw number as `data-value` */
function showStats (list: HTMLElement, stats: TransferStats): void {
  list.replaceChildren()
  for (const key of STAT_FIELDS) {
    const value = stats[key]
    const term = document.createElement('dt')
    term.textContent = key
    const detail = document.createElement('dd')
    detail.dataset.key = key
    detail.dataset.value = String(value)
    if (key === 'durationMs') {
      detail.textContent = `${Math.round(value)} ms`
    } else if (/bytes/i.test(key)) {
      detail.textContent = `${value.toLocaleString('en')} (${formatBytes(value)})`
    } else {
      detail.textContent = value.toLocaleString('en')
    }
    list.append(term, detail)
  }
}

/** The tree under the directory `cid`, depth first, from the local store only */
async function * listTree (fs: UnixFS, cid: CID, prefix = ''): AsyncGenerator<TreeEntry> {
  for await (const entry of fs.ls(cid, { offline: true })) {
    const path = prefix === '' ? entry.name : `${prefix}/${entry.name}`
    const stat = await fs.stat(entry.cid, { offline: true })
    const type = stat.type === 'directory' ? 'directory' : 'file'
    yield { path, cid: entry.cid, type, size: type === 'directory' ? 0n : stat.size }
    if (type === 'directory') {
      yield * listTree(fs, entry.cid, path)
    }
  }
}

async function readAll (chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const chunk of chunks) {
    parts.push(chunk)
  }
  return concat(parts)
}

/** Adds a row for `entry` to the tree table; its last cell is for the verdict */
function addRow (entry: TreeEntry): HTMLTableRowElement {
  const row = document.createElement('tr')
  row.dataset.path = entry.path
  row.dataset.type = entry.type
  row.dataset.size = String(entry.size)
  row.dataset.cid = entry.cid.toString()
  const cells = [entry.type === 'directory' ? `${entry.path}/` : entry.path, entry.type === 'directory' ? '' : formatBytes(entry.size), entry.cid.toString(), '']
  const classes = ['path', 'size', 'cid', 'verified']
  for (const [i, text] of cells.entries()) {
    const cell = document.createElement('td')
    cell.className = classes[i]
    cell.textContent = text
    row.append(cell)
  }
  ui.tree.tBodies[0].append(row)
  return row
}

function reset (): void {
  for (const field of [ui.fileCount, ui.dagSize, ui.rootCid, ui.pushText, ui.pullText]) {
    field.textContent = '–'
  }
  for (const list of [ui.pushStats, ui.pullStats, ui.tree.tBodies[0]]) {
    list.replaceChildren()
  }
  ui.pushProgress.value = 0
  ui.pullProgress.value = 0
}

/** Import, push, pull back into a fresh node, compare: the whole demo for one picked folder */
async function mirror (pusher: PageNode, server: Multiaddr[], picked: File[]): Promise<void> {
  reset()
  if (picked.length === 0) {
    throw new Error('the picked folder has no files')
  }
  const folder = pickedFolder(picked)
  ui.fileCount.textContent = `${folder.files.size} in ${folder.name}/`

  setStatus('working', `importing ${folder.files.size} files…`)
  const root = await importFolder(unixfs(pusher), folder.name, folder.files)
  const total = await dagSize(pusher, root)
  ui.rootCid.textContent = root.toString()
  ui.dagSize.textContent = `${total.blocks} blocks, ${formatBytes(total.bytes)}`

  setStatus('working', 'pushing to the server…')
  const pushed = await pusher.carMirror.push(server, root, {
    onProgress: progressOf('sent', ui.pushProgress, ui.pushText, total)
  })
  ui.pushProgress.value = ui.pushProgress.max
  if (pushed.blocksSent < total.blocks) {
    ui.pushText.textContent += ' (the server held the others already)'
  }
  showStats(ui.pushStats, pushed)

  setStatus('working', 'pulling back into a second node…')
  const puller = createPageNode()
  await puller.start()
  try {
    const pulled = await puller.carMirror.pull(server, root, {
      onProgress: progressOf('received', ui.pullProgress, ui.pullText, total)
    })
    showStats(ui.pullStats, pulled)

    setStatus('working', 'checking the files…')
    const fs = unixfs(puller)
    const problems: string[] = []
    let verified = 0
    const listed = new Set<string>()
    for await (const entry of listTree(fs, root)) {
      const row = addRow(entry)
      if (entry.type === 'directory') {
        continue
      }
      listed.add(entry.path)
      const file = folder.files.get(entry.path)
      const same = file != null && equals(await readAll(fs.cat(entry.cid, { offline: true })), new Uint8Array(await file.arrayBuffer()))
      row.dataset.verified = String(same)
      row.cells[3].textContent = same ? '✓ equal' : '✗ differs'
      row.cells[3].className = `verified ${same ? 'ok' : 'bad'}`
      if (same) {
        verified++
      } else {
        problems.push(`${entry.path} differs`)
      }
    }
    for (const path of folder.files.keys()) {
      if (!listed.has(path)) {
        problems.push(`${path} is missing`)
      }
    }
    if (problems.length > 0) {
      throw new Error(problems.join(', '))
    }
    setStatus('done', `done: ${verified} files verified`)
  } finally {
    await puller.stop()
  }
}

async function main (): Promise<void> {
  const response = await fetch('/config.json')
  if (!response.ok) {
    throw new Error(`GET /config.json: ${response.status}`)
  }
  const config: PageConfig = await response.json()
  if (!Array.isArray(config.serverAddrs) || config.serverAddrs.length === 0) {
    throw new Error('/config.json names no server address')
  }
  const server = config.serverAddrs.map(addr => multiaddr(addr))
  ui.server.textContent = config.serverAddrs.join(' ')

  const pusher = createPageNode()
  await pusher.start()
  // picking the same folder again (after changing a file, say) is a change too:
  // the second push sends only the blocks the server does not hold
  ui.folder.addEventListener('click', () => { ui.folder.value = '' })
  ui.folder.addEventListener('change', () => {
    const picked = [...ui.folder.files ?? []]
    ui.folder.disabled = true
    mirror(pusher, server, picked)
      .catch(showError)
      .finally(() => { ui.folder.disabled = false })
  })
  ui.folder.disabled = false
  setStatus('idle', 'pick a folder')
}

function showError (err: unknown): void {
  setStatus('error', `error: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`)
}

main().catch(showError)
