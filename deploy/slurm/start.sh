#!/usr/bin/env bash
# A single-node SLURM cluster on this machine (`make slurm`), for the integration tests
# and for trying `--cluster slurm` on one host.  Needs root.  Idempotent: it installs
# Debian's slurm-wlm and munge when they are missing, writes the munge key (once) and
# /etc/slurm/slurm.conf (only a file it wrote itself), starts munged, slurmctld and
# slurmd where they are not running, and waits until `sinfo` shows the node idle.
# `make slurm-stop` (deploy/slurm/stop.sh) stops the daemons by their PIDs.
set -euo pipefail

STATE=${MEDPIPE_SLURM_STATE:-/var/lib/medpipe-slurm}   # spool, state, pid and log files
CONF=/etc/slurm/slurm.conf
MARK="# written by medpipe deploy/slurm/start.sh"
NODE=localhost
PARTITION=${MEDPIPE_SLURM_PARTITION:-normal}   # the queue deploy/cluster/slurm.yaml names
WAIT_S=${MEDPIPE_SLURM_WAIT_S:-90}

die() { echo "make slurm: $*" >&2; exit 1; }
# alive PIDFILE NAME: the pid file names a running process called NAME (not a reused pid)
alive() { [[ -s $1 ]] && [[ $(cat "/proc/$(cat "$1")/comm" 2>/dev/null) == "$2" ]]; }

[[ $(id -u) == 0 ]] || die "needs root (apt-get install, daemons on localhost); run it as root"

# -- packages -------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v sinfo >/dev/null; then
  echo "make slurm: installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q || die "apt-get update failed"
  apt-get install -y -q --no-install-recommends slurm-wlm munge \
    || die "apt-get install slurm-wlm munge failed"
fi

# -- munge ----------------------------------------------------------------------------
id munge >/dev/null 2>&1 || die "the munge package did not create the 'munge' user"
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  echo "make slurm: writing a new munge key"
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! alive /run/munge/munged.pid munged; then
  runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
fi
for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null || die "munge does not answer (see /var/log/munge/munged.log)"

# -- slurm.conf -----------------------------------------------------------------------
CPUS=$(nproc)
MEM_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
install -d -m 0755 /etc/slurm "$STATE" "$STATE/ctld" "$STATE/d" "$STATE/log"
if [[ -e $CONF ]] && ! grep -qxF "$MARK" "$CONF"; then
  die "$CONF exists and was not written by this script; not replacing it"
fi
NEW=$(mktemp)
cat >"$NEW" <<CONF
$MARK
# one node (this machine: $CPUS CPUs, $MEM_MB MB) with slurmctld and slurmd on localhost
ClusterName=medpipe
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmdParameters=config_overrides
DefMemPerCPU=1024
KillWait=5
InactiveLimit=0
MinJobAge=60
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
if ! cmp -s "$NEW" "$CONF"; then
  install -m 0644 "$NEW" "$CONF"
  CHANGED=1
fi
rm -f "$NEW"

# -- daemons --------------------------------------------------------------------------
if [[ ${CHANGED:-0} == 1 ]]; then   # a new configuration: restart what runs with the old one
  for pid in "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
    if alive "$pid" "$(basename "$pid" .pid)"; then kill "$(cat "$pid")"; fi
  done
  for _ in $(seq 100); do alive "$STATE/slurmd.pid" slurmd || alive "$STATE/slurmctld.pid" slurmctld || break; sleep 0.1; done
fi
logs() { tail -n 20 "$STATE"/log/*.log 2>/dev/null >&2 || true; }
if ! alive "$STATE/slurmctld.pid" slurmctld; then
  slurmctld || { logs; die "slurmctld did not start"; }
fi
if ! alive "$STATE/slurmd.pid" slurmd; then
  slurmd -N "$NODE" || { logs; die "slurmd did not start"; }
fi

deadline=$(( SECONDS + WAIT_S ))
state=""
while (( SECONDS < deadline )); do
  state=$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n 1 || true)
  case $state in
    idle|mixed|allocated) echo "make slurm: node $NODE is $state ($CPUS CPUs, $MEM_MB MB, partition $PARTITION)"; exit 0 ;;
    down*|drain*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
logs
die "node $NODE is not idle after ${WAIT_S}s (sinfo says '${state:-nothing}'); logs: $STATE/log/"
