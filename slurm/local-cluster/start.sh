#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster (munge, MariaDB, slurmdbd, slurmctld, slurmd) on a Debian
# box, as root. Everything lives in $WPS_SLURM_DIR (default /tmp/wps-slurm): configs, sockets, logs,
# spool, database. Idempotent: running it while the cluster is up only prints the SLURM_CONF line.
# Gotchas measured on this machine are in docs/measurements.md (SLURM); each is marked "note:" below.
#
#   eval "$(slurm/local-cluster/start.sh)"     # exports SLURM_CONF for sbatch/squeue/sacct
#   slurm/local-cluster/stop.sh
set -euo pipefail

DIR="${WPS_SLURM_DIR:-/tmp/wps-slurm}"
PARTITION="${WPS_SLURM_PARTITION:-debug}"   # must match slurm/local-cluster.yaml
log() { echo "[wps-slurm] $*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmd.pid" && alive "$DIR/run/slurmdbd.pid" && alive "$DIR/run/mariadb.pid" \
   && SLURM_CONF="$DIR/etc/slurm.conf" timeout 10 sinfo -h >/dev/null 2>&1; then
  log "already running in $DIR"
  echo "export SLURM_CONF=$DIR/etc/slurm.conf"
  exit 0
fi
# A half-started cluster (crash, killed CI job): tear it down first.
[ -d "$DIR/run" ] && "$(dirname "$0")/stop.sh" >&2 || true

need=()
for b in slurmctld:slurmctld slurmd:slurmd slurmdbd:slurmdbd munged:munge mariadbd:mariadb-server sbatch:slurm-client; do
  command -v "${b%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${b%%:*}" ] || need+=("${b##*:}")
done
if [ ${#need[@]} -gt 0 ]; then   # CI machines start bare
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends slurm-wlm slurmdbd munge mariadb-server >&2
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mkdir -p "$DIR"/{etc,run,log,spool/ctld,spool/d,munge,db}
chmod 755 "$DIR" "$DIR/munge"        # note: munge socket dir must be 755
HOST="$(hostname -s)"
read -r CPUS MEM < <(slurmd -C | head -1 | tr ' ' '\n' | awk -F= '/^CPUs=/{c=$2} /^RealMemory=/{m=$2} END{print c, m}')
MEM=$(( MEM * 9 / 10 ))              # note: CPUs/RealMemory must not exceed `slurmd -C`
CTLD_PORT=$(free_port); SLURMD_PORT=$(free_port); DBD_PORT=$(free_port); DB_PORT=$(free_port)
MUNGE_SOCK="$DIR/munge/munge.socket.2"

# --- munge ---------------------------------------------------------------------------------------
[ -f "$DIR/etc/munge.key" ] || { dd if=/dev/urandom bs=1 count=1024 of="$DIR/etc/munge.key" 2>/dev/null; }
chmod 400 "$DIR/etc/munge.key"
munged --force --key-file="$DIR/etc/munge.key" --socket="$MUNGE_SOCK" \
  --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/run/munge.seed"

# --- MariaDB (own datadir, TCP on a free port) ----------------------------------------------------
if [ ! -d "$DIR/db/mysql" ]; then
  mariadb-install-db --user=root --datadir="$DIR/db" --auth-root-authentication-method=normal \
    --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1
fi
setsid mariadbd --no-defaults --user=root --datadir="$DIR/db" --bind-address=127.0.0.1 --port="$DB_PORT" \
  --socket="$DIR/run/mysqld.sock" --pid-file="$DIR/run/mariadb.pid" --skip-name-resolve \
  --innodb-buffer-pool-size=64M --log-error="$DIR/log/mariadb.log" </dev/null >/dev/null 2>&1 &  # setsid: survive `timeout`/CI killing the caller's process group
for _ in $(seq 60); do [ -S "$DIR/run/mysqld.sock" ] && break; sleep 0.5; done
[ -S "$DIR/run/mysqld.sock" ] || { log "MariaDB did not start (see $DIR/log/mariadb.log)"; exit 1; }
mariadb --socket="$DIR/run/mysqld.sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'wps';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL

# --- configs --------------------------------------------------------------------------------------
cat >"$DIR/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=wps
StorageLoc=slurm_acct_db
CONF
chmod 600 "$DIR/etc/slurmdbd.conf"    # note: slurmdbd.conf mode 600, owned by SlurmUser (root)

cat >"$DIR/etc/slurm.conf" <<CONF
ClusterName=wps
SlurmctldHost=$HOST
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK,cred_expire=10
CredType=cred/munge
MailProg=/bin/true
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
JobRequeue=1
MinJobAge=30
KillWait=10
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCK
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
touch "$DIR/etc/cgroup.conf"
export SLURM_CONF="$DIR/etc/slurm.conf"   # note: clients need SLURM_CONF outside /etc/slurm

# --- daemons --------------------------------------------------------------------------------------
slurmdbd   # reads slurmdbd.conf next to $SLURM_CONF
for _ in $(seq 60); do (echo >/dev/tcp/127.0.0.1/$DBD_PORT) 2>/dev/null && break; sleep 0.5; done
sacctmgr -i add cluster wps >/dev/null 2>&1 || true
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  state="$(timeout 5 sinfo -h -n "$HOST" -o %T 2>/dev/null || true)"
  [ "$state" = idle ] && break
  sleep 0.5
done
if [ "${state:-}" != idle ]; then
  log "node not idle (state '${state:-none}'); logs in $DIR/log"; exit 1
fi
log "cluster up in $DIR (partition $PARTITION, $CPUS CPUs, ${MEM} MB)"
echo "export SLURM_CONF=$SLURM_CONF"
