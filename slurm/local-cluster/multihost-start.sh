#!/usr/bin/env bash
# Bring up a real SLURM cluster of TWO compute hosts on one Linux box, as root (docs/multinode.md).
# Each host is a network + UTS + mount namespace with its own hostname, its own /etc/hosts and an
# address on a bridge in the root namespace; the veth inside each is named eth0 (so a cluster profile
# can say `network_interface: eth0`):
#
#   root ns   bridge wpsbr0 10.213.7.1/24 (sbatch/squeue/scontrol/scancel/sacct run here; munged too)
#   wpsctl    10.213.7.10  MariaDB, slurmdbd, slurmctld      netns wpsmh-ctl
#   wpsnode1  10.213.7.11  slurmd (CPUs=2)                   netns wpsmh-wpsnode1
#   wpsnode2  10.213.7.12  slurmd (CPUs=2)                   netns wpsmh-wpsnode2
#
# Everything else lives in $WPS_SLURM_MH_DIR (default /tmp/wps-slurm-mh). Names, ports, addresses and
# the state dir differ from slurm/local-cluster/start.sh, so both clusters can run at once.
# Idempotent: running it while the cluster is up only prints the SLURM_CONF line.
#
#   eval "$(slurm/local-cluster/multihost-start.sh)"   # exports SLURM_CONF for sbatch/squeue/sacct
#   slurm/local-cluster/multihost-stop.sh
#
# Never run `srun` from the root namespace (its hostname is not on the bridge); run it inside a job.
set -euo pipefail

DIR="${WPS_SLURM_MH_DIR:-/tmp/wps-slurm-mh}"
PARTITION="${WPS_SLURM_MH_PARTITION:-debug}"   # must match slurm/local-multihost.yaml
BRIDGE="${WPS_SLURM_MH_BRIDGE:-wpsbr0}"
NET="${WPS_SLURM_MH_NET:-10.213.7}"            # a free /24: .1 bridge, .10 controller, .11… nodes
PREFIX="${WPS_SLURM_MH_PREFIX:-wpsmh}"         # netns and veth names start with it
CPUS="${WPS_SLURM_MH_CPUS:-2}"                 # per node; may exceed the real cores (config_overrides)
NODES=(wpsnode1 wpsnode2)
CTL=wpsctl
CTLD_PORT=6917; SLURMD_PORT=6918; DBD_PORT=6919; DB_PORT=6920   # one-host cluster: random free ports
log() { echo "[wps-slurm-mh] $*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
HERE="$(cd "$(dirname "$0")" && pwd)"
export SLURM_CONF="$DIR/etc/slurm.conf"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
all_alive() {
  local f
  for f in munged mariadb slurmdbd slurmctld "slurmd-${NODES[0]}" "slurmd-${NODES[1]}"; do
    alive "$DIR/run/$f.pid" || return 1
  done
}
idle_nodes() { timeout 5 sinfo -h -N -p "$PARTITION" -o '%N %T' 2>/dev/null | awk '$2=="idle"' | wc -l; }
if all_alive && timeout 10 sinfo -h >/dev/null 2>&1; then
  log "already running in $DIR"
  echo "export SLURM_CONF=$SLURM_CONF"
  exit 0
fi
# A half-started cluster (crash, killed CI job), or namespaces left by one: tear it down first.
if [ -d "$DIR/run" ] || ip netns list 2>/dev/null | grep -q "^$PREFIX-"; then "$HERE/multihost-stop.sh" >&2 || true; fi

need=()
for b in slurmctld:slurmctld slurmd:slurmd slurmdbd:slurmdbd munged:munge mariadbd:mariadb-server sbatch:slurm-client \
         ip:iproute2 nsenter:util-linux; do
  command -v "${b%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${b%%:*}" ] || need+=("${b##*:}")
