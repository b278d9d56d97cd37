#!/usr/bin/env bash
# Builds the upstream daemons the test bed and the sandbox run, from their Go modules, pinned to
# exact versions, into .cache/daemons/<name>-<version>/ (git-ignored). A daemon already built is
# skipped. Nothing is downloaded but Go modules through the Go module proxy.
#
#   scripts/build-daemons.sh            build all (in parallel pairs; ~2 cores)
#   scripts/build-daemons.sh NAME...    only these (containerd buildkit nerdctl etcd kube spegel)
#   scripts/build-daemons.sh --print-dir NAME   the folder NAME's binaries are in
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=../test/daemons/versions.env
. test/daemons/versions.env
cache=${SIDELOAD_DAEMONS_CACHE:-$root/.cache/daemons}
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=${CGO_ENABLED:-1}

dir_of() {
  case $1 in
    containerd) echo "$cache/containerd-$CONTAINERD_VERSION" ;;
    buildkit) echo "$cache/buildkit-$BUILDKIT_VERSION" ;;
    nerdctl) echo "$cache/nerdctl-$NERDCTL_VERSION" ;;
    etcd) echo "$cache/etcd-$ETCD_VERSION" ;;
    kube) echo "$cache/kubernetes-$KUBERNETES_VERSION" ;;
    spegel) echo "$cache/spegel-$SPEGEL_VERSION" ;;
    *) echo "build-daemons: unknown daemon '$1' (known: containerd buildkit nerdctl etcd kube spegel)" >&2; return 2 ;;
  esac
}

if [ "${1:-}" = --print-dir ]; then dir_of "$2"; exit 0; fi

# the binaries each daemon's folder holds (a folder built before one was added gets only that one)
bins_of() {
  case $1 in
    containerd) echo containerd ctr containerd-shim-runc-v2 ;;
    buildkit) echo buildkitd buildctl ;;
    nerdctl) echo nerdctl ;;
    etcd) echo etcd ;;
    spegel) echo spegel ;;
    kube) echo kube-apiserver kube-scheduler kube-controller-manager kubelet ;;
  esac
}

# kube's commands, linked with the version the server reports (kubectl version, /version)
build_kube() {
  local into=$1 cmd minor=${KUBERNETES_VERSION#v1.}; shift
  minor=${minor%%.*}
  local kv="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  for cmd in "$@"; do
    (cd test/daemons/kube && go build -ldflags "-s -w $kv" -o "$into/$cmd" "k8s.io/kubernetes/cmd/$cmd") || return 1
  done
}

build_one() {
  local name=$1 out tmp start missing=() b
  out=$(dir_of "$name")
  if [ -f "$out/.built" ]; then
    for b in $(bins_of "$name"); do [ -x "$out/bin/$b" ] || missing+=("$b"); done
    [ ${#missing[@]} -gt 0 ] || return 0
    if [ "$name" = kube ]; then
      start=$(date +%s)
      echo "build-daemons: adding ${missing[*]} to $out" >&2
      tmp="$out/bin.partial"; rm -rf "$tmp"; mkdir -p "$tmp"
      build_kube "$tmp" "${missing[@]}"
      for b in "${missing[@]}"; do mv "$tmp/$b" "$out/bin/$b"; done
      rm -rf "$tmp"
      echo "build-daemons: ${missing[*]} built in $(( $(date +%s) - start )) s" >&2
      return 0
    fi
    rm -f "$out/.built"
  fi
  tmp="$out.partial"
  rm -rf "$tmp"; mkdir -p "$tmp/bin"
  start=$(date +%s)
  echo "build-daemons: building $name into $out" >&2
  case $name in
    containerd)
      GOBIN="$tmp/bin" go install -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
        "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
        "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION" \
        "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" ;;
    buildkit)
      (cd test/daemons/buildkit && go build -ldflags "-s -w -X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION" \
        -o "$tmp/bin/" github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl) ;;
    nerdctl)
      (cd test/daemons/nerdctl && go build -ldflags "-s -w -X github.com/containerd/nerdctl/v2/pkg/version.Version=$NERDCTL_VERSION" \
        -o "$tmp/bin/nerdctl" github.com/containerd/nerdctl/v2/cmd/nerdctl) ;;
    etcd)
      (cd test/daemons/etcd && go build -ldflags "-s -w" -o "$tmp/bin/etcd" .) ;;
    kube)
      build_kube "$tmp/bin" $(bins_of kube) ;;
    spegel)
      # a tools module (test/daemons/spegel): the module proxy refuses Spegel's version list,
      # which `go install …@version` reads; static like upstream's image
      (cd test/daemons/spegel && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$tmp/bin/spegel" github.com/spegel-org/spegel) ;;
  esac
  echo "$(( $(date +%s) - start ))" > "$tmp/.built"
  rm -rf "$out"; mv "$tmp" "$out"
  echo "build-daemons: $name built in $(cat "$out/.built") s" >&2
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(containerd buildkit nerdctl etcd kube)
for n in "${names[@]}"; do dir_of "$n" >/dev/null; done
for n in "${names[@]}"; do build_one "$n"; done
