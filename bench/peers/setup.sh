#!/usr/bin/env bash
# Prepares the peers of `bench/peers/peers.py` on a Debian machine without starting any
# system daemon or touching the machine's PostgreSQL:
# - rsyslog and rsyslog-pgsql (ompgsql) installed with apt when missing, with a policy-rc.d
#   that refuses every daemon start during the install, rsyslog-pgsql's dbconfig step
#   preseeded off (otherwise it creates a `Syslog` database and an `rsyslog` role), and the
#   system configuration snippet it drops (/etc/rsyslog.d/pgsql.conf) removed;
# - syslog-ng (which conflicts with rsyslog: both provide system-log-daemon) downloaded with
#   `apt-get download` and unpacked with `dpkg -x` under target/peers/syslog-ng, run from
#   there with its module path; nothing of it is installed but libdbi's PostgreSQL driver
#   (libdbd-pgsql, a library with no daemon, which libdbi looks for only in its system
#   directory).
set -euo pipefail
cd "$(dirname "$0")/../.."
as_root=""; [ "$(id -u)" -eq 0 ] || as_root="sudo"

if [ ! -e /usr/lib/x86_64-linux-gnu/rsyslog/ompgsql.so ] || ! command -v rsyslogd >/dev/null; then
  echo "rsyslog-pgsql rsyslog-pgsql/dbconfig-install boolean false" | $as_root debconf-set-selections
  policy=/usr/sbin/policy-rc.d made=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $as_root tee "$policy" >/dev/null
    $as_root chmod 755 "$policy"; made=1
  fi
  before="$(pgrep -x rsyslogd | tr '\n' ' ' || true)"
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    rsyslog rsyslog-pgsql >/dev/null
  [ -z "$made" ] || $as_root rm -f "$policy"
  $as_root rm -f /etc/rsyslog.d/pgsql.conf
  for pid in $(pgrep -x rsyslogd || true); do
    case " $before " in *" $pid "*) ;; *) $as_root kill "$pid" || true ;; esac
  done
fi
rsyslogd -v | sed -n 1p

if [ ! -e /usr/lib/x86_64-linux-gnu/dbd/libdbdpgsql.so ]; then
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    libdbd-pgsql libdbi1 >/dev/null
fi

root=target/peers/syslog-ng
if [ ! -x "$root/usr/sbin/syslog-ng" ]; then
  debs="$(mktemp -d)"
  (cd "$debs" && apt-get download -qq syslog-ng-core syslog-ng-mod-sql \
    libivykis0 libnet1 libpcre3 2>/dev/null)
  mkdir -p "$root"
  for d in "$debs"/*.deb; do dpkg -x "$d" "$root"; done
  rm -rf "$debs"
fi
LD_LIBRARY_PATH="$root/usr/lib/syslog-ng:$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu" \
  "$root/usr/sbin/syslog-ng" --version | sed -n 1p
