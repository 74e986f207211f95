/**
 * Runs one CLI command and turns its outcome into an exit code: 0 done,
 * 1 failed (one line on stderr), 2 bad usage (with the help text),
 * 130 interrupted.
 */

import { USAGE, UsageError, parseCommand } from './args.ts'
import { add, ls, pull, push, serve, stat } from './commands.ts'
import type { CommandContext } from './commands.ts'

export const EXIT_OK = 0
export const EXIT_FAILED = 1
export const EXIT_USAGE = 2
/** 128 + SIGINT, as shells report a command stopped by Ctrl-C */
export const EXIT_INTERRUPTED = 130

/**
 * Runs the command `argv` names (without the node binary and script) and
 * resolves with its exit code
 *
 * @example
 *
 * ```ts
 * const code = await main(['stat', '--json'], { stdout: process.stdout, stderr: process.stderr, signal: new AbortController().signal })
 * ```
 */
export async function main (argv: string[], context: CommandContext): Promise<number> {
  const { stdout, stderr, signal } = context
  try {
    const command = parseCommand(argv)
    switch (command.command) {
      case 'help':
        stdout.write(`${USAGE}\n`)
        return EXIT_OK
      case 'serve':
        // Ctrl-C is how a server stops: a clean exit
        await serve(command, context)
        return EXIT_OK
      case 'add':
        await add(command, context)
        break
      case 'pull':
        await pull(command, context)
        break
      case 'push':
        await push(command, context)
        break
      case 'ls':
        await ls(command, context)
        break
      case 'stat':
        await stat(command, context)
        break
    }
    return signal.aborted ? EXIT_INTERRUPTED : EXIT_OK
  } catch (err) {
    const error = err as Error
    if (error instanceof UsageError) {
      stderr.write(`error: ${error.message}\n\n${USAGE}\n`)
      return EXIT_USAGE
    }
    if (signal.aborted) {
      stderr.write('\ninterrupted: the blocks verified so far are kept; run the same command again to go on from them\n')
      return EXIT_INTERRUPTED
    }
    stderr.write(`error: ${oneLine(error)}\n`)
    return EXIT_FAILED
  }
}

/** An error on one line: its name (unless a plain Error), its message and its cause's */
function oneLine (error: Error): string {
  const name = error.name === 'Error' || error.name == null ? '' : `${error.name}: `
  const cause = error.cause instanceof Error ? ` (${error.cause.message})` : ''
  return `${name}${error.message}${cause}`.replace(/\s*\n\s*/g, ' ')
}
