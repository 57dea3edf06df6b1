#!/usr/bin/env bash
# The test command (README): installs what is missing, starts a throwaway RabbitMQ node of the
# project's own (its own name, ports and data folder; see deploy/rabbitmq-node.sh), runs the whole
# test suite against it, stops the node even when tests fail, and exits with the tests' status.
#
# First README's quick start, run as written by deploy/test-quickstart.sh (its own node and ports,
# not this one); then three passes:
#   1. everything but the fault tests, in parallel;
#   2. suites named …FaultTests (they stop, kill or freeze the broker or raise its memory alarm),
#      one test at a time;
#   3. suites named …ClusterFaultTests, against a three-node cluster (deploy/rabbitmq-cluster.sh)
#      started once for them and stopped after.
# Extra arguments go to each pass of `swift test` (e.g. --filter AMQPTests); each pass still runs
# only its own suites (they are chosen by --skip patterns, which add up, where --filter options
# would be OR-ed). With arguments, the second pass runs only if they name "Fault" and the third
# only if they name "Cluster", and the quick start runs only if they name "QuickStart".
# BLITLINE_SKIP_CLUSTER=1 leaves the third pass out.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${BROKER_URL:-}" ]; then
    # The test node also listens for TLS, with a certificate of its own CA (BrokerTLSTests).
    export BROKER_TLS_PORT=${BROKER_TLS_PORT:-5681}
    exec deploy/with-broker.sh "$0" "$@"
fi

swift build --build-tests
swift build --product blitline-bridge
export AMQP_TEST_URL="$BROKER_URL" AMQP_TEST_BROKER="$BROKER_CONTROL"
export AMQP_TEST_TLS_URL="${BROKER_TLS_URL:-}" AMQP_TEST_TLS_CA="${BROKER_TLS_CA:-}"
export BLITLINE_BRIDGE_BIN="$(swift build --show-bin-path)/blitline-bridge"
status=0
# Before any `swift test`: the quick start runs `swift build`, which would wait for swift test's
# lock on .build; everything is built by now, so its build does nothing.
if [ $# -eq 0 ] || [[ "$*" == *QuickStart* ]]; then
    deploy/test-quickstart.sh || status=$?
fi
swift test --skip-build --skip 'FaultTests' "$@" || status=$?
if [ $# -eq 0 ] || [[ "$*" == *Fault* ]]; then
    swift test --skip-build --no-parallel --skip '^(?!.*FaultTests)' --skip 'ClusterFaultTests' "$@" || status=$?
fi

if [ "${BLITLINE_SKIP_CLUSTER:-}" != 1 ] && { [ $# -eq 0 ] || [[ "$*" == *Cluster* ]]; }; then
    CLUSTER_DIR=$(mktemp -d /tmp/blitline-bridge-cluster.XXXXXX)
    export CLUSTER_DIR
    chmod 755 "$CLUSTER_DIR"
    stop_cluster() {
        deploy/rabbitmq-cluster.sh stop || true
        rm -rf "$CLUSTER_DIR"
    }
    trap stop_cluster EXIT
    if deploy/rabbitmq-cluster.sh start; then
        AMQP_TEST_CLUSTER_URLS=$(deploy/rabbitmq-cluster.sh url) AMQP_TEST_CLUSTER="$PWD/deploy/rabbitmq-cluster.sh" \
            swift test --skip-build --no-parallel --skip '^(?!.*ClusterFaultTests)' "$@" || status=$?
    else
        echo "the test cluster did not start" >&2
        status=1
    fi
fi
exit $status
