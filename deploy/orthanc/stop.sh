#!/bin/sh
# Stop the Orthanc that deploy/orthanc/start.sh started (by the PID in $ORTHANC_DIR/orthanc.pid).
set -eu
DIR="${ORTHANC_DIR:-${TMPDIR:-/tmp}/medpipe-orthanc}"
exec sh "$(dirname "$0")/../stop-pid.sh" Orthanc "$DIR/orthanc.pid"
