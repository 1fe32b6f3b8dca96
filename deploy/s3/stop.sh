#!/bin/sh
# Stop the moto S3 server that deploy/s3/start.sh started (by its PID file).
set -eu
DIR="${S3_DIR:-${TMPDIR:-/tmp}/medpipe-s3}"
exec sh "$(dirname "$0")/../stop-pid.sh" moto "$DIR/moto.pid"
