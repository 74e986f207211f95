/**
 * Benchmark datasets, each in two versions: an old one and an updated one
 * with about 1% of its files changed or added deep in the tree (for the
 * large file: a few changed chunks). All synthetic content comes from a
 * seeded PRNG, so every run builds byte-identical DAGs; the real file tree
 * is whatever the installed package holds.
 *
 * Each dataset is written to two on-disk blockstores (blockstore-fs): `old`
 * holds the old version only (a warm receiver starts from it), `both` holds
 * both versions (the sender). Workers load them into memory, or use them on
 * disk for the large file.
 */

import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readdir, readFile, stat } from 'node:fs/promises'
import { join, relative, resolve, sep } from 'node:path'
import { promisify } from 'node:util'
import { unixfs } from '@helia/unixfs'
import { FsBlockstore } from 'blockstore-fs'
import { walkDag } from '../src/core/index.ts'
import type { Blockstore } from 'interface-blockstore'
import type { CID } from 'multiformats/cid'

const run = promisify(execFile)

export type DatasetName = 'real' | 'deep' | 'hamt' | 'large'
export const DATASET_NAMES: DatasetName[] = ['real', 'deep', 'hamt', 'large']

export type Mode = 'quick' | 'full'

export interface DagSize {
  blocks: number
  bytes: number
}

/** What the runner needs to know about a built dataset (JSON-safe) */
export interface DatasetInfo {
  name: DatasetName
  description: string
  /** What the update changed */
  update: string
  /** Blockstore directory holding the old version only */
  oldDir: string
  /** Blockstore directory holding both versions */
  bothDir: string
  oldRoot: string
  newRoot: string
  old: DagSize
  new: DagSize
  /** Blocks of the new version that the old one lacks */
  added: DagSize
  /** Wall time to generate and import both versions, ms */
  buildMs: number
  /** The file the `cat-path` scenario reads by path in the new version (tree datasets) */
  catPath?: CatPath
  /** The file the `cat-file` scenario reads whole by its own CID: the new version's largest file of more than one block (tree datasets that have one) */
  catFile?: CatFile
}

/** The largest multi-block file of the new version, read whole by its CID */
export interface CatFile {
  /** Path below the root (for the report; the cat names the file's CID) */
  path: string
  /** The file's root CID */
  cid: string
  /** Directories above the file below the root */
  depth: number
  /** The file's length and SHA-256 (hex) */
  size: number
  sha256: string
  /** The file's blocks (root and leaves) and their bytes: what `unixfs.cat(cid)` reads */
  blocks: number
  bytes: number
}

/** One small file deep in the new version, and what reading it by path touches */
export interface CatPath {
  /** Path below the root, e.g. `2017/01/docs-0/notes-2-x.md` */
  path: string
  /** Directories above the file below the root */
  depth: number
  /** Other entries (files and folders) in the file's folder */
  siblings: number
  /** The file's length and SHA-256 (hex) */
  size: number
  sha256: string
  /** Distinct blocks (and their bytes) `unixfs.cat(root, { path })` reads: the directory blocks on the path and the file's */
  blocks: number
  bytes: number
}

// ---------------------------------------------------------------------------
// a small, fast, seeded PRNG (sfc32, seeded from a string with cyrb128)

