# Sourced by the scripts that run rekey's code (test.sh, demo.sh, bench.sh): the Node.js runtime they use
# is the one `npm ci` installs from the npm registry at a pinned version (package.json devDependencies:
# `node` is Node 24 LTS, `node-22` the lowest supported major, on which CI also runs the unit tests),
# never the system's node, whatever its version. Its folder goes first on PATH so that every `node` these
# scripts start, and every child a test spawns through process.execPath, is that runtime.
# REKEY_RUNTIME=node-22 selects the second one.
REKEY_RUNTIME="${REKEY_RUNTIME:-node}"
case "$REKEY_RUNTIME" in
  node | node-22) ;;
  *) printf 'rekey: REKEY_RUNTIME must be node (Node 24) or node-22, got %s\n' "$REKEY_RUNTIME" >&2; exit 2 ;;
esac
REKEY_NODE_BIN="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/node_modules/$REKEY_RUNTIME/bin"
# Precondition: the pinned runtime is installed and runs here: it is the linux-x64 build (npm installs it
# on any platform), as the stack is Linux-only too.
if ! "$REKEY_NODE_BIN/node" --version >/dev/null 2>&1; then
  printf 'rekey: the pinned Node.js runtime %s/node is missing or does not run here: run `npm ci` on Linux x64, or run rekey with your own Node.js 24\n' "$REKEY_NODE_BIN" >&2
  exit 1
fi
export PATH="$REKEY_NODE_BIN:$PATH"
