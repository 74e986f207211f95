import fs from 'node:fs'
import path from 'node:path'

// playwright-test always runs Playwright's own browser install, which cannot
// download anything on our machines: point it at Debian's chromium instead
// (apt-get install -y chromium), laid out where Playwright looks for its own.
const chromium = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium'
process.env.PLAYWRIGHT_BROWSERS_PATH ??= path.resolve('.pw-browsers')
const layout = {
  chromium: ['chrome-linux64', 'chrome'],
  'chromium-headless-shell': ['chrome-headless-shell-linux64', 'chrome-headless-shell']
}
const browsersJson = 'node_modules/playwright-core/browsers.json'
if (fs.existsSync(browsersJson)) {
  for (const browser of JSON.parse(fs.readFileSync(browsersJson, 'utf8')).browsers) {
    if (!(browser.name in layout)) { continue }
    const [folder, executable] = layout[browser.name]
    const dir = path.join(process.env.PLAYWRIGHT_BROWSERS_PATH, `${browser.name.replaceAll('-', '_')}-${browser.revision}`)
    fs.mkdirSync(path.join(dir, folder), { recursive: true })
    fs.rmSync(path.join(dir, folder, executable), { force: true })
    fs.symlinkSync(chromium, path.join(dir, folder, executable))
    fs.writeFileSync(path.join(dir, 'INSTALLATION_COMPLETE'), '')
  }
}

/** @type {import('aegir').PartialOptions} */
export default {
  test: {
    browser: {
      config: {
        browserContextOptions: {
          executablePath: chromium,
          args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic']
        }
      }
    },
    // a Node Helia node with CAR Mirror that the browser and worker tests pull from and push to
    async before (options) {
      if (options.runner === 'node') {
        return {}
      }
      const { startBrowserServer } = await import('./test/fixtures/browser-server.ts')
      const server = await startBrowserServer()
      return { server, env: server.env }
    },
    async after (_, before) {
      await Promise.all([before.server?.node.stop(), before.server?.second.stop()])
    }
  },
  dependencyCheck: {
    // the demo and benchmarks use development dependencies only
    productionIgnorePatterns: ['/benchmarks', '/dist', '/test', '/examples', '/scripts', '.aegir.js'],
    ignore: [
      // provides the Node 22 binary that npm scripts run on
      'node',
      // aegir compiles with the project's pinned TypeScript
      'typescript',
      // examples/browser.ts imports the package by its own name, as users do
      // (tsconfig.json's paths map it to src/index.ts for tsc and the test bundles)
      'helia-car-mirror'
    ]
  }
}
