#!/usr/bin/env bash
# The test command (README): installs what is missing, starts a throwaway RabbitMQ node of the
# project's own (deploy/rabbitmq-node.sh), runs the whole test suite against it, stops the node
# even when tests fail, and exits with the tests' status.
#
# Tests that stop, kill or freeze the broker, or raise its memory alarm, run in a second pass,
# one at a time; everything else runs in parallel first. Extra arguments go to both passes of
# `swift test` (e.g. --filter AMQPTests).
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/install-deps.sh

export BROKER_DIR=$(mktemp -d /tmp/blitline-bridge-test.XXXXXX)
chmod 755 "$BROKER_DIR"
cleanup() {
    deploy/rabbitmq-node.sh stop || true
    rm -rf "$BROKER_DIR"
}
trap cleanup EXIT

deploy/rabbitmq-node.sh start
export AMQP_TEST_URL=$(deploy/rabbitmq-node.sh url)
export AMQP_TEST_BROKER="$PWD/deploy/rabbitmq-node.sh"
echo "test broker: $AMQP_TEST_URL (data in $BROKER_DIR)"

swift build --build-tests
status=0
swift test --skip-build --skip 'FaultTests' "$@" || status=$?
swift test --skip-build --no-parallel --filter 'FaultTests' "$@" || status=$?
exit $status
