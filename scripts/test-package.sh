#!/usr/bin/env bash
# Tests the package as users get it: builds, packs the tarball, installs it
# into an empty project and uses it from there (ESM import, CommonJS require,
# a TypeScript consumer, the CLI with a serve/add/pull round trip).
#
# Run it as `npm run test:package`: npm puts the project's node_modules/.bin
# first on PATH, so `node` is the Node 22 of the `node` devDependency (the
# package's engines field asks for >=22.19.0). Run directly, it uses whatever
# `node` is on PATH and stops if that one is too old.
set -euo pipefail

cd "$(dirname "$0")/.."
project=$(pwd)
started=$SECONDS
checks=0

work=$(mktemp -d "${TMPDIR:-/tmp}/car-mirror-package-XXXXXX")
server_pid=''
cleanup () {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -INT "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

pass () {
  checks=$((checks + 1))
  echo "ok $checks - $1"
}

fail () {
  echo "package test FAILED: $1" >&2
  exit 1
}

# --- Node ------------------------------------------------------------------

node -e '
const [major, minor] = process.versions.node.split(".").map(Number)
if (major < 22 || (major === 22 && minor < 19)) {
  console.error(`node ${process.version} is older than the package needs (>=22.19.0): run this through "npm run test:package"`)
  process.exit(1)
}' || fail 'node is too old'
pass "node $(node --version)"

# --- build and pack --------------------------------------------------------

npm run build
pass 'npm run build'

tarball_name=$(npm pack --silent --pack-destination "$work" | tail -n 1)
tarball="$work/$tarball_name"
[ -f "$tarball" ] || fail "npm pack did not write $tarball"
pass "npm pack: $tarball_name ($(du -k "$tarball" | cut -f1) KiB)"

tar -tzf "$tarball" | sed 's|^package/||' | sort > "$work/contents.txt"

for required in package.json README.md LICENSE-APACHE LICENSE-MIT dist/src/index.js dist/src/index.d.ts dist/cli/index.js; do
  grep -qxF "$required" "$work/contents.txt" || fail "the tarball lacks $required"
done
pass 'the tarball holds package.json, README.md, both licenses, dist/src/index.{js,d.ts} and dist/cli/index.js'

if grep -E '^dist/(test|benchmarks|examples|scripts)/|\.tsbuildinfo$' "$work/contents.txt"; then
  fail 'the tarball holds test, benchmark, example or script output, or a .tsbuildinfo (listed above)'
fi
pass 'the tarball holds no dist/test, dist/benchmarks, dist/examples, dist/scripts or .tsbuildinfo'

# nothing besides the sources, the library and CLI output, and the top-level files
if grep -vE '^(src/|cli/|dist/src/|dist/cli/)|^(package\.json|README\.md|LICENSE-APACHE|LICENSE-MIT)$' "$work/contents.txt"; then
  fail 'the tarball holds files outside src/, cli/, dist/src/ and dist/cli/ (listed above)'
fi
pass "the tarball holds only src/, cli/ (the sources its maps name), dist/src/, dist/cli/ and the top-level files ($(wc -l < "$work/contents.txt") files)"

# --- an empty project that installs the tarball ----------------------------

ts_major=$(node -p 'require("./package.json").devDependencies.typescript.replace(/^[^0-9]*/, "").split(".")[0]')
node_major=$(node -p 'process.versions.node.split(".")[0]')
consumer="$work/consumer"
mkdir "$consumer"
cd "$consumer"
npm init -y > /dev/null
npm pkg set type=module
# a TypeScript consumer on Node has @types/node: libp2p's declarations (main-event) import node:events
npm install --no-audit --no-fund --prefer-offline "$tarball" "typescript@$ts_major" "@types/node@$node_major"
[ -f node_modules/helia-car-mirror/package.json ] || fail 'npm install did not install helia-car-mirror'
pass "npm install of the tarball (with typescript@$ts_major and @types/node@$node_major) into an empty project"

# --- ESM --------------------------------------------------------------------

node --input-type=module -e '
import { withCarMirror, carMirror, createCarMirror, BloomFilter } from "helia-car-mirror"
const where = import.meta.resolve("helia-car-mirror")
if (!where.includes("/consumer/node_modules/helia-car-mirror/dist/src/index.js")) {
  throw new Error(`resolved to ${where}, not the installed tarball`)
}
for (const [name, value] of Object.entries({ withCarMirror, carMirror, createCarMirror, BloomFilter })) {
  if (typeof value !== "function") {
    throw new Error(`${name} is ${typeof value}, not a function`)
  }
}
const filter = BloomFilter.forCapacity(100, 0.01)
filter.add(new Uint8Array([1, 2, 3]))
if (!filter.has(new Uint8Array([1, 2, 3]))) {
  throw new Error("BloomFilter lost an item")
}
// every subpath the package exports loads and exports something
const { exports } = JSON.parse(await (await import("node:fs/promises")).readFile("node_modules/helia-car-mirror/package.json", "utf8"))
for (const subpath of Object.keys(exports)) {
  const specifier = subpath === "." ? "helia-car-mirror" : `helia-car-mirror/${subpath.slice(2)}`
  if (Object.keys(await import(specifier)).length === 0) {
    throw new Error(`${specifier} exports nothing`)
  }
}
' || fail 'import from an ES module'
pass "import { withCarMirror, BloomFilter, ... } from \"helia-car-mirror\" (ESM), and every subpath: $(node -p 'Object.keys(require("./node_modules/helia-car-mirror/package.json").exports).join(" ")')"

# --- CommonJS ---------------------------------------------------------------

# require() of an ES module works natively from Node 22.12 on, as long as no
# module in its graph uses top-level await; the package has none
node --input-type=commonjs -e '
const m = require("helia-car-mirror")
const where = require.resolve("helia-car-mirror")
if (!where.endsWith("/consumer/node_modules/helia-car-mirror/dist/src/index.js")) {
  throw new Error(`resolved to ${where}, not the installed tarball`)
}
for (const name of ["withCarMirror", "carMirror", "createCarMirror", "BloomFilter"]) {
  if (typeof m[name] !== "function") {
    throw new Error(`${name} is ${typeof m[name]}, not a function`)
  }
}
for (const subpath of Object.keys(require("./node_modules/helia-car-mirror/package.json").exports)) {
  const specifier = subpath === "." ? "helia-car-mirror" : `helia-car-mirror/${subpath.slice(2)}`
  if (Object.keys(require(specifier)).length === 0) {
    throw new Error(`${specifier} exports nothing`)
  }
}
' || fail 'require from CommonJS'
pass 'require("helia-car-mirror") (CommonJS), and every subpath'

# --- TypeScript --------------------------------------------------------------

cat > consumer.ts <<'EOF'
import { BloomFilter, carMirror, withCarMirror } from 'helia-car-mirror'
import type { CarMirrorInit, HeliaWithCarMirror, PeerTarget, TransferStats } from 'helia-car-mirror'

const init: CarMirrorInit = {
  allowPush: () => false,
  onSession: session => { console.info(session.kind, session.outcome, session.blocksSent) }
}

// @ts-expect-error not an option: proves the types are real, not any
const wrong: CarMirrorInit = { noSuchOption: true }

type HeliaNode = Parameters<typeof withCarMirror>[0]
type Root = TransferStats['roots'][number]

export async function mirror (helia: HeliaNode, peer: PeerTarget, root: Root): Promise<TransferStats> {
  const node: HeliaNode & HeliaWithCarMirror = withCarMirror(helia, init)
  const stats = await node.carMirror.pull(peer, root)
  const moved: number = stats.blocksReceived + stats.blockBytesReceived
  console.info(moved, stats.roots.map(String))
  return stats
}

export const mixin = carMirror(init)
export const filter: BloomFilter = BloomFilter.forCapacity(10, 0.01)
export const hit: boolean = filter.has(new Uint8Array([1]))
console.info(wrong)
EOF
npx tsc --noEmit --module nodenext --moduleResolution nodenext --strict --types node consumer.ts || fail 'the TypeScript consumer does not type-check'
pass "a TypeScript consumer type-checks (tsc $(npx tsc --version | sed 's/^Version //'), nodenext, strict)"

# --- the CLI -------------------------------------------------------------------

# npx runs the installed bin (checked first, so that npx never fetches one)
[ -x node_modules/.bin/helia-car-mirror ] || fail 'npm install linked no helia-car-mirror bin'
help=$(npx helia-car-mirror --help) || fail 'helia-car-mirror --help did not exit 0'
grep -q '^Usage: helia-car-mirror' <<< "$help" || fail "helia-car-mirror --help printed no usage: $help"
help=$(npx helia-car-mirror) || fail 'helia-car-mirror with no arguments did not exit 0'
grep -q '^Usage: helia-car-mirror' <<< "$help" || fail "helia-car-mirror printed no usage: $help"
pass 'npx helia-car-mirror --help (and no arguments) prints the usage and exits 0'

# a file of several UnixFS chunks
head -c 3000000 /dev/urandom > "$work/input.bin"
cid=$(npx helia-car-mirror add --repo "$work/repo-a" "$work/input.bin") || fail 'helia-car-mirror add failed'
[[ "$cid" =~ ^baf[a-z2-7]+$ ]] || fail "helia-car-mirror add printed '$cid', not a CID"
pass "helia-car-mirror add prints the root $cid"

# the bin itself, not npx, so that $! is the server and SIGINT reaches it
node_modules/.bin/helia-car-mirror serve --repo "$work/repo-a" --listen /ip4/127.0.0.1/tcp/0/ws --json > "$work/serve.out" 2> "$work/serve.err" &
server_pid=$!
for _ in $(seq 1 600); do
  if [ -s "$work/serve.out" ] && head -n 1 "$work/serve.out" | grep -q '}$'; then
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || fail "helia-car-mirror serve exited: $(cat "$work/serve.err")"
  sleep 0.1
done
address=$(head -n 1 "$work/serve.out" | node -e '
let text = ""
process.stdin.on("data", chunk => { text += chunk }).on("end", () => {
  const message = JSON.parse(text)
  if (message.type !== "listening" || !Array.isArray(message.multiaddrs) || message.multiaddrs.length === 0) {
    throw new Error(`not a listening line: ${text}`)
  }
  console.log(message.multiaddrs[0])
})') || fail "helia-car-mirror serve printed no listening line: $(cat "$work/serve.out" "$work/serve.err")"
pass "helia-car-mirror serve --json listens on $address"

pulled=$(npx helia-car-mirror pull --repo "$work/repo-b" "$address" "$cid" --out "$work/output.bin" --json) || fail 'helia-car-mirror pull failed'
node -e '
const stats = JSON.parse(process.argv[1])
if (stats.type !== "pull" || stats.roots[0] !== process.argv[2] || !(stats.blocksReceived > 1)) {
  throw new Error(`unexpected pull result: ${process.argv[1]}`)
}' "$pulled" "$cid" || fail "helia-car-mirror pull printed $pulled"
cmp "$work/input.bin" "$work/output.bin" || fail 'the pulled file differs from the added one'
pass "helia-car-mirror pull --out writes the same bytes back ($(node -p 'JSON.parse(process.argv[1]).blocksReceived' "$pulled") blocks)"

kill -INT "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=''
[ "$status" -eq 0 ] || fail "helia-car-mirror serve exited with $status after SIGINT: $(cat "$work/serve.err")"
pass 'helia-car-mirror serve stops on SIGINT with exit code 0'

cd "$project"
echo "package test: $checks checks passed in $((SECONDS - started)) s"
