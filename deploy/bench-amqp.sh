#!/usr/bin/env bash
# The AMQP module's benchmark (README): builds amqp-bench and its C yardstick in release mode and
# runs them against AMQP_URL, or against a throwaway local node when AMQP_URL is unset.
# Arguments go to amqp-bench (--count, --size, --window, --prefetch, --rounds).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${AMQP_URL:-}" ] && [ -z "${BROKER_URL:-}" ]; then
    # A node of its own, to run beside the tests' and the demo's (README, "The two commands").
    export BROKER_NODE=${BROKER_NODE:-blitline-bridge-bench-amqp} BROKER_PORT=${BROKER_PORT:-5687} \
        BROKER_DIST_PORT=${BROKER_DIST_PORT:-25687} BROKER_EPMD_PORT=${BROKER_EPMD_PORT:-4387}
    exec deploy/with-broker.sh "$0" "$@"
fi
deploy/install-deps.sh
swift build -c release --product amqp-bench-c
swift build -c release --product amqp-bench
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(. /etc/os-release; echo "$PRETTY_NAME")"
exec .build/release/amqp-bench --url "${AMQP_URL:-$BROKER_URL}" "$@"
