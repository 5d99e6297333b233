#!/usr/bin/env bash
# The whole test suite: type-check and build, bring the local stack up (installing what is missing),
# then run every test file with node's test runner on the project's pinned Node 24 (scripts/runtime.sh).
# Pass test files or folders to run only those; REKEY_RUNTIME=node-22 runs them on the pinned Node 22.
# REKEY_LONG_TESTS=1 adds the long suites (multi-GiB streams, large campaigns).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/runtime.sh
npm run --silent build
eval "$(bash scripts/stack.sh up)"
# Campaign rows go to a folder of the stack unless the caller names a place (README: --report-to).
export REKEY_REPORT_TO="${REKEY_REPORT_TO:-${REKEY_STACK_DIR:-$PWD/.stack}/test-reports}"
mapfile -t files < <(find "${@:-test}" -name '*.test.ts' | sort)
exec node --import tsx --test --test-concurrency="${REKEY_TEST_CONCURRENCY:-2}" "${files[@]}"
