#!/usr/bin/env bash
# Verifies the Debian package and its systemd unit under a real systemd: builds the .deb with
# `cargo deb`, boots a Debian 12 root (made once with debootstrap, cached under
# target/verify-systemd/) with `systemd-nspawn --boot`, installs the package there, and checks
# what an operator relies on. Prints one PASS or FAIL line per check; exits 1 if any failed.
#
# Run as root from anywhere in the repository: packaging/verify-under-systemd.sh
# Needs: cargo-deb (cargo install cargo-deb --locked), debootstrap and systemd-container
# (apt-get install debootstrap systemd-container), and the Debian mirror for the first run
# (DEBIAN_MIRROR, default http://deb.debian.org/debian). VERIFY_DEB=PATH checks that package
# instead of building one. The container has a private network
# with loopback only: the service syncs from the bundled simulator, run in it.
# Takes about three minutes once the root and the release build exist; not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "verify: run as root (debootstrap and systemd-nspawn need it)" >&2; exit 2; }
for tool in cargo debootstrap systemd-nspawn nsenter; do
  command -v "$tool" >/dev/null || { echo "verify: $tool is missing (apt-get install debootstrap systemd-container)" >&2; exit 2; }
done
cargo deb --version >/dev/null 2>&1 || { echo "verify: cargo-deb is missing: cargo install cargo-deb --locked" >&2; exit 2; }

cache=target/verify-systemd
base=$cache/bookworm-base      # debootstrap's result, kept between runs
root=$cache/root               # a fresh copy of it for each run
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
sim=127.0.0.1:18080
db=/var/lib/private/closebot-sync/closebot-sync.db
settings=/etc/closebot-sync/closebot-sync.toml
mkdir -p "$cache"

if [ -n "${VERIFY_DEB:-}" ]; then
  deb=$VERIFY_DEB   # a package built elsewhere
else
  echo "verify: building the package"
  deb=$(cargo deb 2>"$cache/cargo-deb.log" | tail -n 1) || { cat "$cache/cargo-deb.log" >&2; exit 1; }
fi
[ -f "$deb" ] || { echo "verify: cargo deb gave no package (see $cache/cargo-deb.log)" >&2; exit 1; }
echo "verify: $deb"

if [ ! -e "$base/.complete" ]; then
  echo "verify: making a Debian 12 root with debootstrap (once; cached in $base)"
  rm -rf "$base"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,sqlite3 \
    bookworm "$base" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
  touch "$base/.complete"
fi
rm -rf "$root"
cp -a "$base" "$root"
cp "$deb" "$root/root/closebot-sync.deb"
# systemd sets the hostname from /etc/hostname at boot (debootstrap copied the host's).
echo closebot-verify >"$root/etc/hostname"

# From here on a failed command is a failed check, not the end of the script.
set +e
failures=0
check() { # check NAME OK(0/1) DETAIL
  if [ "$2" -eq 0 ]; then echo "PASS  $1: $3"; else echo "FAIL  $1: $3"; failures=$((failures + 1)); fi
}

echo "verify: booting the container"
systemd-nspawn --boot --register=no --keep-unit --private-network \
  -D "$root" </dev/null >"$cache/boot.log" 2>&1 &
nspawn=$!
leader=""
shutdown() {
  if [ -n "$leader" ] && kill -0 "$nspawn" 2>/dev/null; then
    nsenter --target "$leader" --mount --uts --ipc --net --pid -- systemctl poweroff >/dev/null 2>&1 || true
  fi
  for _ in $(seq 1 30); do kill -0 "$nspawn" 2>/dev/null || return 0; sleep 1; done
  kill "$nspawn" 2>/dev/null || true
  wait "$nspawn" 2>/dev/null || true
}
trap shutdown EXIT
# The container's init is the nspawn process's child once it runs systemd; its manager is up
# when is-system-running answers (running, or degraded if some unit of the base failed).
inside() { nsenter --target "$leader" --mount --uts --ipc --net --pid -- "$@"; }
state=""
for _ in $(seq 1 120); do
  for pid in $(ps --ppid "$nspawn" -o pid= 2>/dev/null); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ] && leader=$pid
  done
  if [ -n "$leader" ]; then
    state=$(inside systemctl is-system-running 2>/dev/null)
    case "$state" in running|degraded) break ;; esac
  fi
  kill -0 "$nspawn" 2>/dev/null || break
  sleep 1
