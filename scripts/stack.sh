#!/usr/bin/env bash
# The local stack rekey runs and tests against: Redis, moto (S3 + KMS), Prometheus, versitygw, a second
# real S3 implementation that enforces the conditions moto ignores (CopySourceIfMatch, If-Match on
# CompleteMultipartUpload), and local-kms, a second real KMS that enforces key states (disabled keys).
# Everything binds to 127.0.0.1 except local-kms, which has no bind-address setting and listens on all
# interfaces; tests talk to it on 127.0.0.1 only.
#   scripts/stack.sh install   install what is missing (apt-get, a project-local Python venv, the Java driver)
#   scripts/stack.sh up        install, start what is not running, wait until healthy, print the env
#   scripts/stack.sh down      stop what this script started (by PID)
#   scripts/stack.sh status    health of each part
#   scripts/stack.sh env       the environment to export, e.g. eval "$(scripts/stack.sh env)"
# Ports and the state folder are configurable: REKEY_REDIS_PORT, REKEY_MOTO_PORT, REKEY_PROMETHEUS_PORT,
# REKEY_VERSITYGW_PORT, REKEY_LOCAL_KMS_PORT, REKEY_REDIS_CLUSTER_PORTS (comma-separated, the cluster
# bus of each is its port + 10000), REKEY_STACK_DIR. Running `up` twice is harmless: a part this stack
# started (its PID file, its port) is left as it is; a port held by anything else is named, not used.
# Beside the single Redis, a 3-master Redis Cluster (no replicas) stands in for ElastiCache/MemoryDB in
# cluster mode; its nodes fsync every write (appendfsync always), so a killed and restarted master
# comes back with every write it acknowledged, as MemoryDB's durable log promises.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${REKEY_STACK_DIR:-$ROOT/.stack}"
REDIS_PORT="${REKEY_REDIS_PORT:-6390}"
MOTO_PORT="${REKEY_MOTO_PORT:-5055}"
PROMETHEUS_PORT="${REKEY_PROMETHEUS_PORT:-9099}"
VERSITYGW_PORT="${REKEY_VERSITYGW_PORT:-7070}"
VERSITYGW_VERSION=v1.8.0
LOCAL_KMS_PORT="${REKEY_LOCAL_KMS_PORT:-4599}"
IFS=, read -r -a CLUSTER_PORTS <<<"${REKEY_REDIS_CLUSTER_PORTS:-6391,6392,6393}"
# local-kms tags no Go-style versions; this pseudo-version is its commit of 2026-02-28.
LOCAL_KMS_VERSION=v0.0.0-20260228092603-2a5e92d09ab6
HOST=127.0.0.1
VENV="$STACK_DIR/venv"

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $* (install it yourself, or run as root)"; fi
}

apt_install() {
  local missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install them with your package manager"
  log "apt-get install ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_python() {
  local req="$ROOT/scripts/stack-requirements.txt" stamp="$VENV/.requirements.sha256"
  local want; want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ -x "$VENV/bin/moto_server" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  command -v python3 >/dev/null || apt_install python3:python3
  python3 -m venv "$VENV" 2>/dev/null || { apt_install python3:python3-venv; python3 -m venv "$VENV"; }
  log "pip install -r scripts/stack-requirements.txt into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
}

# go_install NAME MODULE VERSION: builds a pinned Go tool into the stack's bin folder once.
go_install() {
  local name="$1" module="$2" version="$3" bin="$STACK_DIR/bin/$1"
  if [ -x "$bin" ] && [ "$(cat "$bin.version" 2>/dev/null)" = "$version" ]; then return 0; fi
  command -v go >/dev/null || die "$name is built with Go 1.24 or newer: install Go (https://go.dev/dl) and retry"
  log "go install $module@$version"
  GOBIN="$STACK_DIR/bin" go install "$module@$version"
  echo "$version" >"$bin.version"
}

