/**
 * Command-line parsing: which command, its positionals and its options.
 * Bad usage throws UsageError, which the CLI turns into exit code 2 and the
 * help text.
 */

import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

/** Bad usage: an unknown command or option, or a missing argument */
export class UsageError extends Error {
  static name = 'UsageError'
  name = 'UsageError'
}

export const COMMANDS = ['serve', 'add', 'pull', 'push', 'ls', 'stat', 'help'] as const
export type CommandName = typeof COMMANDS[number]

/** What every command may take */
export interface GlobalOptions {
  /** The repository folder: blocks, datastore and the node's key */
  repo: string
  /** One JSON object per result on stdout, nothing else there */
  json: boolean
  /** Progress lines on stderr even when it is not a terminal */
  progress: boolean
}

export interface ParsedCommand extends GlobalOptions {
  command: CommandName
  positionals: string[]
  listen: string[]
  allowPush: string[]
  hints: string[]
  out?: string
  pin: boolean
}

/** The repository used when neither `--repo` nor HELIA_CAR_MIRROR_REPO says one */
export function defaultRepo (env: NodeJS.ProcessEnv = process.env): string {
  return env.HELIA_CAR_MIRROR_REPO ?? join(homedir(), '.helia-car-mirror')
}

export const USAGE = `Usage: helia-car-mirror <command> [options]

Commands:
  serve [--listen MULTIADDR]... [--allow-push PEER_ID]...
                          serve pulls (and pushes from the peers named) until Ctrl-C
  add PATH                import a file or folder (UnixFS), print its root CID
  pull MULTIADDR... CID [--out PATH] [--hint CID]... [--pin]
                          mirror a DAG into the repo, from several peers at once when
                          several are named (CAR Pool); --out writes the files
  push MULTIADDR CID|PATH [--hint CID]...
                          mirror a DAG (a path is imported first) to a peer that allows it
  ls CID                  list a folder (or a file) held in the repo
  stat [CID]              the repo (peer id, blocks, bytes), or a DAG's blocks and bytes

Options:
  --repo DIR              repository folder (default ~/.helia-car-mirror, or HELIA_CAR_MIRROR_REPO)
  --json                  print one JSON object per result on stdout, nothing else
  --progress              progress lines on stderr even when it is not a terminal
  -h, --help              this help

Exit codes: 0 done, 1 failed (one line on stderr), 2 bad usage, 130 interrupted (Ctrl-C).`

/** Most peers one pull may name */
export const MAX_PULL_PEERS = 16

/** How many positionals each command takes: [least, most] */
const ARITY: Record<CommandName, [number, number]> = {
  serve: [0, 0],
  add: [1, 1],
  pull: [2, 1 + MAX_PULL_PEERS],
  push: [2, 2],
  ls: [1, 1],
  stat: [0, 1],
  help: [0, 1]
}

/** Which command-specific options each command accepts */
const ACCEPTS: Record<CommandName, Array<'listen' | 'allow-push' | 'hint' | 'out' | 'pin'>> = {
  serve: ['listen', 'allow-push'],
  add: [],
  pull: ['hint', 'out', 'pin'],
  push: ['hint'],
  ls: [],
  stat: [],
  help: []
}

/**
 * Parses `argv` (without the node binary and script)
 *
 * @example
 *
 * ```ts
 * parseCommand(['pull', '/ip4/127.0.0.1/tcp/4010/ws/p2p/12D3...', 'bafy...', '--out', 'files'])
 * ```
 */
export function parseCommand (argv: string[], env: NodeJS.ProcessEnv = process.env): ParsedCommand {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        repo: { type: 'string' },
        json: { type: 'boolean', default: false },
        progress: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        listen: { type: 'string', multiple: true, default: [] },
        'allow-push': { type: 'string', multiple: true, default: [] },
        hint: { type: 'string', multiple: true, default: [] },
        out: { type: 'string' },
        pin: { type: 'boolean', default: false }
      }
    })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const { values, positionals } = parsed
  const [name, ...rest] = positionals
  if (values.help || name == null) {
    return { ...globals(values, env), command: 'help', positionals: [], listen: [], allowPush: [], hints: [], pin: false }
  }
  if (!(COMMANDS as readonly string[]).includes(name)) {
    throw new UsageError(`Unknown command '${name}'`)
  }
  const command = name as CommandName
  const [least, most] = ARITY[command]
  if (rest.length < least || rest.length > most) {
    throw new UsageError(`'${command}' takes ${least === most ? least : `${least} to ${most}`} argument${most === 1 ? '' : 's'}, got ${rest.length}`)
  }
  const given = { listen: values.listen.length > 0, 'allow-push': values['allow-push'].length > 0, hint: values.hint.length > 0, out: values.out != null, pin: values.pin }
  for (const [option, isGiven] of Object.entries(given)) {
    if (isGiven && !(ACCEPTS[command] as string[]).includes(option)) {
      throw new UsageError(`'${command}' does not take --${option}`)
    }
  }
  return {
    ...globals(values, env),
    command,
    positionals: rest,
    listen: values.listen,
    allowPush: values['allow-push'],
    hints: values.hint,
    out: values.out,
    pin: values.pin
  }
}

function globals (values: { repo?: string, json: boolean, progress: boolean }, env: NodeJS.ProcessEnv): GlobalOptions {
  return { repo: values.repo ?? defaultRepo(env), json: values.json, progress: values.progress }
}
