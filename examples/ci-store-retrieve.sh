#!/usr/bin/env bash
# A CI job: store a build artefact, keep its block id, fetch it back later.
# Expects METANODE_HOME and METANODE_PASSPHRASE from the CI's secret store.
set -euo pipefail
artefact="${1:?usage: ci-store-retrieve.sh FILE}"
metanode="${METANODE:-metanode}"
block_id="$("$metanode" storage put "$artefact" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["block_id"])')"
echo "$block_id" > "$artefact.block-id"
"$metanode" storage get "$block_id" | cmp - "$artefact"
echo "artefact stored as $block_id and read back"
