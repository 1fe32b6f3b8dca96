#!/bin/sh
# Stop the Orthanc that deploy/orthanc/start.sh started (by the PID in $ORTHANC_DIR/orthanc.pid).
set -eu
DIR="${ORTHANC_DIR:-${TMPDIR:-/tmp}/medpipe-orthanc}"
PIDFILE="$DIR/orthanc.pid"
[ -f "$PIDFILE" ] || { echo "no Orthanc PID file in $DIR: nothing to stop"; exit 0; }
PID=$(cat "$PIDFILE")
if kill "$PID" 2>/dev/null; then
  i=0
  while kill -0 "$PID" 2>/dev/null && [ "$i" -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
  kill -0 "$PID" 2>/dev/null && kill -9 "$PID" 2>/dev/null || true
  echo "stopped Orthanc (PID $PID)"
fi
rm -f "$PIDFILE"