export class Rng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor (seed: string) {
    let h1 = 1779033703
    let h2 = 3144134277
    let h3 = 1013904242
    let h4 = 2773480762
    for (let i = 0; i < seed.length; i++) {
      const k = seed.charCodeAt(i)
      h1 = h2 ^ Math.imul(h1 ^ k, 597399067)
      h2 = h3 ^ Math.imul(h2 ^ k, 2869860233)
      h3 = h4 ^ Math.imul(h3 ^ k, 951274213)
      h4 = h1 ^ Math.imul(h4 ^ k, 2716044179)
    }
    h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067)
    h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233)
    h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213)
    h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179)
    this.a = (h1 ^ h2 ^ h3 ^ h4) >>> 0
    this.b = (h2 ^ h1) >>> 0
    this.c = (h3 ^ h1) >>> 0
    this.d = (h4 ^ h1) >>> 0
    for (let i = 0; i < 12; i++) {
      this.u32()
    }
  }

  /** A uniform 32-bit unsigned integer */
  u32 (): number {
    this.a >>>= 0
    this.b >>>= 0
    this.c >>>= 0
    this.d >>>= 0
    let t = (this.a + this.b) | 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) | 0
    this.c = (this.c << 21) | (this.c >>> 11)
    this.d = (this.d + 1) | 0
    t = (t + this.d) | 0
    this.c = (this.c + t) | 0
    return t >>> 0
  }

  /** A float in [0, 1) */
  next (): number {
    return this.u32() / 4294967296
  }

  /** An integer in [min, max] */
  int (min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1))
  }

  /** A size between min and max, log-uniformly distributed */
  logSize (min: number, max: number): number {
    return Math.round(Math.exp(Math.log(min) + this.next() * (Math.log(max) - Math.log(min))))
  }

  pick<T> (items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]
  }

  /** `length` pseudo-random bytes */
  bytes (length: number): Uint8Array {
    const out = new Uint8Array(length)
    const words = new Uint32Array(out.buffer, 0, length >>> 2)
    // xorshift128 seeded from this generator: fast enough for hundreds of MB
    let x = this.u32() | 1
    let y = this.u32()
    let z = this.u32()
    let w = this.u32()
    for (let i = 0; i < words.length; i++) {
      const t = x ^ (x << 11)
      x = y
      y = z
      z = w
      w = (w ^ (w >>> 19) ^ t ^ (t >>> 8)) >>> 0
      words[i] = w
    }
    for (let i = words.length * 4; i < length; i++) {
      out[i] = this.u32() & 0xff
    }
    return out
  }
}

// ---------------------------------------------------------------------------
// file trees

interface FileEntry {
  path: string
  content: Uint8Array
}

/** Paths sorted deepest first, then by name: "deep in the tree" */
function deepestFirst (files: FileEntry[]): FileEntry[] {
  const depth = (path: string): number => path.split('/').length
  return [...files].sort((a, b) => depth(b.path) - depth(a.path) || (a.path < b.path ? -1 : 1))
}

/**
 * About `fraction` of the files changed or added, deep in the tree: half of
 * the changes rewrite part of an existing file among the deepest ones, half
 * add a new file next to one of them.
 */
function updateTree (files: FileEntry[], fraction: number, rng: Rng): { files: FileEntry[], update: string } {
  const total = Math.max(2, Math.round(files.length * fraction))
  const changeCount = Math.ceil(total / 2)
  const addCount = total - changeCount
  // candidates: the deepest quarter of the files (at least enough)
  const deep = deepestFirst(files).slice(0, Math.max(total * 4, Math.ceil(files.length / 4)))
  const chosen = new Set<string>()
  while (chosen.size < Math.min(changeCount, deep.length)) {
    chosen.add(rng.pick(deep).path)
  }
  const updated = files.map(file => {
    if (!chosen.has(file.path)) {
      return file
    }
    // rewrite a few hundred bytes somewhere in the file and append a line
    const content = new Uint8Array(file.content.byteLength + 64)
    content.set(file.content)
    const at = rng.int(0, Math.max(0, file.content.byteLength - 256))
    content.set(rng.bytes(Math.min(256, file.content.byteLength)), at)
    content.set(rng.bytes(64), file.content.byteLength)
    return { path: file.path, content }
  })
  for (let i = 0; i < addCount; i++) {
    const next = rng.pick(deep).path
    const dir = next.slice(0, next.lastIndexOf('/') + 1)
    updated.push({ path: `${dir}added-${i}-${rng.u32().toString(36)}.txt`, content: rng.bytes(rng.logSize(300, 24 * 1024)) })
  }
  return { files: updated, update: `${chosen.size} of ${files.length} files changed and ${addCount} added, deepest first` }
}

