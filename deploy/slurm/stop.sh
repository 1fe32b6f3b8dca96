#!/usr/bin/env bash
# `make slurm-stop`: stop the daemons `make slurm` started (slurmd, slurmctld, munged),
# each by the PID in its pid file, and wait until they are gone.  Idempotent.
set -euo pipefail

STATE=${MEDPIPE_SLURM_STATE:-/var/lib/medpipe-slurm}

stop() {  # stop NAME PIDFILE
  local pid
  [[ -s $2 ]] || return 0
  pid=$(cat "$2")
  if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]; then  # not a reused pid
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    echo "make slurm-stop: stopped $1 (pid $pid)"
  fi
  rm -f "$2"
}

stop slurmd "$STATE/slurmd.pid"
stop slurmctld "$STATE/slurmctld.pid"
stop munged /run/munge/munged.pid
