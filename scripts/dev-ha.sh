#!/usr/bin/env bash
# DCloud with high availability on one machine, to try it: a three-node nats-server
# cluster (JetStream, sync_interval: always) and three DCloud servers sharing one R3
# log on loopback (one leads, two are standbys), plus a simulated fleet of 8 nodes
# that knows all three servers.
#
#   bash scripts/dev-ha.sh            # runs until Ctrl-C; prints the URLs and the token
#   bash scripts/dev-ha.sh --smoke    # starts it all, deploys, SIGKILLs the leader,
#                                     # checks a standby took over, and stops (exit 0)
#
# Needs nats-server 2.12.1+ (`sudo bash scripts/install-nats-server.sh`) and a built
# dcloud (`cargo build`; DCLOUD_BIN overrides target/debug/dcloud). Everything lives in
# a temporary directory (DIR, printed) and stops with the script.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=false
[ "${1:-}" = "--smoke" ] && smoke=true
bin="${DCLOUD_BIN:-${CARGO_TARGET_DIR:-target}/debug/dcloud}"
[ -x "$bin" ] || { echo "dev-ha: $bin not found: run cargo build (or set DCLOUD_BIN)" >&2; exit 1; }
nats="${DCLOUD_NATS_SERVER:-nats-server}"
command -v "$nats" >/dev/null || { echo "dev-ha: nats-server not found: sudo bash scripts/install-nats-server.sh" >&2; exit 1; }

dir="$(mktemp -d /tmp/dcloud-ha.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# Loopback ports: 4301-4303 clients, 6301-6303 routes, 7301-7303 DCloud.
routes="nats-route://127.0.0.1:6301,nats-route://127.0.0.1:6302,nats-route://127.0.0.1:6303"
for i in 1 2 3; do
  mkdir -p "$dir/nats$i"
  cat >"$dir/nats$i.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:430$i
cluster { name: dcloud-ha, listen: 127.0.0.1:630$i, routes: [$routes] }
jetstream { store_dir: "$dir/nats$i", sync_interval: always }
EOF
  "$nats" -c "$dir/nats$i.conf" >"$dir/nats$i.log" 2>&1 &
  pids+=($!)
done
log="nats://127.0.0.1:4301,nats://127.0.0.1:4302,nats://127.0.0.1:4303"

declare -A server_pid
start_server() {
  local i=$1
  DCLOUD_LOG=info "$bin" server --data "$dir/dcloud$i" --listen "127.0.0.1:730$i" \
    --log "$log" --log-replicas 3 >>"$dir/dcloud$i.log" 2>&1 &
  server_pid[$i]=$!
  pids+=($!)
}
ready() { curl -fsS "http://127.0.0.1:730$1/readyz" 2>/dev/null || true; }
leader() {
  for i in 1 2 3; do
    case "$(ready "$i")" in "ready (leader)"*) echo "$i"; return 0 ;; esac
  done
  return 1
}
wait_for() { # what, seconds, command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "dev-ha: $what did not happen in ${secs}s; logs in $dir" >&2
  tail -n 20 "$dir"/*.log >&2
  exit 1
}

# Servers start as standbys; the first to take the lease leads (it retries while the
# new cluster elects its JetStream leaders).
for i in 1 2 3; do start_server "$i"; done
wait_for "a leader" 60 leader
first=$(leader)
token=""
wait_for "the admin token" 10 test -s "$dir/dcloud$first/admin.token"
token=$(cat "$dir/dcloud$first/admin.token")
servers="http://127.0.0.1:7301,http://127.0.0.1:7302,http://127.0.0.1:7303"

cat >"$dir/setup.json" <<'EOF'
{"os": "busybox", "base-image": "dcloud-test/busybox:latest", "init-steps": ["true"], "specifications": {}}
EOF
cat >"$dir/env.json" <<'EOF'
{"env-name": "sim-job", "version": "1", "os": "busybox", "languages": [],
 "resources": {"ram": "256M", "cpu": "0.5", "gpu": "0", "storage": 1}}
EOF
dc() { "$bin" --server "$servers" --token "$token" "$@"; }
# The standbys know the new token once they have followed the log that far.
for i in 1 2 3; do
  wait_for "server $i to know the token" 10 "$bin" --server "http://127.0.0.1:730$i" --token "$token" me
done
dc apply -f "$dir/setup.json" >/dev/null
dc apply -f "$dir/env.json" >/dev/null
DCLOUD_LOG=warn "$bin" --server "$servers" --token "$token" agent --driver sim --sim-nodes 8 \
  >"$dir/agent.log" 2>&1 &
pids+=($!)

echo "dcloud HA on loopback (data and logs in $dir)"
for i in 1 2 3; do echo "  http://127.0.0.1:730$i  $(ready "$i")"; done
echo "  admin token: $token"
echo "  try: dcloud --server $servers --token \$TOKEN deploy sim-job --watch"

if ! $smoke; then
  echo "Ctrl-C stops everything."
  wait
  exit 0
fi

dc deploy sim-job --watch >/dev/null
echo "smoke: deployed; killing the leader (server $first)"
kill -9 "${server_pid[$first]}"
started=$(date +%s%N)
wait_for "a new leader" 30 leader
took=$(( ($(date +%s%N) - started) / 1000000 ))
echo "smoke: server $(leader) leads after ${took} ms"
dc deploy sim-job --watch >/dev/null
echo "smoke: deployed through the new leader; the chain:"
dc audit verify
