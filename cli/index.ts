#!/usr/bin/env node
/**
 * The `helia-car-mirror` command. The first Ctrl-C (SIGINT or SIGTERM)
 * aborts the running command, which stops its node and exits; a second one
 * exits at once.
 */

import { EXIT_INTERRUPTED, main } from './main.ts'

const controller = new AbortController()
const stop = (): void => {
  if (controller.signal.aborted) {
    process.exit(EXIT_INTERRUPTED)
  }
  controller.abort(new Error('Interrupted'))
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)

const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, signal: controller.signal })
// libp2p may leave timers behind once stopped: exit with the command's code now
process.exit(code)
