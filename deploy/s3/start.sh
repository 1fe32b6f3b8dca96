#!/bin/sh
# Start moto's S3 server on 127.0.0.1:$S3_PORT (a real S3 API for the tests), its PID in
# $S3_DIR/moto.pid; waits until it answers.  Point fsspec/boto at it with
#   AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
set -eu
PORT="${S3_PORT:-5555}"
DIR="${S3_DIR:-${TMPDIR:-/tmp}/medpipe-s3}"
BIN="${BIN:-.venv/bin}"
"$BIN/python" -c 'import moto.server' 2>/dev/null || "$BIN/python" -m pip install --quiet 'moto[server]>=5.0'
mkdir -p "$DIR"
if [ -f "$DIR/moto.pid" ] && kill -0 "$(cat "$DIR/moto.pid")" 2>/dev/null; then
  echo "moto already running (PID $(cat "$DIR/moto.pid"))"
  exit 0
fi
"$BIN/moto_server" -H 127.0.0.1 -p "$PORT" >"$DIR/moto.log" 2>&1 &
echo $! >"$DIR/moto.pid"
i=0
until curl -s -o /dev/null "http://127.0.0.1:$PORT/"; do
  i=$((i + 1))
  if ! kill -0 "$(cat "$DIR/moto.pid")" 2>/dev/null; then
    echo "error: moto_server exited at start; its log ($DIR/moto.log) ends with:" >&2
    tail -n 20 "$DIR/moto.log" >&2
    exit 1
  fi
  [ "$i" -lt 300 ] || { echo "error: moto did not answer on port $PORT within 30 s" >&2; exit 1; }
  sleep 0.1
done
echo "S3 API (moto) on http://127.0.0.1:$PORT, PID $(cat "$DIR/moto.pid"); stop: make s3-stop"
