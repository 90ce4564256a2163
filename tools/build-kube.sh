#!/usr/bin/env bash
# Builds the upstream Kubernetes servers (kube-apiserver, kube-controller-manager, kubectl), etcd
# and CoreDNS from Go modules into a cache folder keyed by version. Re-running after success
# returns at once. Usage: build-kube.sh <cache-root> <kube-version> <etcd-version> <coredns-version>
#
# k8s.io/kubernetes pins its staging modules (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0 with
# replace directives that Go ignores in dependencies, so `go install ...@vX` cannot work. A small
# wrapper module per version re-states those replaces with the published staging versions.
set -euo pipefail

root=${1:?cache root}
kube=${2:?kube version, e.g. v1.36.3}
etcd=${3:?etcd version, e.g. v3.6.16}
coredns=${4:?coredns version, e.g. v1.12.4}

fail() { echo "build-kube: $*" >&2; exit 1; }
command -v go >/dev/null || fail "go is not installed; install Go >= 1.24 (https://go.dev/dl) and re-run 'make setup'"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
export GOCACHE="$root/gocache"
mkdir -p "$root/bin"

kube_dir="$root/kube/$kube"
etcd_dir="$root/etcd/$etcd"
coredns_dir="$root/coredns/$coredns"

build_kube() {
  [ -x "$kube_dir/bin/kube-apiserver" ] && [ -x "$kube_dir/bin/kube-controller-manager" ] \
    && [ -x "$kube_dir/bin/kubectl" ] && return 0
  echo "build-kube: building Kubernetes $kube from Go modules (cold build: 15-30 min)"
  local w="$kube_dir/wrapper"
  rm -rf "$w" && mkdir -p "$w" "$kube_dir/bin"
  cd "$w"
  go mod init mobius.local/kubebuild >/dev/null 2>&1
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$kube" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || fail "could not download k8s.io/kubernetes@$kube; 'go list -m -versions k8s.io/kubernetes' shows what is served"
  local minor=${kube#v1.}
  local staging="v0.${minor}"
  # Every k8s.io module required at v0.0.0 is a staging module published as v0.<minor>.<patch>.
  awk '$2 == "v0.0.0" && $1 ~ /^k8s\.io\// {print $1}' "$gomod" | sort -u | while read -r mod; do
    echo "replace $mod => $mod $staging" >> go.mod
  done
  grep '^godebug' "$gomod" >> go.mod || true
  local ver="k8s.io/component-base/version" cver="k8s.io/client-go/pkg/version"
  local major=1 kminor=${minor%%.*}
  local ld="-s -w"
  for p in $ver $cver; do
    ld="$ld -X $p.gitVersion=$kube -X $p.gitMajor=$major -X $p.gitMinor=$kminor -X $p.gitTreeState=clean"
  done
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$kube" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@$kube" "k8s.io/kubernetes/cmd/kubectl@$kube"
  go build -trimpath -ldflags "$ld" -o "$kube_dir/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  [ -x "$etcd_dir/bin/etcd" ] && return 0
  echo "build-kube: building etcd $etcd from Go modules"
  local w="$etcd_dir/wrapper"
  rm -rf "$w" && mkdir -p "$w" "$etcd_dir/bin"
  cd "$w"
  go mod init mobius.local/etcdbuild >/dev/null 2>&1
  local gomod
  gomod=$(go mod download -json "go.etcd.io/etcd/server/v3@$etcd" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || fail "could not download go.etcd.io/etcd/server/v3@$etcd"
  go get -tool "go.etcd.io/etcd/server/v3@$etcd"
  go build -trimpath -ldflags "-s -w" -o "$etcd_dir/bin/etcd" go.etcd.io/etcd/server/v3
}

build_coredns() {
  [ -x "$coredns_dir/bin/coredns" ] && return 0
  echo "build-kube: building CoreDNS $coredns from Go modules"
  mkdir -p "$coredns_dir/bin"
  GOBIN="$coredns_dir/bin" go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$coredns"
}

build_etcd
build_coredns
build_kube
for b in kube-apiserver kube-controller-manager kubectl; do ln -sf "$kube_dir/bin/$b" "$root/bin/$b"; done
ln -sf "$etcd_dir/bin/etcd" "$root/bin/etcd"
ln -sf "$coredns_dir/bin/coredns" "$root/bin/coredns"
echo "build-kube: ready in $root/bin"
