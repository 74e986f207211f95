// Suites that need the Node server started by .aegir.js's before hook: a
// Helia node in Chromium (main thread or web worker) mirrors with it over
// WebSockets. aegir runs this file in browsers only.
import { expect } from 'aegir/chai'
import './browser-to-node.browser.ts'
import './browser-example.browser.ts'

describe('the browser test entry', function () {
  // the bundler drops bare imports of files package.json's sideEffects calls
  // free of side effects: then the suites above would silently not run
  it('registered the suite of every file it imports', function () {
    const titles = this.test?.parent?.parent?.suites.map(suite => suite.title)
    expect(titles).to.include.members([
      'a browser Helia node mirrors with a Node Helia node',
      'the README browser example (examples/browser.ts) with a Node server on 127.0.0.1'
    ])
  })
})