/** The files of a real directory, in a stable order */
async function readTree (dir: string): Promise<FileEntry[]> {
  const names = (await readdir(dir, { recursive: true })).sort()
  const files: FileEntry[] = []
  for (const name of names) {
    const path = join(dir, name)
    const info = await stat(path)
    if (info.isFile()) {
      files.push({ path: relative(dir, path).split(sep).join('/'), content: new Uint8Array(await readFile(path)) })
    }
  }
  return files
}

const DIR_NAMES = ['docs', 'photos', 'projects', 'archive', 'notes', 'music', 'backup', 'src', 'drafts', 'shared', 'misc', 'work']
const EXTENSIONS = ['txt', 'md', 'json', 'jpg', 'png', 'pdf', 'ts', 'csv', 'log', 'html']

/** Year folders at the top, month folders below them, then topics */
function dirName (level: number, index: number, rng: Rng): string {
  if (level === 0) {
    return `${2017 + index}`
  }
  if (level === 1) {
    return String(index + 1).padStart(2, '0')
  }
  return `${rng.pick(DIR_NAMES)}-${index}`
}

/**
 * A deep tree shaped like a home directory that grew over time: `depth`
 * levels of directories (year and month folders near the top, project and
 * topic folders below), a few small files at every level and, now and then, a
 * file of several chunks.
 */
function deepTree (rng: Rng, branching: number[], filesPerDir: [number, number]): FileEntry[] {
  const files: FileEntry[] = []
  const visit = (prefix: string, level: number): void => {
    const fileCount = rng.int(filesPerDir[0], filesPerDir[1])
    for (let i = 0; i < fileCount; i++) {
      // mostly small files; 1 in 250 spans two 1 MiB chunks
      const size = rng.next() < 1 / 250 ? rng.int(1_100_000, 1_600_000) : rng.logSize(120, 40 * 1024)
      files.push({ path: `${prefix}${rng.pick(DIR_NAMES)}-${i}-${rng.u32().toString(36)}.${rng.pick(EXTENSIONS)}`, content: rng.bytes(size) })
    }
    if (level >= branching.length) {
      return
    }
    // a fractional branching factor: 1.5 means one or two subfolders
    const b = branching[level]
    const dirCount = Math.floor(b) + (rng.next() < b - Math.floor(b) ? 1 : 0)
    for (let i = 0; i < dirCount; i++) {
      visit(`${prefix}${dirName(level, i, rng)}/`, level + 1)
    }
  }
  visit('', 0)
  return files
}

/** A flat directory of `count` small files: HAMT-sharded by unixfs */
function wideDirectory (rng: Rng, count: number): FileEntry[] {
  const files: FileEntry[] = []
  for (let i = 0; i < count; i++) {
    files.push({ path: `IMG_${String(i).padStart(6, '0')}-${rng.u32().toString(36)}.jpg`, content: rng.bytes(rng.logSize(200, 4096)) })
  }
  return files
}

function updateWide (files: FileEntry[], fraction: number, rng: Rng): { files: FileEntry[], update: string } {
  const total = Math.max(2, Math.round(files.length * fraction))
  const changeCount = Math.ceil(total / 2)
  const addCount = total - changeCount
  const chosen = new Set<number>()
  while (chosen.size < changeCount) {
    chosen.add(rng.int(0, files.length - 1))
  }
  const updated = files.map((file, i) => chosen.has(i) ? { path: file.path, content: rng.bytes(file.content.byteLength) } : file)
  for (let i = 0; i < addCount; i++) {
    updated.push({ path: `IMG_${String(files.length + i).padStart(6, '0')}-new.jpg`, content: rng.bytes(rng.logSize(200, 4096)) })
  }
  return { files: updated, update: `${changeCount} of ${files.length} entries changed and ${addCount} added` }
}

