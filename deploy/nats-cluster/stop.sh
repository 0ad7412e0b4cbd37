#!/usr/bin/env bash
# Stops the cluster that run.sh started: SIGTERM to every node recorded in
# DIR/nN.pid, up to 10 s for them to exit, then SIGKILL.
#
#   deploy/nats-cluster/stop.sh [DIR]    (DIR defaults to ./.nats-cluster)
#
# The state in DIR is kept; delete DIR to start from scratch.
set -euo pipefail

state_dir="${1:-./.nats-cluster}"

pids=()
for n in 1 2 3; do
  pid_file="$state_dir/n$n.pid"
  [ -f "$pid_file" ] || continue
  pid="$(cat "$pid_file")"
  rm -f "$pid_file"
  # Only signal the process if it is still the nats-server we started.
  if [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = nats-server ]; then
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  fi
done

deadline=$((SECONDS + 10))
for pid in "${pids[@]}"; do
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "warning: nats-server $pid ignored SIGTERM for 10 s, killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
done

echo "nats cluster stopped (${#pids[@]} nodes)"
