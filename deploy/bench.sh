#!/usr/bin/env bash
# The bridge's end-to-end benchmark (README): builds blitline-bridge, blitline-simulator and
# bridge-bench in release mode and runs them against AMQP_URL, or a throwaway local node when
# AMQP_URL is unset.
#
#   deploy/bench.sh [--cluster] [--count N] [--prefetch N] [--queue-type quorum|classic]
#                   [--postback-connections N] [--fresh-postback-connections] [--bridge-only]
#   deploy/bench.sh --backlog N          a restart onto N outcomes in the stream, deadlines due
#   deploy/bench.sh --soak SECONDS [--rate R]   steady load, the bridge's memory every 30 s
#
# --cluster runs against a throwaway three-node cluster (deploy/rabbitmq-cluster.sh) instead of one
# node. The other arguments go to bridge-bench (--count 20000, --prefetch 1024, --queue-type quorum,
# --postback-connections 32 by default; the bridge's own defaults are --prefetch 64, and Blitline
# posts back over many connections: --prefetch 64 --postback-connections 256, or
# --fresh-postback-connections for one connection per postback). After the bridge's run, the same
# requests are relayed by the AMQP module alone, to set the broker's CPU per job beside a plain
# relay's at the bridge's own pace; --bridge-only skips that (A/B runs of the bridge).
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=0
arguments=()
for argument in "$@"; do
    if [ "$argument" = --cluster ]; then cluster=1; else arguments+=("$argument"); fi
done

if [ "$cluster" = 1 ] && [ -z "${CLUSTER_DIR:-}" ]; then
    deploy/install-deps.sh
    CLUSTER_DIR=$(mktemp -d /tmp/blitline-bridge-bench-cluster.XXXXXX)
    export CLUSTER_DIR
    chmod 755 "$CLUSTER_DIR"
    trap 'deploy/rabbitmq-cluster.sh stop || true; rm -rf "$CLUSTER_DIR"' EXIT
    deploy/rabbitmq-cluster.sh start
    AMQP_URL=$(deploy/rabbitmq-cluster.sh url)
    export AMQP_URL
elif [ -z "${AMQP_URL:-}" ] && [ -z "${BROKER_URL:-}" ]; then
    exec deploy/with-broker.sh "$0" "$@"
fi
deploy/install-deps.sh
# Linked as the Dockerfile and the systemd unit link them (--static-swift-stdlib): what users run.
# Measured here, calls into a static Swift runtime cost the bridge about 8 % less CPU per job.
for product in blitline-bridge blitline-simulator bridge-bench; do
    swift build -c release --static-swift-stdlib --product "$product"
done
bin=$(swift build -c release --show-bin-path)
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(. /etc/os-release; echo "$PRETTY_NAME")"
"$bin/bridge-bench" --url "${AMQP_URL:-${BROKER_URL:-}}" --bin "$bin" "${arguments[@]}"