// ---------------------------------------------------------------------------
// the large file: generated chunk by chunk, never whole in memory

const CHUNK = 1024 * 1024

async function * largeFile (seed: string, size: number, changedChunks: Set<number>): AsyncGenerator<Uint8Array> {
  for (let offset = 0, i = 0; offset < size; offset += CHUNK, i++) {
    const chunk = new Rng(`${seed}/${i}`).bytes(Math.min(CHUNK, size - offset))
    if (changedChunks.has(i)) {
      // the new version rewrites 4 KiB in the middle of this chunk
      chunk.set(new Rng(`${seed}/changed/${i}`).bytes(4096), Math.min(chunk.byteLength - 4096, 300_000))
    }
    yield chunk
  }
}

// ---------------------------------------------------------------------------
// building

/** Only writes blocks the store does not hold yet (importing a new version next to the old one) */
function onlyNew (store: FsBlockstore): Pick<Blockstore, 'get' | 'put' | 'has'> {
  return {
    get: (cid, options) => store.get(cid, options),
    has: async (cid, options) => store.has(cid, options),
    put: async (cid, bytes, options) => {
      if (!await store.has(cid, options)) {
        await store.put(cid, bytes, options)
      }
      return cid
    }
  }
}

async function importTree (store: Pick<Blockstore, 'get' | 'put' | 'has'>, files: FileEntry[], shardSplitThresholdBytes?: number): Promise<CID> {
  let root: CID | undefined
  const source = files.map(file => ({ path: file.path, content: file.content }))
  for await (const entry of unixfs({ blockstore: store }).addAll(source, { wrapWithDirectory: true, shardSplitThresholdBytes })) {
    root = entry.cid
  }
  if (root == null) {
    throw new Error('nothing imported')
  }
  return root
}

/**
 * Picks the file `cat-path` reads: in the folder at depth 3 or more with the
 * most entries (the deepest folder when none is that deep), the median-sized
 * file under 256 KiB (one block with raw leaves). With no file that small
 * that deep, the folder is taken at any depth; with none at all, there is
 * no such file (undefined)
 */
function pickCatFile (files: FileEntry[]): { file: FileEntry, depth: number, siblings: number } | undefined {
  const folders = new Map<string, { files: FileEntry[], subfolders: Set<string> }>()
  const folder = (dir: string): { files: FileEntry[], subfolders: Set<string> } => {
    let f = folders.get(dir)
    if (f == null) {
      f = { files: [], subfolders: new Set() }
      folders.set(dir, f)
    }
    return f
  }
  for (const file of files) {
    const parts = file.path.split('/')
    folder(parts.slice(0, -1).join('/')).files.push(file)
    for (let i = 0; i < parts.length - 1; i++) {
      folder(parts.slice(0, i).join('/')).subfolders.add(parts[i])
    }
  }
  const depthOf = (dir: string): number => dir === '' ? 0 : dir.split('/').length
  const maxDepth = Math.max(...[...folders.keys()].map(depthOf))
  const minDepth = Math.min(3, maxDepth)
  const entries = (dir: string): number => (folders.get(dir)?.files.length ?? 0) + (folders.get(dir)?.subfolders.size ?? 0)
  const holdsSmall = (d: string): boolean => folders.get(d)?.files.some(f => f.content.byteLength < 256 * 1024) ?? false
  const byEntries = (a: string, b: string): number => entries(b) - entries(a) || depthOf(b) - depthOf(a) || (a < b ? -1 : 1)
  const candidates = [...folders.keys()].filter(holdsSmall)
  const deepEnough = candidates.filter(d => depthOf(d) >= minDepth)
  const [dir] = (deepEnough.length > 0 ? deepEnough : candidates).sort(byEntries)
  if (dir == null) {
    return undefined
  }
  const small = (folders.get(dir)?.files ?? []).filter(f => f.content.byteLength < 256 * 1024).sort((a, b) => a.content.byteLength - b.content.byteLength || (a.path < b.path ? -1 : 1))
  return { file: small[Math.floor((small.length - 1) / 2)], depth: depthOf(dir), siblings: entries(dir) - 1 }
}

