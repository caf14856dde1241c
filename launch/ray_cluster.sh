#!/usr/bin/env bash
# Start or stop the Ray cluster that `archer train` joins (through RAY_ADDRESS).
#
#   bash launch/ray_cluster.sh head [--num-gpus N] [other `ray start` options]
#   bash launch/ray_cluster.sh worker HEAD_IP:PORT [--num-gpus N] [...]
#   bash launch/ray_cluster.sh stop
#
# `head` starts Ray on this node (port $ARCHER_RAY_PORT, default 6379) and prints the
# RAY_ADDRESS to export before `archer train`; run `worker` on every other node. Set
# RAY_NODE_IP when the node has several interfaces (it becomes --node-ip-address).
set -euo pipefail
cd "$(dirname "$0")/.."
RAY=${RAY:-.venv/bin/ray}
PORT=${ARCHER_RAY_PORT:-6379}
ip_args=()
if [ -n "${RAY_NODE_IP:-}" ]; then ip_args=(--node-ip-address "$RAY_NODE_IP"); fi
case "${1:-}" in
  head)
    shift
    ip=${RAY_NODE_IP:-$(hostname -I 2>/dev/null | awk '{print $1}')}
    echo "export RAY_ADDRESS=${ip:-127.0.0.1}:$PORT   # then: archer train cluster.learner_ranks=N ..."
    exec "$RAY" start --head --port "$PORT" --include-dashboard=false "${ip_args[@]}" "$@"
    ;;
  worker)
    [ $# -ge 2 ] || { echo "usage: $0 worker HEAD_IP:PORT [ray start options]" >&2; exit 2; }
    address=$2
    shift 2
    exec "$RAY" start --address "$address" "${ip_args[@]}" "$@"
    ;;
  stop)
    exec "$RAY" stop   # every Ray process on this node
    ;;
  *)
    echo "usage: $0 head|worker HEAD_IP:PORT|stop [ray start options]" >&2
    exit 2
    ;;
esac
