#!/usr/bin/env bash
# Unpack Debian's kubernetes-client (real kubectl) into .cache/kubectl/ without installing it,
# so it cannot collide with another kubectl already on the machine. Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/kubectl
if [ ! -x "$dest/usr/bin/kubectl" ]; then
  mkdir -p "$dest"
  tmp=$(mktemp -d)
  ( cd "$tmp" && { apt-get download kubernetes-client >/dev/null 2>&1 || { apt-get update -qq && apt-get download kubernetes-client >/dev/null; }; } )
  dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$dest"
  rm -rf "$tmp"
fi
echo "$PWD/$dest/usr/bin/kubectl"
