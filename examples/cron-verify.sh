#!/usr/bin/env bash
# Nightly integrity check for cron, e.g.:
#   17 3 * * *  METANODE_HOME=/srv/metanode METANODE_PASSPHRASE_FILE=/etc/metanode/pass /usr/local/bin/cron-verify.sh
# Exit codes: 0 clean, 10 a replica is missing or corrupt, 6 a provider could not be reached.
set -uo pipefail
metanode="${METANODE:-metanode}"
report="$("$metanode" storage verify --all --json)"
code=$?
echo "$report" | python3 -c '
import json, sys
report = json.load(sys.stdin)
print(report["blocks_checked"], "blocks checked,", report["blocks_with_problems"], "with problems")
'
exit $code
