import { readFile } from 'node:fs/promises'
import { expect } from 'aegir/chai'
import { KERNEL_BYTES_PATH, KERNEL_WAT_PATH, assembleWat, renderBytesModule } from '../../../scripts/build-wasm.ts'
import { XXH3_KERNEL_WASM } from '../../../src/core/bloom/xxh3.ts'

// Node only (imported from test/node.ts): reads the kernel's source with
// node:fs and assembles it with wabt. aegir runs tests from the repository root.

const STALE = 'xxh3-kernel-bytes.ts does not match xxh3-kernel.wat: run `npm run build:wasm`'

describe('xxh3 WebAssembly kernel source', () => {
  let assembled: Uint8Array<ArrayBuffer>

  before(async () => {
    assembled = await assembleWat(await readFile(KERNEL_WAT_PATH, 'utf8'))
  })

  it('checked-in bytes are the assembled xxh3-kernel.wat, byte for byte', () => {
    expect(XXH3_KERNEL_WASM.byteLength).to.equal(assembled.byteLength, STALE)
    expect([...XXH3_KERNEL_WASM]).to.deep.equal([...assembled], STALE)
  })

  it('xxh3-kernel-bytes.ts is exactly what the build script writes', async () => {
    expect(await readFile(KERNEL_BYTES_PATH, 'utf8')).to.equal(renderBytesModule(assembled), STALE)
  })

  it('assembles deterministically', async () => {
    const again = await assembleWat(await readFile(KERNEL_WAT_PATH, 'utf8'))
    expect([...again]).to.deep.equal([...assembled])
  })

  it('exports only the memory and run, imports nothing', async () => {
    const module = new WebAssembly.Module(assembled)
    expect(WebAssembly.Module.imports(module)).to.deep.equal([])
    expect(WebAssembly.Module.exports(module)).to.deep.equal([
      { name: 'memory', kind: 'memory' },
      { name: 'run', kind: 'function' }
    ])
    expect(WebAssembly.Module.customSections(module, 'name')).to.have.lengthOf(0)
  })
})
