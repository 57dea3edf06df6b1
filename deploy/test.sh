#!/usr/bin/env bash
# The test command (README): installs what is missing, starts a throwaway RabbitMQ node of the
# project's own (its own name, ports and data folder; see deploy/rabbitmq-node.sh), runs the whole
# test suite against it, stops the node even when tests fail, and exits with the tests' status.
#
# Suites named …FaultTests stop, kill or freeze the broker or raise its memory alarm: they run in
# a second pass, one test at a time, after everything else has run in parallel. Extra arguments go
# to both passes of `swift test` (e.g. --filter AMQPTests).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${BROKER_URL:-}" ]; then
    exec deploy/with-broker.sh "$0" "$@"
fi

swift build --build-tests
swift build --product blitline-bridge
export AMQP_TEST_URL="$BROKER_URL" AMQP_TEST_BROKER="$BROKER_CONTROL"
export BLITLINE_BRIDGE_BIN="$(swift build --show-bin-path)/blitline-bridge"
status=0
swift test --skip-build --skip 'FaultTests' "$@" || status=$?
swift test --skip-build --no-parallel --filter 'FaultTests' "$@" || status=$?
exit $status
