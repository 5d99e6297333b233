#!/usr/bin/env bash
# The unit tests: no build and no stack, so they run in seconds on a fresh checkout after `npm ci`.
# Everything under test/unit stays runnable this way; a test that needs Redis, moto, versitygw,
# local-kms or Prometheus belongs under test/integration or test/e2e. Pass test files to run only those.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/runtime.sh
if [ $# -gt 0 ]; then files=("$@"); else mapfile -t files < <(find test/unit -name '*.test.ts' | sort); fi
exec node --import tsx --test --test-concurrency="${REKEY_TEST_CONCURRENCY:-2}" "${files[@]}"
