#!/usr/bin/env bash
# A CI job: store a build artefact, keep its block id, fetch it back later.
# On the node: METANODE_HOME and METANODE_PASSPHRASE from the CI's secret store.
# On a runner elsewhere, through the node's service (`distributed start --tls-cert ...`):
#   METANODE_REMOTE=https://node:9090  METANODE_TOKEN=...  (`token show` on the node)
#   METANODE_CACERT=ca.pem for a private CA; the node's key is pinned on first use
#   (or give it: METANODE_SERVICE_KEY, what `keys show --json` prints as public_key).
# The retrieved bytes are checked against the block's signed proof before cmp sees them.
set -euo pipefail
artefact="${1:?usage: ci-store-retrieve.sh FILE}"
metanode="${METANODE:-metanode}"
block_id="$("$metanode" storage put "$artefact" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["block_id"])')"
echo "$block_id" > "$artefact.block-id"
"$metanode" storage get "$block_id" | cmp - "$artefact"
echo "artefact stored as $block_id and read back"
