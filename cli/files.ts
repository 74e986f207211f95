/**
 * Files in and out of the repository: import a file or folder as UnixFS,
 * write a UnixFS DAG out as files.
 */

import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, readdir, stat } from 'node:fs/promises'
import { basename, join, relative, sep } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { unixfs } from '@helia/unixfs'
import type { Helia } from '@helia/interface'
import type { AbortOptions } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'

/** What the UnixFS importer takes: a folder (no content) or a file */
interface Candidate {
  path: string
  content?: AsyncIterable<Uint8Array>
}

/** Every file and folder under `dir`, parents first, as UnixFS import candidates named from `dir`'s own name */
async function * candidatesOf (dir: string): AsyncGenerator<Candidate> {
  const top = basename(dir)
  const pending = [dir]
  while (pending.length > 0) {
    const current = pending.shift() as string
    const path = [top, ...relative(dir, current).split(sep).filter(part => part !== '')].join('/')
    yield { path }
    const entries = await readdir(current, { withFileTypes: true })
    entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
    for (const entry of entries) {
      const full = join(current, entry.name)
      if (entry.isDirectory()) {
        pending.push(full)
      } else if (entry.isFile()) {
        yield { path: `${path}/${entry.name}`, content: createReadStream(full) }
      }
    }
  }
}

/**
 * Imports a file or a folder (recursively; symbolic links and special files
 * are left out) into the node's store as UnixFS, CID version 1 with raw
 * leaves, and returns the root's CID.
 *
 * @example
 *
 * ```ts
 * const root = await importPath(node, './photos')
 * ```
 */
export async function importPath (helia: Helia, path: string, options: AbortOptions = {}): Promise<CID> {
  const fs = unixfs(helia)
  const info = await stat(path)
  if (info.isFile()) {
    return fs.addByteStream(createReadStream(path), { ...options, cidVersion: 1, rawLeaves: true })
  }
  if (!info.isDirectory()) {
    throw new Error(`${path} is neither a file nor a folder`)
  }
  const top = basename(path)
  let root: CID | undefined
  for await (const entry of fs.addAll(candidatesOf(path), { ...options, cidVersion: 1, rawLeaves: true })) {
    if (entry.path === top) {
      root = entry.cid
    }
  }
  if (root == null) {
    throw new Error(`Importing ${path} produced no root`)
  }
  return root
}

/**
 * Writes the UnixFS DAG under `root`, which the store must hold, to `out`: a
 * folder becomes a folder (created if needed), a file a file.
 */
export async function exportTo (helia: Helia, root: CID, out: string, options: AbortOptions = {}): Promise<void> {
  const fs = unixfs(helia)
  const info = await fs.stat(root, { ...options, offline: true })
  if (info.type !== 'directory') {
    await pipeline(Readable.from(fs.cat(root, { ...options, offline: true })), createWriteStream(out), options)
    return
  }
  await mkdir(out, { recursive: true })
  for await (const entry of fs.ls(root, { ...options, offline: true })) {
    if (entry.name.includes('/') || entry.name === '..' || entry.name === '.' || entry.name === '') {
      throw new Error(`Refusing to write an entry named '${entry.name}'`)
    }
    await exportTo(helia, entry.cid, join(out, entry.name), options)
  }
}
