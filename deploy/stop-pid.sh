#!/bin/sh
# Stop a server started in the background by its PID file: stop-pid.sh NAME PIDFILE
# SIGTERM, up to 10 s for it to exit, then SIGKILL; the PID file is removed.
# Shared by deploy/orthanc/stop.sh and deploy/s3/stop.sh.
set -eu
NAME="$1"
PIDFILE="$2"
[ -f "$PIDFILE" ] || { echo "no $NAME PID file ($PIDFILE): nothing to stop"; exit 0; }
PID=$(cat "$PIDFILE")
if kill "$PID" 2>/dev/null; then
  i=0
  while kill -0 "$PID" 2>/dev/null && [ "$i" -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
  kill -0 "$PID" 2>/dev/null && kill -9 "$PID" 2>/dev/null || true
  echo "stopped $NAME (PID $PID)"
fi
rm -f "$PIDFILE"
