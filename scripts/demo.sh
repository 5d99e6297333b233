#!/usr/bin/env bash
# The demo: bring the local stack up, seed a bucket with a few hundred S3 Encryption Client objects under
# one KMS key, then rotate them with real campaigns (a rekey of the large objects, then a rewrap of all
# objects), with live progress in a terminal. It runs on the project's pinned Node 24 (scripts/runtime.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/runtime.sh
npm run --silent build
eval "$(bash scripts/stack.sh up)"
export REKEY_LOG_LEVEL=warn
export REKEY_REPORT_TO="${REKEY_REPORT_TO:-${REKEY_STACK_DIR:-$PWD/.stack}/demo-reports}"
rekey() { node bin/rekey.js "$@"; }
rekey doctor
echo "seeding a bucket with S3 Encryption Client objects under alias/rekey-demo-old ..."
bucket="$(node --import tsx scripts/seed/demo-seed.ts)"
echo "bucket: $bucket"
echo
echo "== rekey: re-encrypt the media/ objects under fresh data keys from alias/rekey-demo-new, as V3"
rekey run --bucket "$bucket" --prefix media/ --mode rekey --target-key alias/rekey-demo-new --target-format v3 --name "demo rekey" || true
echo
echo "== rewrap: move every other data key to alias/rekey-demo-new (KMS ReEncrypt; bodies are not read)"
rekey run --bucket "$bucket" --mode rewrap --target-key alias/rekey-demo-new --priority incident --name "demo rewrap" || true
echo
cat <<EOT
Where to look next (with: eval "\$(npm run --silent stack -- env)"):
  node bin/rekey.js status                      every campaign, outcomes by reason
  node bin/rekey.js report <id> --format csv    one row per object
  node bin/rekey.js worker --metrics-port 9464  a worker Prometheus scrapes (${REKEY_PROMETHEUS_URL})
  docker compose up --scale worker=3            the same with Grafana, on a machine with Docker
EOT