/** Reads the file by path with unixfs and counts the distinct blocks that took */
async function catPathOf (store: FsBlockstore, root: CID, files: FileEntry[]): Promise<CatPath | undefined> {
  const picked = pickCatFile(files)
  if (picked == null) {
    return undefined
  }
  const { file, depth, siblings } = picked
  const read = new Map<string, number>()
  const counting: Pick<Blockstore, 'get' | 'put' | 'has'> = {
    get: async function * (cid, options) {
      let bytes = 0
      for await (const chunk of store.get(cid, options)) {
        bytes += chunk.byteLength
        yield chunk
      }
      read.set(cid.toString(), bytes)
    },
    has: async (cid, options) => store.has(cid, options),
    put: async (cid, bytes, options) => store.put(cid, bytes, options)
  }
  const hash = createHash('sha256')
  let length = 0
  for await (const chunk of unixfs({ blockstore: counting }).cat(root, { path: file.path })) {
    hash.update(chunk)
    length += chunk.byteLength
  }
  const sha256 = hash.digest('hex')
  if (length !== file.content.byteLength || sha256 !== createHash('sha256').update(file.content).digest('hex')) {
    throw new Error(`cat of ${file.path} did not return the file`)
  }
  return { path: file.path, depth, siblings, size: length, sha256, blocks: read.size, bytes: [...read.values()].reduce((a, b) => a + b, 0) }
}

/**
 * Picks the file `cat-file` reads: the largest file of more than one block
 * (ties by path), found by its path under the root; undefined when every
 * file fits one block
 */
async function catFileOf (store: FsBlockstore, root: CID, files: FileEntry[]): Promise<CatFile | undefined> {
  const fs = unixfs({ blockstore: store })
  const [file] = [...files].sort((a, b) => b.content.byteLength - a.content.byteLength || (a.path < b.path ? -1 : 1))
  if (file == null) {
    return undefined
  }
  const { cid } = await fs.stat(root, { path: file.path, offline: true })
  const blocks = await dagBlocks(store, cid)
  if (blocks.size < 2) {
    // the largest file is one block: so is every other
    return undefined
  }
  const hash = createHash('sha256')
  let length = 0
  for await (const chunk of fs.cat(cid, { offline: true })) {
    hash.update(chunk)
    length += chunk.byteLength
  }
  const sha256 = hash.digest('hex')
  if (length !== file.content.byteLength || sha256 !== createHash('sha256').update(file.content).digest('hex')) {
    throw new Error(`cat of ${file.path} (${cid}) did not return the file`)
  }
  return { path: file.path, cid: cid.toString(), depth: file.path.split('/').length - 1, size: length, sha256, ...size(blocks) }
}

async function dagBlocks (store: FsBlockstore, root: CID): Promise<Map<string, number>> {
  const blocks = new Map<string, number>()
  for await (const block of walkDag(store, [root], { readAhead: 32 })) {
    blocks.set(Buffer.from(block.cid.multihash.bytes).toString('base64'), block.bytes.byteLength)
  }
  return blocks
}

function size (blocks: Map<string, number>): DagSize {
  let bytes = 0
  for (const n of blocks.values()) {
    bytes += n
  }
  return { blocks: blocks.size, bytes }
}

export interface DatasetOptions {
  mode: Mode
  /** Where the blockstores go */
  workDir: string
  /** Overrides the real file tree (default: node_modules/libp2p in quick mode, node_modules/typescript/lib in full mode) */
  realTree?: string
  /** Overrides the large file's size, bytes (default: 32 MiB quick, 200 MiB full) */
  largeBytes?: number
}

