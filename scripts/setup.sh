#!/usr/bin/env bash
# Installs everything Blixard's tests and local cluster need on a fresh Debian
# machine with Node 20, as root: Debian packages, then the npm lockfile.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  iproute2     # network namespaces, bridges, TAPs, VXLAN in the tests
  busybox-static
  qemu-system-x86 qemu-utils qemu-block-extra  # guests: -M microvm, TCG fallback, librbd drives
  linux-image-cloud-amd64  # the tiny guest's kernel and virtio modules
  ceph-mon ceph-osd ceph-mgr ceph-common  # single-host Ceph 16 for the RBD volume tests (scripts/ceph.sh)
  nix-bin  # nix-instantiate --parse/--eval on nixos/*.nix and rendered guest flakes
  etcd-server etcd-client  # the anchor of npm run bench:raft (3 etcd members on loopback)
  prometheus  # promtool check metrics on a live node's /metrics (test/ops/metrics.test.ts)
  chromium  # headless browser for the dashboard test (test/ops/dashboard.test.ts, playwright-core)
  zsh fish  # parse and run the CLI's completion scripts (test/ops/cli.test.ts)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# by content: a fresh checkout's lockfile is newer than node_modules without anything to install
if [ ! -d node_modules ] || ! node scripts/deps-current.mjs; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
bash scripts/build-tiny-guest.sh >/dev/null
echo "setup: done"