done
case "$state" in
  running|degraded) ;;
  *) echo "verify: the container did not boot (state '${state}'; see $cache/boot.log)" >&2; exit 1 ;;
esac
# Everything below runs inside the container, as its root.
echo "verify: systemd $(inside systemctl --version | head -n 1 | cut -d' ' -f2) in the container is $state"
show() { inside systemctl show closebot-sync -p "$1" --value; }

# --- the package ---------------------------------------------------------------------------
inside dpkg -i /root/closebot-sync.deb >"$cache/dpkg.log" 2>&1
check "install" $? "dpkg -i on a running systemd (log: $cache/dpkg.log)"
enabled=$(inside systemctl is-enabled closebot-sync 2>&1 || true)
active=$(inside systemctl is-active closebot-sync 2>&1 || true)
[ "$enabled" = disabled ] && [ "$active" = inactive ]
check "install starts nothing" $? "closebot-sync.service is $enabled and $active after the install"
mode=$(inside stat -c '%a %U' "$settings")
conffiles=$(inside dpkg-query -W -f='${Conffiles}' closebot-sync)
[ "$mode" = "600 root" ] && grep -q "$settings" <<<"$conffiles"
check "settings" $? "$settings is mode $mode, conffile: $(grep -c "$settings" <<<"$conffiles")"
missing=""
for url in $(show Documentation); do
  inside test -f "${url#file://}" || missing="$missing ${url#file://}"
done
[ -z "$missing" ] && [ -n "$(show Documentation)" ]
check "docs" $? "Documentation= $(show Documentation) ${missing:+missing:$missing}"
[ "$(show ExecStart | grep -o 'path=[^ ;]*')" = "path=/usr/bin/closebot-sync" ] && inside test -x /usr/bin/closebot-sync
check "binary" $? "ExecStart $(show ExecStart | grep -o 'path=[^ ;]*')"

# --- a simulator to sync from, a key, a frequent schedule ------------------------------------
inside systemd-run --quiet --unit=closebot-simulator /usr/bin/closebot-sync simulate --listen "$sim"
inside sh -c "umask 077; printf 'sim-key\n' > /etc/closebot-sync/api-key"
inside sed -i -e "s|^base_url = .*|base_url = \"http://$sim\"|" \
          -e 's|^cron = .*|cron = "*/20 * * * * *"|' "$settings"
for _ in $(seq 1 20); do inside bash -c "exec 3<>/dev/tcp/${sim%:*}/${sim#*:}" 2>/dev/null && break; sleep 0.5; done

# --- start: active only after READY ----------------------------------------------------------
started=$(date +%s)
inside timeout 60 systemctl enable --now closebot-sync >/dev/null 2>&1
rc=$?
[ "$rc" -eq 0 ] && [ "$(show ActiveState)/$(show SubState)" = active/running ] && [ "$(show Type)" = notify ]
check "ready" $? "systemctl enable --now returned $rc after $(($(date +%s) - started)) s; $(show ActiveState)/$(show SubState), Type=$(show Type), status \"$(show StatusText)\""

# --- a run recorded, with its host -------------------------------------------------------------
row=""
for _ in $(seq 1 60); do
  row=$(inside sqlite3 -readonly "$db" "SELECT run_id, status, coalesce(host, 'NULL') FROM sync_runs WHERE status = 'succeeded' ORDER BY run_id LIMIT 1" 2>/dev/null || true)
  [ -n "$row" ] && break
  sleep 1
