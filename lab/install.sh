#!/usr/bin/env bash
# Install the Debian packages the loopback lab runs (Knot, Dovecot, Postfix,
# OpenDKIM, OpenDMARC, Radicale, Xandikos, nats-server). Idempotent: when every package is
# already installed it exits 0 at once and prints nothing, so `make test` and
# `make demo` can call it every time.
#
# It never starts the system services: the lab runs its own instances on
# loopback ports, and a packaged Dovecot/Postfix/Knot on *:143/25/53 would
# both collide with nothing we want and listen beyond loopback.
set -euo pipefail

PACKAGES=(
  knot knot-dnsutils
  dovecot-core dovecot-imapd dovecot-lmtpd dovecot-managesieved dovecot-sieve
  postfix
  opendkim opendkim-tools
  opendmarc
  radicale xandikos
  nats-server  # JetStream for the mailroom's scale-out backend (lab/nats.py)
  openssl ca-certificates
  util-linux   # unshare: the lab's private mount namespace (resolv.conf, /etc/dkimkeys)
  iproute2     # ss: the lab tests check that only loopback listens
  procps       # ps/pgrep style scans in the lab tests
  gcc libc6-dev  # builds lab/ub_config_lock.c, without which OpenDKIM crashes under load
  systemd      # systemd-analyze verify: the shipped units are checked offline (no running systemd needed)
)

# Fast path: dpkg-query on every package, no network, no output.
all_installed() {
  local status
  status=$(dpkg-query -W -f='${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null) || return 1
  [ "$(grep -c '^installed$' <<<"$status")" -eq "${#PACKAGES[@]}" ]
}
if all_installed; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "lab/install.sh: must run as root (apt-get install)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# Block service starts during the install: invoke-rc.d asks policy-rc.d, and
# exit code 101 means "action forbidden". Only our own temporary file is removed.
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$POLICY"
  chmod 0755 "$POLICY"
  ADDED_POLICY=1
fi
cleanup() { if [ "$ADDED_POLICY" = 1 ]; then rm -f "$POLICY"; fi; }
trap cleanup EXIT

# Postfix would otherwise ask for a site type and write a main.cf for the
# host; OpenDMARC would ask to create a MariaDB database it does not need.
debconf-set-selections <<'SEL'
postfix postfix/main_mailer_type select No configuration
opendmarc opendmarc/dbconfig-install boolean false
SEL

echo "lab/install.sh: installing ${#PACKAGES[@]} Debian packages for the lab..." >&2
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${PACKAGES[@]}" >/dev/null

if ! all_installed; then
  echo "lab/install.sh: some packages are still missing after apt-get install" >&2
  exit 1
fi
echo "lab/install.sh: done" >&2