# install_java: the Java interop driver (test/interop/java/README.md), one jar per client family, built
# into $STACK_DIR/java when its sources changed. Maven tries the local repository first, so once the
# pinned artifacts are there a rebuild needs no network.
install_java() {
  local src="$ROOT/test/interop/java" out="$STACK_DIR/java"
  local want; want="$(cd "$src" && find . -type f \( -name '*.java' -o -name pom.xml -o -path '*/META-INF/services/*' \) \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
  if [ -f "$out/s3ec4.jar" ] && [ "$(cat "$out/.inputs.sha256" 2>/dev/null)" = "$want" ]; then return 0; fi
  apt_install java:openjdk-17-jdk-headless mvn:maven
  log "mvn package test/interop/java into $out"
  mkdir -p "$out"
  rm -f "$out"/*.jar  # the shade plugin would keep a stale jar beside the new one as original-*.jar
  local mvn=(mvn -B -q -f "$src/pom.xml" -Drekey.java.out="$out" package)
  "${mvn[@]}" -o >/dev/null 2>&1 || "${mvn[@]}" || die "the Java interop driver did not build (mvn ${mvn[*]:1})"
  echo "$want" >"$out/.inputs.sha256"
}

cmd_install() {
  mkdir -p "$STACK_DIR"
  apt_install redis-server:redis-server redis-cli:redis-tools prometheus:prometheus promtool:prometheus curl:curl ss:iproute2
  install_python
  go_install versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION"
  go_install local-kms github.com/nsmithuk/local-kms "$LOCAL_KMS_VERSION"
  install_java
}

alive() { local f="$STACK_DIR/$1.pid"; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

healthy() {
  case "$1" in
    redis) redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG ;;
    redis-cluster-*) redis-cli -h "$HOST" -p "${1#redis-cluster-}" ping 2>/dev/null | grep -q PONG ;;
    moto) curl -fsS -m 10 -o /dev/null "http://$HOST:$MOTO_PORT/" 2>/dev/null ;;
    prometheus) curl -fsS -m 10 -o /dev/null "http://$HOST:$PROMETHEUS_PORT/-/ready" 2>/dev/null ;;
    versitygw) [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$HOST:$VERSITYGW_PORT/" 2>/dev/null)" = 403 ] ;;
    local-kms) curl -fsS -m 10 -o /dev/null -X POST -H 'X-Amz-Target: TrentService.ListKeys' \
      -H 'Content-Type: application/x-amz-json-1.1' -d '{}' "http://$HOST:$LOCAL_KMS_PORT/" 2>/dev/null ;;
  esac
}

wait_healthy() {
  local name="$1" i
  for i in $(seq 1 150); do
    healthy "$name" && return 0
    alive "$name" || die "$name exited while starting; see $STACK_DIR/$name.log"
    sleep 0.2
  done
  die "$name is not healthy after 30 s; see $STACK_DIR/$name.log"
}

port_of() {
  case "$1" in
    redis) echo "$REDIS_PORT" ;; moto) echo "$MOTO_PORT" ;; versitygw) echo "$VERSITYGW_PORT" ;;
    local-kms) echo "$LOCAL_KMS_PORT" ;; prometheus) echo "$PROMETHEUS_PORT" ;;
    redis-cluster-*) echo "${1#redis-cluster-}" ;;
  esac
}

port_var() {
  case "$1" in
    redis) echo REKEY_REDIS_PORT ;; moto) echo REKEY_MOTO_PORT ;; versitygw) echo REKEY_VERSITYGW_PORT ;;
    local-kms) echo REKEY_LOCAL_KMS_PORT ;; prometheus) echo REKEY_PROMETHEUS_PORT ;;
    redis-cluster-*) echo REKEY_REDIS_CLUSTER_PORTS ;;
  esac
}

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# Who holds a port, as `name (pid N)`; empty when ss may not see the process (another user's).
listener() { ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -1; }

# This stack's own part: the PID file in this stack's folder names a live process, and that process
# holds the part's port. Anything else on the port (a second checkout's stack, a system service) is
# never taken for it.
own() { alive "$1" && ss -Hltnp "sport = :$(port_of "$1")" 2>/dev/null | grep -q "pid=$(cat "$STACK_DIR/$1.pid"),"; }

spawn() {
  local name="$1" port; shift
  port="$(port_of "$name")"
  if own "$name"; then wait_healthy "$name"; return 0; fi
  if listening "$port"; then
    local holder; holder="$(listener "$port")"
    die "$name: port $port is taken by ${holder:-a process of another user}, not by this stack ($STACK_DIR/$name.pid): stop it, or set $(port_var "$name") to a free port"
  fi
  if alive "$name"; then wait_healthy "$name"; return 0; fi
  setsid "$@" >"$STACK_DIR/$name.log" 2>&1 < /dev/null &
  echo $! >"$STACK_DIR/$name.pid"
  wait_healthy "$name"
  log "$name up (pid $(cat "$STACK_DIR/$name.pid"))"
}

write_prometheus_config() {
  # Workers register themselves as file_sd targets, so tests and the demo add scrape targets at run time.
  mkdir -p "$STACK_DIR/prometheus/targets" "$STACK_DIR/prometheus/data"
  cat >"$STACK_DIR/prometheus/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - '$ROOT/grafana/alerts.yml'
scrape_configs:
  - job_name: rekey
    file_sd_configs:
      - files: ['$STACK_DIR/prometheus/targets/*.json']
        refresh_interval: 1s
EOF
}

cluster_nodes() { local p; for p in "${CLUSTER_PORTS[@]}"; do printf '%s:%s ' "$HOST" "$p"; done; }

cluster_ok() {
  local p
  for p in "${CLUSTER_PORTS[@]}"; do
    redis-cli -h "$HOST" -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
}

# Starts the cluster's nodes; the first `up` joins them into one cluster, later ones find it in nodes.conf.
# Slots stay served while another master is down (cluster-require-full-coverage no, as on ElastiCache).
cluster_up() {
  local p dir i
  [ ${#CLUSTER_PORTS[@]} -eq 3 ] || die "REKEY_REDIS_CLUSTER_PORTS must name 3 ports, e.g. 6391,6392,6393"
  for p in "${CLUSTER_PORTS[@]}"; do
    dir="$STACK_DIR/redis-cluster/$p"
    mkdir -p "$dir"
    spawn "redis-cluster-$p" redis-server --bind "$HOST" --port "$p" --dir "$dir" --protected-mode yes \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
      --cluster-require-full-coverage no --appendonly yes --appendfsync always --save '' \
      --maxmemory-policy noeviction
  done
  if ! redis-cli -h "$HOST" -p "${CLUSTER_PORTS[0]}" cluster info 2>/dev/null | grep -q '^cluster_slots_assigned:16384'; then
    log "redis-cli --cluster create $(cluster_nodes)"
    # shellcheck disable=SC2046
    redis-cli --cluster create $(cluster_nodes) --cluster-replicas 0 --cluster-yes >"$STACK_DIR/redis-cluster/create.log" 2>&1 \
      || die "redis-cli --cluster create failed; see $STACK_DIR/redis-cluster/create.log"
  fi
  for i in $(seq 1 150); do cluster_ok && return 0; sleep 0.2; done
  die "the Redis Cluster on ports ${CLUSTER_PORTS[*]} is not ok after 30 s; see $STACK_DIR/redis-cluster-*.log"
}

start_stack() {
  cmd_install
  spawn redis redis-server --bind "$HOST" --port "$REDIS_PORT" --save '' --appendonly no \
    --maxmemory-policy noeviction --dir "$STACK_DIR" --protected-mode yes
  cluster_up
  spawn moto "$VENV/bin/moto_server" -H "$HOST" -p "$MOTO_PORT"
  mkdir -p "$STACK_DIR/versitygw/data" "$STACK_DIR/versitygw/versions"
  spawn versitygw "$STACK_DIR/bin/versitygw" --port "$HOST:$VERSITYGW_PORT" --access test --secret test \
    posix --versioning-dir "$STACK_DIR/versitygw/versions" "$STACK_DIR/versitygw/data"
  mkdir -p "$STACK_DIR/local-kms"
  spawn local-kms env PORT="$LOCAL_KMS_PORT" KMS_REGION=us-east-1 KMS_ACCOUNT_ID=111122223333 \
    KMS_DATA_PATH="$STACK_DIR/local-kms" KMS_SEED_PATH="$STACK_DIR/local-kms/seed.yaml" "$STACK_DIR/bin/local-kms"
  write_prometheus_config
  # A Prometheus already up re-reads the config and the alerting rules it names.
  if healthy prometheus; then curl -fsS -m 10 -X POST -o /dev/null "http://$HOST:$PROMETHEUS_PORT/-/reload" || log "prometheus did not reload its config"; fi
  spawn prometheus prometheus --config.file="$STACK_DIR/prometheus/prometheus.yml" \
    --storage.tsdb.path="$STACK_DIR/prometheus/data" --web.listen-address="$HOST:$PROMETHEUS_PORT" \
    --web.enable-lifecycle
}

# Callers eval what `up` prints, so only the environment goes to stdout: whatever the installers print
# (Maven writes colour codes to stdout even with -q) goes to stderr with the logs. A redirection of the
# whole step, not a saved descriptor: servers started here would inherit one and hold the caller's
# command substitution open forever.
cmd_up() {
  start_stack >&2
  cmd_env
}

cmd_down() {
  local name pid
  for name in prometheus local-kms versitygw moto redis "${CLUSTER_PORTS[@]/#/redis-cluster-}"; do
    alive "$name" || { rm -f "$STACK_DIR/$name.pid"; continue; }
    pid="$(cat "$STACK_DIR/$name.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    rm -f "$STACK_DIR/$name.pid"
    log "$name stopped"
  done
}

cmd_status() {
  local name rc=0
  for name in redis moto versitygw local-kms prometheus; do
    if healthy "$name"; then echo "$name: healthy"; else echo "$name: down"; rc=1; fi
  done
  if cluster_ok; then echo "redis-cluster: healthy"; else echo "redis-cluster: down"; rc=1; fi
  return $rc
}

cmd_env() {
  cat <<EOF
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_ENDPOINT_URL_S3=http://$HOST:$MOTO_PORT
export AWS_ENDPOINT_URL_KMS=http://$HOST:$MOTO_PORT
export REDIS_URL=redis://$HOST:$REDIS_PORT
export REKEY_REDIS_CLUSTER_URL=redis://$HOST:${CLUSTER_PORTS[0]}
export REKEY_REDIS_CLUSTER_PORTS=$(IFS=,; echo "${CLUSTER_PORTS[*]}")
export REKEY_STRICT_S3_ENDPOINT=http://$HOST:$VERSITYGW_PORT
export REKEY_LOCAL_KMS_ENDPOINT=http://$HOST:$LOCAL_KMS_PORT
export REKEY_PROMETHEUS_URL=http://$HOST:$PROMETHEUS_PORT
export REKEY_PROMETHEUS_TARGETS_DIR=$STACK_DIR/prometheus/targets
export REKEY_PYTHON=$VENV/bin/python
export REKEY_JAVA_DRIVER_DIR=$STACK_DIR/java
EOF
}

case "${1:-}" in
  install) cmd_install ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: scripts/stack.sh install|up|down|status|env" >&2; exit 2 ;;
esac
