#!/bin/sh
# Start Orthanc (with its DICOMweb plugin) on 127.0.0.1:$ORTHANC_PORT for the tests and demos.
# Installs Debian's orthanc + orthanc-dicomweb when missing (needs root or sudo), writes a
# config under $ORTHANC_DIR, runs the binary itself (the package's service start is refused
# in containers), records its PID in $ORTHANC_DIR/orthanc.pid and waits until it answers.
# With ORTHANC_USER and ORTHANC_PASSWORD set, HTTP basic auth is required for that user.
set -eu
PORT="${ORTHANC_PORT:-8042}"
DIR="${ORTHANC_DIR:-${TMPDIR:-/tmp}/medpipe-orthanc}"
PLUGIN="${ORTHANC_DICOMWEB_PLUGIN:-/usr/share/orthanc/plugins/libOrthancDicomWeb.so}"

if ! command -v Orthanc >/dev/null 2>&1 || [ ! -f "$PLUGIN" ]; then
  echo "installing Debian's orthanc and orthanc-dicomweb"
  SUDO=$(test "$(id -u)" = 0 || echo sudo)
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    orthanc orthanc-dicomweb
fi
[ -f "$PLUGIN" ] || { echo "error: the DICOMweb plugin $PLUGIN is not installed" >&2; exit 1; }

AUTH='"AuthenticationEnabled": false,'
CURL_AUTH=""
if [ -n "${ORTHANC_USER:-}" ]; then
  AUTH="\"AuthenticationEnabled\": true, \"RegisteredUsers\": {\"$ORTHANC_USER\": \"${ORTHANC_PASSWORD:?ORTHANC_PASSWORD must be set with ORTHANC_USER}\"},"
  CURL_AUTH="$ORTHANC_USER:$ORTHANC_PASSWORD"
fi
mkdir -p "$DIR/db"
if [ -f "$DIR/orthanc.pid" ] && kill -0 "$(cat "$DIR/orthanc.pid")" 2>/dev/null; then
  echo "Orthanc already running (PID $(cat "$DIR/orthanc.pid")) in $DIR"
  exit 0
fi
cat > "$DIR/orthanc.json" <<JSON
{
  "Name": "medpipe-orthanc",
  "HttpPort": $PORT,
  "StorageDirectory": "$DIR/db",
  "IndexDirectory": "$DIR/db",
  "RemoteAccessAllowed": false,
  $AUTH
  "DicomServerEnabled": false,
  "Plugins": ["$PLUGIN"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/"}
}
JSON
Orthanc "$DIR/orthanc.json" >"$DIR/orthanc.log" 2>&1 &
echo $! >"$DIR/orthanc.pid"
i=0
until curl -sf ${CURL_AUTH:+-u "$CURL_AUTH"} "http://127.0.0.1:$PORT/dicom-web/studies" >/dev/null 2>&1; do
  i=$((i + 1))
  if ! kill -0 "$(cat "$DIR/orthanc.pid")" 2>/dev/null; then
    echo "error: Orthanc exited at start; its log ($DIR/orthanc.log) ends with:" >&2
    tail -n 20 "$DIR/orthanc.log" >&2
    exit 1
  fi
  if [ "$i" -ge 300 ]; then
    echo "error: Orthanc did not answer on port $PORT within 30 s (log: $DIR/orthanc.log)" >&2
    exit 1
  fi
  sleep 0.1
done
echo "Orthanc on http://127.0.0.1:$PORT (DICOMweb: dicomweb+http://127.0.0.1:$PORT/dicom-web)"
echo "PID $(cat "$DIR/orthanc.pid"), files in $DIR; stop it with: make orthanc-stop"