/** Builds one dataset's two versions into `old` and `both` blockstores under the work directory */
export async function buildDataset (name: DatasetName, options: DatasetOptions): Promise<DatasetInfo> {
  const started = performance.now()
  const quick = options.mode === 'quick'
  const oldDir = join(options.workDir, name, 'old')
  const bothDir = join(options.workDir, name, 'both')
  const oldStore = new FsBlockstore(oldDir)
  await oldStore.open()
  const rng = new Rng(`car-mirror-bench/${name}`)

  let description: string
  let update: string
  let oldRoot: CID
  let importNew: (store: Pick<Blockstore, 'get' | 'put' | 'has'>) => Promise<CID>
  let newFiles: FileEntry[] | undefined

  if (name === 'large') {
    const bytes = options.largeBytes ?? (quick ? 32 : 200) * 1024 * 1024
    const chunks = Math.ceil(bytes / CHUNK)
    const changed = new Set([Math.floor(chunks * 0.1), Math.floor(chunks * 0.4), Math.floor(chunks * 0.7), chunks - 1])
    description = `one ${(bytes / 1024 / 1024).toFixed(0)} MiB file of seeded random bytes (1 MiB raw leaves)`
    update = `${changed.size} of ${chunks} chunks changed (4 KiB each)`
    oldRoot = await unixfs({ blockstore: oldStore }).addByteStream(largeFile('large', bytes, new Set()))
    importNew = async (store) => unixfs({ blockstore: store }).addByteStream(largeFile('large', bytes, changed))
  } else {
    let files: FileEntry[]
    let shardSplitThresholdBytes: number | undefined
    let next: { files: FileEntry[], update: string }
    if (name === 'real') {
      const dir = resolve(options.realTree ?? (quick ? 'node_modules/libp2p' : 'node_modules/typescript/lib'))
      files = await readTree(dir)
      description = `the files of ${relative(process.cwd(), dir)} (${files.length} files)`
      next = updateTree(files, 0.01, rng)
    } else if (name === 'deep') {
      files = quick
        ? deepTree(rng, [3, 2, 2, 2, 1.4, 1.3, 1.2, 1.1], [1, 4])
        : deepTree(rng, [4, 3, 2, 2, 2, 1.5, 1.5, 1.3], [1, 5])
      description = `a depth-8 tree of ${files.length} seeded files, small files at every level`
      next = updateTree(files, 0.01, rng)
    } else {
      const count = quick ? 1000 : 10_000
      files = wideDirectory(rng, count)
      // 10,000 entries pass unixfs' default 256 KiB threshold; the quick set is forced to shard
      shardSplitThresholdBytes = quick ? 16 * 1024 : undefined
      description = `one HAMT-sharded directory of ${count} small files`
      next = updateWide(files, 0.01, rng)
    }
    update = next.update
    newFiles = next.files
    oldRoot = await importTree(oldStore, files, shardSplitThresholdBytes)
    importNew = async (store) => importTree(store, next.files, shardSplitThresholdBytes)
  }

  // both = hard links to old, plus the new version's new blocks (blockstore-fs
  // writes a temporary file and renames it, so the old store is never touched)
  await run('cp', ['-al', oldDir, bothDir])
  const bothStore = new FsBlockstore(bothDir)
  await bothStore.open()
  const newRoot = await importNew(onlyNew(bothStore))

  const oldBlocks = await dagBlocks(bothStore, oldRoot)
  const newBlocks = await dagBlocks(bothStore, newRoot)
  const added = new Map([...newBlocks].filter(([key]) => !oldBlocks.has(key)))
  const catPath = newFiles == null ? undefined : await catPathOf(bothStore, newRoot, newFiles)
  const catFile = newFiles == null ? undefined : await catFileOf(bothStore, newRoot, newFiles)
  return {
    name,
    description,
    update,
    oldDir,
    bothDir,
    oldRoot: oldRoot.toString(),
    newRoot: newRoot.toString(),
    old: size(oldBlocks),
    new: size(newBlocks),
    added: size(added),
    buildMs: performance.now() - started,
    catPath,
    catFile
  }
}
