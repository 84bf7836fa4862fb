#!/usr/bin/env bash
# Tear down the cluster started by start.sh: cancel its jobs, stop its daemons by their pid files.
# Keeps $WPS_SLURM_DIR (logs, database) unless --purge.
set -uo pipefail
DIR="${WPS_SLURM_DIR:-/tmp/wps-slurm}"
[ -d "$DIR/run" ] || exit 0
export SLURM_CONF="$DIR/etc/slurm.conf"
timeout 10 scancel --full --quiet --user=root >/dev/null 2>&1 || true
stop() {  # pid file → TERM, wait up to 10 s, then KILL
  local f="$DIR/run/$1.pid"; [ -f "$f" ] || return 0
  local pid; pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}
for d in slurmd slurmctld slurmdbd mariadb munged; do stop "$d"; done
rm -f "$DIR/run/mysqld.sock" "$DIR/munge/munge.socket.2"*
if [ "${1:-}" = --purge ]; then rm -rf "$DIR"; fi
echo "[wps-slurm] stopped ($DIR)" >&2
