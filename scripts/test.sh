#!/usr/bin/env bash
# The whole test suite: type-check and build, bring the local stack up (installing what is missing),
# then run every test file with node's test runner. Pass test files to run only those.
# REKEY_LONG_TESTS=1 adds the long suites (multi-GiB streams, large campaigns).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
npm run --silent build
eval "$(bash scripts/stack.sh up)"
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
# Campaign rows go to a folder of the stack unless the caller names a place (README: --report-to).
export REKEY_REPORT_TO="${REKEY_REPORT_TO:-${REKEY_STACK_DIR:-$PWD/.stack}/test-reports}"
if [ $# -gt 0 ]; then files=("$@"); else mapfile -t files < <(find test -name '*.test.ts' | sort); fi
exec node --import tsx --test --test-concurrency="${REKEY_TEST_CONCURRENCY:-2}" "${files[@]}"
