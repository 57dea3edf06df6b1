#!/usr/bin/env bash
# A throwaway three-node RabbitMQ cluster of the project's own on this one machine, for the
# cluster tests and `deploy/bench.sh --cluster`: each node with its own name, AMQP port,
# distribution port and data folder (like deploy/rabbitmq-node.sh does for one), one shared epmd
# port and Erlang cookie, joined into one cluster.
#
#   deploy/rabbitmq-cluster.sh start          start the three nodes and join them (waits until each serves AMQP)
#   deploy/rabbitmq-cluster.sh stop           stop them all (and their epmd)
#   deploy/rabbitmq-cluster.sh stop-node N    stop node N (1, 2 or 3), as a lost machine would be
#   deploy/rabbitmq-cluster.sh start-node N   start node N again; it rejoins the cluster
#   deploy/rabbitmq-cluster.sh ensure-up      start again any node that does not answer
#   deploy/rabbitmq-cluster.sh leader QUEUE   print the number of the node that leads a quorum queue (asked of the first node that answers)
#   deploy/rabbitmq-cluster.sh ctl ARGS…      run rabbitmqctl against the first node that answers
#   deploy/rabbitmq-cluster.sh url            print the AMQP URLs of the three nodes, comma-separated
#
# Settings (environment): CLUSTER_DIR (required: a folder the rabbitmq user can write),
# CLUSTER_NODE (blitline-bridge-cluster, nodes are CLUSTER_NODE-1 … -3), CLUSTER_PORT (5712: nodes
# listen on 5712, 5713, 5714), CLUSTER_DIST_PORT (25712, 25713, 25714), CLUSTER_EPMD_PORT (4412).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${CLUSTER_DIR:?CLUSTER_DIR must name the cluster\'s data folder}
name=${CLUSTER_NODE:-blitline-bridge-cluster}
port=${CLUSTER_PORT:-5712}
dist_port=${CLUSTER_DIST_PORT:-25712}
epmd_port=${CLUSTER_EPMD_PORT:-4412}
cookie=blitline-bridge-cluster-cookie

node() {
    local n=$1
    shift
    BROKER_DIR="$dir/node$n" BROKER_NODE="$name-$n" BROKER_PORT=$((port + n - 1)) \
        BROKER_DIST_PORT=$((dist_port + n - 1)) BROKER_EPMD_PORT="$epmd_port" \
        BROKER_TLS_PORT= BROKER_MANAGEMENT_PORT= deploy/rabbitmq-node.sh "$@"
}

prepare() {
    local n=$1
    mkdir -p "$dir/node$n"
    # One cookie for all: rabbitmq-node.sh makes each node's folder its HOME.
    printf '%s' "$cookie" > "$dir/node$n/.erlang.cookie"
    chmod 400 "$dir/node$n/.erlang.cookie"
    if [ "$(id -u)" = 0 ]; then chown -R rabbitmq:rabbitmq "$dir/node$n"; fi
}

start() {
    for n in 1 2 3; do prepare "$n"; done
    node 1 start
    for n in 2 3; do
        node "$n" start
        # join_cluster prints the joining node's start-up noise; keep it for when it fails.
        {
            node "$n" ctl -q stop_app && node "$n" ctl -q join_cluster "$name-1@localhost" \
                && node "$n" ctl -q start_app
        } >> "$dir/join.log" 2>&1 || { cat "$dir/join.log" >&2; return 1; }
    done
    node 1 ctl -q await_online_nodes 3 --timeout 60
}

stop_node() {
    node "$1" ctl -q stop > /dev/null 2>&1 || true
}

# rabbitmqctl against the first node that answers: a stopped node's fails at once, and its
# output is not the caller's.
ctl() {
    local n output
    for n in 1 2 3; do
        if output=$(node "$n" ctl "$@" 2>&1); then
            printf '%s\n' "$output"
            return 0
        fi
    done
    echo "no node of the cluster answered rabbitmqctl $*: $output" >&2
    return 1
}

case "${1:-}" in
    start) start ;;
    stop)
        for n in 3 2 1; do stop_node "$n"; done
        node 1 stop
        ;;
    stop-node) stop_node "${2:?which node: 1, 2 or 3}" ;;
    start-node) node "${2:?which node: 1, 2 or 3}" start ;;
    ensure-up)
        for n in 1 2 3; do
            node "$n" ctl -q status > /dev/null 2>&1 || node "$n" start
        done
        node 1 ctl -q await_online_nodes 3 --timeout 60
        ;;
    leader)
        leader=$(ctl -q list_queues name leader --no-table-headers 2>/dev/null \
            | awk -v q="${2:?which queue}" '$1 == q { print $2 }')
        echo "${leader:-}" | sed -n "s/^$name-\([123]\)@.*/\1/p"
        ;;
    ctl) shift; ctl "$@" ;;
    url)
        echo "amqp://guest:guest@127.0.0.1:$port/%2F,amqp://guest:guest@127.0.0.1:$((port + 1))/%2F,amqp://guest:guest@127.0.0.1:$((port + 2))/%2F"
        ;;
    *) echo "usage: $0 start|stop|stop-node N|start-node N|ensure-up|leader QUEUE|ctl ARGS…|url" >&2; exit 2 ;;
esac
