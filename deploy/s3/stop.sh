#!/bin/sh
# Stop the moto S3 server that deploy/s3/start.sh started (by its PID file).
set -eu
DIR="${S3_DIR:-${TMPDIR:-/tmp}/medpipe-s3}"
PIDFILE="$DIR/moto.pid"
[ -f "$PIDFILE" ] || { echo "no moto PID file in $DIR: nothing to stop"; exit 0; }
PID=$(cat "$PIDFILE")
if kill "$PID" 2>/dev/null; then
  i=0
  while kill -0 "$PID" 2>/dev/null && [ "$i" -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
  kill -0 "$PID" 2>/dev/null && kill -9 "$PID" 2>/dev/null || true
  echo "stopped moto (PID $PID)"
fi
rm -f "$PIDFILE"
