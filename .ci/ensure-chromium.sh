#!/usr/bin/env bash
# Browser and web worker tests run in Debian's Chromium (Playwright cannot
# download its own browser here). Install it when it is missing.
set -u
if command -v "${CHROMIUM_BIN:-chromium}" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Chromium is missing: run 'sudo apt-get install -y chromium' (or set CHROMIUM_BIN)" >&2
  exit 1
fi
echo "installing Debian's chromium for the browser tests"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