done
[ -n "$row" ]
check "run recorded" $? "sync_runs (run_id|status|host): ${row:-no succeeded run within 60 s}"
host=${row##*|}
[ "$host" = "$(inside hostname)" ]
check "run host" $? "sync_runs.host = $host, the container's hostname is $(inside hostname)"

# --- the watchdog: quiet past WatchdogSec ------------------------------------------------------
watchdog_us=$(inside systemd-analyze timespan "$(show WatchdogUSec)" | sed -n 's/^ *μs: *//p')
watchdog_s=$(( ${watchdog_us:-60000000} / 1000000 ))
wait_until=$((started + watchdog_s + 15))
echo "verify: letting the service run past its watchdog interval (${watchdog_s} s)"
while [ "$(date +%s)" -lt "$wait_until" ]; do sleep 5; done
kills=$(inside journalctl -u closebot-sync --no-pager -o cat | grep -ci 'watchdog timeout' || true)
runs=$(inside sqlite3 -readonly "$db" "SELECT count(*) FROM sync_runs")
[ "$kills" -eq 0 ] && [ "$(show NRestarts)" = 0 ] && [ "$(show ActiveState)" = active ] && [ "$runs" -ge 2 ]
check "watchdog quiet" $? "$(($(date +%s) - started)) s up, $kills watchdog timeouts in the journal, NRestarts=$(show NRestarts), $runs runs recorded"

# --- read commands as root leave the service's files alone --------------------------------------
out=$(inside env CLOSEBOT_SYNC_DATABASE__URL="sqlite://$db" closebot-sync --config "$settings" status 2>&1)
rc=$?
check "status as root" $rc "exit $rc: $(head -n 1 <<<"$out")"
rootfiles=$(inside find /var/lib/private/closebot-sync -user root -printf '%f ')
[ $? -eq 0 ] && [ -z "$rootfiles" ]
check "no root-owned files" $? "state directory files owned by root after the read: ${rootfiles:-none}"

# --- a clean stop ------------------------------------------------------------------------------
t0=$(date +%s%N)
inside timeout 40 systemctl stop closebot-sync
rc=$?
took=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$rc" -eq 0 ] && [ "$(show Result)" = success ] && [ "$(show ExecMainStatus)" = 0 ] && [ "$took" -lt 30000 ]
check "clean stop" $? "systemctl stop returned $rc in $took ms; Result=$(show Result), ExecMainCode=$(show ExecMainCode), ExecMainStatus=$(show ExecMainStatus)"

# --- invalid settings: exit 2, not restarted -------------------------------------------------
settings_error() { # settings_error NAME CRON
  inside sed -i -e "s|^cron = .*|cron = \"$2\"|" "$settings"
  inside systemctl reset-failed closebot-sync 2>/dev/null || true
  inside timeout 60 systemctl start closebot-sync >/dev/null 2>&1 || true
  sleep 15 # past RestartSec=10s: a restart would have happened by now
  local status restarts
  status=$(show ExecMainStatus)
  restarts=$(show NRestarts)
  [ "$status" = 2 ] && [ "$restarts" = 0 ] && [ "$(show ActiveState)" = failed ]
  check "$1" $? "cron \"$2\": ExecMainStatus=$status, NRestarts=$restarts, $(show ActiveState); last words: $(inside journalctl -u closebot-sync --no-pager -o cat -n 30 | grep -i cron | tail -n 1 | cut -c1-200)"
  inside systemctl stop closebot-sync 2>/dev/null || true
}
settings_error "bad cron exits 2, not restarted" "every quarter hour"
settings_error "never-firing cron exits 2, not restarted" "0 0 0 30 2 *"

# --- removal stops the service ------------------------------------------------------------
inside sed -i -e 's|^cron = .*|cron = "*/20 * * * * *"|' "$settings"
inside systemctl reset-failed closebot-sync 2>/dev/null
inside timeout 60 systemctl start closebot-sync
before=$(inside systemctl is-active closebot-sync)
inside journalctl --no-pager -u closebot-sync -u closebot-simulator >"$cache/journal.log" 2>&1
inside dpkg -r closebot-sync >>"$cache/dpkg.log" 2>&1
rc=$?
after=$(inside systemctl is-active closebot-sync)
kept=$(inside sh -c "ls $settings /var/lib/private/closebot-sync/closebot-sync.db 2>/dev/null | wc -l")
[ "$rc" -eq 0 ] && [ "$before" = active ] && [ "$after" != active ] && [ "$kept" -eq 2 ]
check "remove" $? "dpkg -r exited $rc; the service was $before, then $after; settings and database kept: $kept of 2"

echo "verify: the container's journal for both units is in $cache/journal.log"
if [ "$failures" -gt 0 ]; then echo "verify: $failures check(s) FAILED"; exit 1; fi
echo "verify: all checks passed"
