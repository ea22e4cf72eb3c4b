#!/usr/bin/env bash
# `npm run test:e2e:node -- <major> [test files or vitest args; default test/e2e]`: the e2e suite with vitest, and so every
# server it starts (test/support/server-process.ts runs the bin with process.execPath), on
# another Node line. That Node comes from npm's `node` package, kept under node_modules/.cache.
set -euo pipefail
cd "$(dirname "$0")/.."
major="${1:?usage: npm run test:e2e:node -- <node major, e.g. 22> [vitest args]}"
shift
# Tests that run once per CI run, on the machine's Node (the README's quick start), skip on the other lines.
export QINGYU_E2E_NODE="$major"
dir="node_modules/.cache/qingyu-node-$major"
if [ ! -x "$dir/node_modules/.bin/node" ]; then
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-save --no-package-lock --no-audit --no-fund "node@$major" >/dev/null
fi
node="$dir/node_modules/.bin/node"
echo "e2e on Node $("$node" --version)"
if [ $# -eq 0 ]; then set -- test/e2e; fi
exec "$node" node_modules/vitest/vitest.mjs run "$@"
