#!/usr/bin/env bash
# The demo: bring the local stack up, check it, seed a bucket with S3 Encryption Client objects and
# rotate them with a real campaign, watching it live.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
npm run --silent build
eval "$(bash scripts/stack.sh up)"
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
node bin/rekey.js doctor
