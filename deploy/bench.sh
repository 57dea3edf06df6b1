#!/usr/bin/env bash
# The bridge's end-to-end benchmark (README): builds blitline-bridge, blitline-simulator and
# bridge-bench in release mode and runs them against AMQP_URL, or a throwaway local node when
# AMQP_URL is unset. Arguments go to bridge-bench (--count N, default 20000; --prefetch N, default 1024).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${AMQP_URL:-}" ] && [ -z "${BROKER_URL:-}" ]; then
    exec deploy/with-broker.sh "$0" "$@"
fi
deploy/install-deps.sh
for product in blitline-bridge blitline-simulator bridge-bench; do
    swift build -c release --product "$product"
done
bin=$(swift build -c release --show-bin-path)
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(. /etc/os-release; echo "$PRETTY_NAME")"
exec "$bin/bridge-bench" --url "${AMQP_URL:-$BROKER_URL}" --bin "$bin" "$@"
