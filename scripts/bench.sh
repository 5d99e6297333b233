#!/usr/bin/env bash
# One benchmark of bench/ on the project's pinned Node 24 (scripts/runtime.sh), with the local stack up
# (bench/crypto.ts uses only the stack's Python venv, for OpenSSL's own rate):
#   npm run bench -- crypto|e2e-rekey|memory|rewrap|plan
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/runtime.sh
names="crypto|e2e-rekey|memory|rewrap|plan|peer-script"
name="${1:-}"
if [[ ! "$name" =~ ^($names)$ ]]; then
  printf 'rekey: name a benchmark: npm run bench -- %s\n' "$names" >&2
  exit 2
fi
eval "$(bash scripts/stack.sh up)"
exec node --import tsx "bench/$name.ts"
