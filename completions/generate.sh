#!/usr/bin/env bash
# Regenerate the shell completion scripts from the installed CLI.
# tests/cli/test_completions.py fails when these are stale.
set -euo pipefail
cd "$(dirname "$0")"
for shell in bash zsh fish; do
    _METANODE_COMPLETE="source_${shell}" metanode > "metanode.${shell}"
done
