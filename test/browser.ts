// Suites that need the Node server started by .aegir.js's before hook: a
// Helia node in Chromium (main thread or web worker) mirrors with it over
// WebSockets. aegir runs this file in browsers only.
import './browser-to-node.browser.ts'
import './browser-example.browser.ts'
