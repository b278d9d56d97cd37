#!/usr/bin/env bash
# Everything a fresh Debian 12 machine (as root) needs for sideload, its sandbox and its tests:
# the Debian packages of the real test bed, Debian's kubectl, the upstream daemons built from
# their Go modules, the npm dependencies, the build.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
need_pkgs=(containerd runc openssh-server openssh-client docker.io iproute2 socat sudo busybox-static procps util-linux openssl time)
missing=()
for p in "${need_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's kubectl (package kubernetes-client) keeps the test API server honest. Some machines
# already carry another kubectl at /usr/bin/kubectl that the package would collide with, so it
# is unpacked into .cache/ instead of installed over it.
scripts/fetch-debian-kubectl.sh >/dev/null

# The upstream daemons the tests and the sandbox run (containerd 2.x, buildkitd + buildctl, nerdctl,
# etcd + kube-apiserver, Spegel for test/spegel), built from their Go modules at the versions pinned in
# test/daemons/versions.env into .cache/daemons/; skipped when built. Needs Go and the Go module proxy.
if ! command -v go >/dev/null 2>&1; then
  echo "setup: Go is needed to build the test daemons from their Go modules (install Go ≥ 1.26.8)" >&2
  exit 1
fi
scripts/build-daemons.sh containerd buildkit nerdctl etcd kube spegel

npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
