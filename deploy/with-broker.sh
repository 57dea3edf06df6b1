#!/usr/bin/env bash
# Runs a command beside a throwaway RabbitMQ node of the project's own (deploy/rabbitmq-node.sh),
# then stops the node, even when the command fails, and exits with the command's status.
# The command sees BROKER_URL (the node's AMQP URL), BROKER_CONTROL (the node's control script)
# and BROKER_DIR (its data folder); with BROKER_TLS_PORT, also BROKER_TLS_URL (amqps://) and
# BROKER_TLS_CA (the CA that signed the node's certificate).
#
#   deploy/with-broker.sh COMMAND [ARGS…]
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/install-deps.sh
BROKER_DIR=$(mktemp -d /tmp/blitline-bridge-broker.XXXXXX)
export BROKER_DIR
chmod 755 "$BROKER_DIR"
cleanup() {
    deploy/rabbitmq-node.sh stop || true
    rm -rf "$BROKER_DIR"
}
trap cleanup EXIT
deploy/rabbitmq-node.sh start
BROKER_URL=$(deploy/rabbitmq-node.sh url)
BROKER_CONTROL="$PWD/deploy/rabbitmq-node.sh"
export BROKER_URL BROKER_CONTROL
if [ -n "${BROKER_TLS_PORT:-}" ]; then
    BROKER_TLS_URL=$(deploy/rabbitmq-node.sh tls-url)
    BROKER_TLS_CA=$(deploy/rabbitmq-node.sh tls-ca)
    export BROKER_TLS_URL BROKER_TLS_CA
fi
echo "broker: $BROKER_URL (data in $BROKER_DIR)" >&2
status=0
"$@" || status=$?
exit $status