done
if [ ${#need[@]} -gt 0 ]; then   # CI machines start bare
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends slurm-wlm slurmdbd munge mariadb-server iproute2 >&2
fi
if ip link show "$BRIDGE" >/dev/null 2>&1; then log "bridge $BRIDGE already exists (not ours?); set WPS_SLURM_MH_BRIDGE"; exit 1; fi
if ip -4 addr | grep -q "inet $NET\."; then log "$NET.0/24 is already in use here; set WPS_SLURM_MH_NET"; exit 1; fi

mkdir -p "$DIR"/{etc,run,log,spool/ctld,spool/d,munge,db}
chmod 755 "$DIR" "$DIR/munge"        # note: munge socket dir must be 755
MUNGE_SOCK="$DIR/munge/munge.socket.2"
CTL_IP="$NET.10"
ns_of() { echo "$PREFIX-$1"; }       # netns of a host
ip_of() { if [ "$1" = "$CTL" ]; then echo "$CTL_IP"; else local i; for i in "${!NODES[@]}"; do [ "${NODES[$i]}" = "$1" ] && echo "$NET.$((11 + i))"; done; fi; }

# What stop.sh and tests/fixtures/slurm_multihost.py read (the names this run used).
cat >"$DIR/cluster.env" <<ENV
BRIDGE=$BRIDGE
BRIDGE_IP=$NET.1
PREFIX=$PREFIX
CTL=$CTL
CTL_IP=$CTL_IP
NODES="${NODES[*]}"
NETNS="$(for h in "$CTL" "${NODES[@]}"; do printf '%s ' "$(ns_of "$h")"; done)"
PARTITION=$PARTITION
ENV

# --- network: bridge in the root ns, one netns per host, veth "eth0" inside ----------------------
ip link add "$BRIDGE" type bridge
ip addr add "$NET.1/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
n=0
for h in "$CTL" "${NODES[@]}"; do
  ns="$(ns_of "$h")"; veth="${PREFIX}v$n"; n=$((n + 1))
  ip netns add "$ns"
  ip link add "$veth" type veth peer name eth0 netns "$ns"
  ip link set "$veth" master "$BRIDGE" up
  ip -n "$ns" addr add "$(ip_of "$h")/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done
{
  echo "127.0.0.1 localhost"
  echo "$NET.1 ${PREFIX}gw"          # the root namespace on the bridge (MLflow server, test servers)
  for h in "$CTL" "${NODES[@]}"; do echo "$(ip_of "$h") $h"; done
} >"$DIR/etc/hosts"
chmod 644 "$DIR/etc/hosts"

# Run a command as host $1: its netns, a fresh UTS ns named $1 and a private mount ns whose /etc/hosts
# is ours. note: not `ip netns exec`, which remounts /sys (and /sys/fs/cgroup disappears).
as_host() {
  local h="$1"; shift
  nsenter --net="/run/netns/$(ns_of "$h")" unshare --uts --mount --propagation private \
    bash -c 'hostname "$1" && mount --bind "$2" /etc/hosts && shift 2 && exec "$@"' _ "$h" "$DIR/etc/hosts" "$@"
}

# --- munge (root ns; its path socket crosses network namespaces) ---------------------------------
[ -f "$DIR/etc/munge.key" ] || { dd if=/dev/urandom bs=1 count=1024 of="$DIR/etc/munge.key" 2>/dev/null; }
chmod 400 "$DIR/etc/munge.key"
munged --force --key-file="$DIR/etc/munge.key" --socket="$MUNGE_SOCK" \
  --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/run/munge.seed"

# --- MariaDB (controller ns, own datadir) --------------------------------------------------------
if [ ! -d "$DIR/db/mysql" ]; then
  mariadb-install-db --user=root --datadir="$DIR/db" --auth-root-authentication-method=normal \
    --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1
fi
export DIR PREFIX; export -f as_host ns_of
setsid bash -c 'as_host "$@"' _ "$CTL" mariadbd --no-defaults --user=root --datadir="$DIR/db" --bind-address=127.0.0.1 \
  --port=$DB_PORT --socket="$DIR/run/mysqld.sock" --pid-file="$DIR/run/mariadb.pid" --skip-name-resolve \
  --innodb-buffer-pool-size=64M --log-error="$DIR/log/mariadb.log" </dev/null >/dev/null 2>&1 &  # setsid: survive `timeout`/CI killing the caller's group
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
DbdHost=$CTL
DbdAddr=$CTL_IP
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

# Hosts are named with their addresses (name(addr), NodeAddr) so clients in the root ns, whose
# /etc/hosts does not know them, reach the controller and nodes without name resolution.
cat >"$DIR/etc/slurm.conf" <<CONF
ClusterName=wpsmh
SlurmctldHost=$CTL($CTL_IP)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK,cred_expire=10
CredType=cred/munge
MailProg=/bin/true
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmdParameters=config_overrides
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
AccountingStorageHost=$CTL_IP
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCK
CONF
read -r MEM < <(slurmd -C 2>/dev/null | head -1 | tr ' ' '\n' | awk -F= '/^RealMemory=/{print $2}')
MEM=$(( MEM * 9 / 10 ))   # each node claims the box's memory: the two overcommit it together
for h in "${NODES[@]}"; do
  echo "NodeName=$h NodeAddr=$(ip_of "$h") CPUs=$CPUS RealMemory=$MEM State=UNKNOWN" >>"$DIR/etc/slurm.conf"
done
echo "PartitionName=$PARTITION Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO" \
  >>"$DIR/etc/slurm.conf"
touch "$DIR/etc/cgroup.conf"
for h in "${NODES[@]}"; do mkdir -p "$DIR/spool/d/$h"; done

# --- daemons (each daemonizes inside its host's namespaces) ---------------------------------------
as_host "$CTL" slurmdbd   # reads slurmdbd.conf next to $SLURM_CONF
for _ in $(seq 60); do timeout 5 sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
timeout 10 sacctmgr -i add cluster wpsmh >/dev/null 2>&1 || true
as_host "$CTL" slurmctld -f "$SLURM_CONF"
for h in "${NODES[@]}"; do as_host "$h" slurmd -f "$SLURM_CONF"; done
for _ in $(seq 120); do
  [ "$(idle_nodes)" -ge "${#NODES[@]}" ] && break
  sleep 0.5
done
if [ "$(idle_nodes)" -lt "${#NODES[@]}" ]; then
  log "nodes not idle: $(timeout 5 sinfo -h -N -o '%N=%T' 2>/dev/null | tr '\n' ' '); logs in $DIR/log"; exit 1
fi
log "cluster up in $DIR: ${NODES[*]} ($CPUS CPUs, ${MEM} MB each) on $BRIDGE $NET.0/24, controller $CTL $CTL_IP"
echo "export SLURM_CONF=$SLURM_CONF"
