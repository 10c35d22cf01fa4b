#!/usr/bin/env bash
# Installs what ctwatch needs on a Debian machine (as root) and builds it. Safe to run again:
# it installs only what is missing and rebuilds only when sources changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs Debian packages and ctwatch needs CAP_NET_ADMIN)" >&2
  exit 77
fi

# Build: libnetfilter-conntrack-dev libmnl-dev build-essential pkg-config python3 (node-gyp);
# clang llvm bpftool libbpf-dev libelf-dev (the attribution BPF programs and their skeleton, built
# into the addon: at run time only libbpf1 is needed)
# Run and test: nftables iproute2 conntrack (conntrack -E is the reference in tests and benchmarks)
# iputils-ping (ICMP flows), rsyslog + TLS modules and openssl (SIEM receivers in tests), procps,
# prometheus (scrapes the metrics endpoint in tests; promtool checks the rules),
# prometheus-node-exporter (reads stats --textfile in tests), logrotate (the contrib snippet), curl,
# nats-server (the nats sink and `ctwatch fleet`: tests start their own 3-node JetStream cluster)
# chromium (headless: the report test renders and screenshots the HTML page in a real browser)
# zsh (the generated zsh completion is parsed and loaded by compinit in the tests)
packages=(libnetfilter-conntrack-dev libmnl-dev build-essential pkg-config python3 clang llvm bpftool libbpf-dev
  libelf-dev nftables iproute2 conntrack iputils-ping procps rsyslog rsyslog-gnutls rsyslog-openssl openssl
  gnutls-bin prometheus prometheus-node-exporter logrotate curl nats-server chromium zsh)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packaged rsyslog service is not ours: tests start their own rsyslogd on loopback ports.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet rsyslog 2>/dev/null; then
    systemctl stop rsyslog || true
  fi
  # Nor the packaged node_exporter: tests start their own on loopback ports.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus-node-exporter 2>/dev/null; then
    systemctl stop prometheus-node-exporter || true
  fi
  # Nor the packaged nats-server: tests start their own cluster on loopback ports.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nats-server 2>/dev/null; then
    systemctl stop nats-server || true
  fi
fi

# The kernel's conntrack netlink interface; built in on some kernels, a module on others.
modprobe nf_conntrack_netlink 2>/dev/null || true

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build >/dev/null
echo "setup: ready ($(node -v), $(pkg-config --modversion libnetfilter_conntrack) libnetfilter_conntrack)" >&2
