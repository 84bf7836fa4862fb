#!/usr/bin/env bash
# Tear down the two-host cluster started by multihost-start.sh: cancel its jobs, stop its own daemons
# by their pid files, kill whatever is still inside its network namespaces (job steps), then delete
# the namespaces and the bridge. Touches nothing else (the one-host cluster keeps running).
# Keeps $WPS_SLURM_MH_DIR (logs, database) unless --purge.
set -uo pipefail
DIR="${WPS_SLURM_MH_DIR:-/tmp/wps-slurm-mh}"
[ -d "$DIR" ] || exit 0
BRIDGE="${WPS_SLURM_MH_BRIDGE:-wpsbr0}"; PREFIX="${WPS_SLURM_MH_PREFIX:-wpsmh}"
NETNS="$PREFIX-wpsctl $PREFIX-wpsnode1 $PREFIX-wpsnode2"
# shellcheck disable=SC1091
[ -f "$DIR/cluster.env" ] && . "$DIR/cluster.env"   # the names the start script really used
export SLURM_CONF="$DIR/etc/slurm.conf"
if [ -f "$DIR/run/slurmctld.pid" ] && kill -0 "$(cat "$DIR/run/slurmctld.pid")" 2>/dev/null; then
  timeout 10 scancel --full --quiet --user=root >/dev/null 2>&1 || true
fi
stop() {  # pid files → TERM all at once, wait up to 10 s, then KILL
  local d f pid pids=()
  for d in "$@"; do
    f="$DIR/run/$d.pid"; [ -f "$f" ] || continue
    pid="$(cat "$f")"; rm -f "$f"
    case "$(cat "/proc/$pid/comm" 2>/dev/null)" in   # a stale pid file must not end someone else's process
      "${d%%-*}"|mariadbd) kill "$pid" 2>/dev/null && pids+=("$pid") ;;
    esac
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  done
}
slurmds=(); for f in "$DIR"/run/slurmd-*.pid; do [ -e "$f" ] && { f="${f##*/}"; slurmds+=("${f%.pid}"); }; done
stop "${slurmds[@]}" slurmctld
stop slurmdbd     # flushes to MariaDB: stop it first
stop mariadb munged
# Job steps, slurmstepd and anything a user started in the namespaces.
for ns in $NETNS; do
  [ -e "/run/netns/$ns" ] || continue
  pids="$(ip netns pids "$ns" 2>/dev/null)"
  [ -n "$pids" ] && kill -9 $pids 2>/dev/null
done
# Deleting a netns frees its veth asynchronously: delete our root-side ends (and so their peers) now.
for link in $(ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | grep "^${PREFIX}v[0-9]*$"); do
  ip link delete "$link" 2>/dev/null
done
for ns in $NETNS; do
  [ -e "/run/netns/$ns" ] || continue
  for _ in $(seq 20); do [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break; sleep 0.25; done
  ip netns delete "$ns" 2>/dev/null || echo "[wps-slurm-mh] could not delete netns $ns" >&2
done
ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
rm -f "$DIR/run/mysqld.sock" "$DIR/munge/munge.socket.2"*
if [ "${1:-}" = --purge ]; then rm -rf "$DIR"; fi
echo "[wps-slurm-mh] stopped ($DIR)" >&2
