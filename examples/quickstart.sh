#!/usr/bin/env bash
# The tour on the embedded default: three local providers, no cloud account.
# Installs into .venv first unless METANODE (a metanode executable) is given.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${METANODE:-}" ]; then
    [ -x "$root/.venv/bin/metanode" ] || {
        python3 -m venv "$root/.venv"
        "$root/.venv/bin/pip" install -q "$root"
    }
    METANODE="$root/.venv/bin/metanode"
fi
export METANODE_HOME="${METANODE_HOME:-$(mktemp -d)/node}"
export METANODE_PASSPHRASE="${METANODE_PASSPHRASE:-quickstart passphrase, change me}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$METANODE" storage distributed init
head -c 5000000 /dev/urandom > "$work/data.bin"
block_id="$("$METANODE" storage put "$work/data.bin")"
echo "stored block $block_id"
"$METANODE" storage get "$block_id" -o "$work/back.bin"
cmp "$work/data.bin" "$work/back.bin" && echo "retrieved bit-exact"
"$METANODE" storage verify --all
"$METANODE" storage distributed status
echo "node home: $METANODE_HOME"
