#!/usr/bin/env bash
# A throwaway RabbitMQ node of the project's own, for tests, benchmarks and the demo: its own node
# name, AMQP port, distribution port, epmd port, Erlang cookie and data folder, so that it never
# touches another broker on the machine.
#
#   deploy/rabbitmq-node.sh start        start the node and wait until it serves AMQP
#   deploy/rabbitmq-node.sh stop         stop it (and its epmd)
#   deploy/rabbitmq-node.sh restart      stop the node and start it again (connections drop)
#   deploy/rabbitmq-node.sh kill         kill -9 the node, as a crash would, then start it again
#   deploy/rabbitmq-node.sh ctl ARGS…    run rabbitmqctl against it
#   deploy/rabbitmq-node.sh url          print its AMQP URL
#   deploy/rabbitmq-node.sh tls-url      print its AMQPS URL (with BROKER_TLS_PORT)
#   deploy/rabbitmq-node.sh tls-ca       print the path of the CA that signed its certificate
#
# Settings (environment): BROKER_DIR (required: a folder the rabbitmq user can write; created
# with mktemp -d by the callers), BROKER_NODE (blitline-bridge-test), BROKER_PORT (5682),
# BROKER_DIST_PORT (25682), BROKER_EPMD_PORT (4382), BROKER_PLUGINS (none: a comma-separated list of
# plugins to enable), BROKER_MANAGEMENT_PORT (none: set, it enables the management UI and its HTTP
# API on 127.0.0.1 at that port; the guest user logs in from localhost only, which this is),
# BROKER_TLS_PORT (none: set, it adds a TLS listener on 127.0.0.1 at that port, with a certificate
# for localhost and 127.0.0.1 signed by a CA of its own, made with openssl in BROKER_DIR/tls).
set -euo pipefail

dir=${BROKER_DIR:?BROKER_DIR must name the node\'s data folder}
node="${BROKER_NODE:-blitline-bridge-test}@localhost"
port=${BROKER_PORT:-5682}
dist_port=${BROKER_DIST_PORT:-25682}
epmd_port=${BROKER_EPMD_PORT:-4382}
management_port=${BROKER_MANAGEMENT_PORT:-}
tls_port=${BROKER_TLS_PORT:-}
plugins=${BROKER_PLUGINS:-}
if [ -n "$management_port" ]; then plugins="${plugins:+$plugins,}rabbitmq_management"; fi
bin=/usr/lib/rabbitmq/bin

as_rabbitmq() {
    local runas=()
    if [ "$(id -u)" = 0 ]; then runas=(runuser -u rabbitmq --); fi
    "${runas[@]}" env HOME="$dir" ERL_EPMD_PORT="$epmd_port" \
        RABBITMQ_NODENAME="$node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$port" \
        RABBITMQ_DIST_PORT="$dist_port" RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" "$@"
}

ctl() { as_rabbitmq "$bin/rabbitmqctl" -n "$node" "$@"; }

# A CA and a server certificate for localhost and 127.0.0.1, made once per data folder.
make_certificates() {
    local tls="$dir/tls"
    [ -f "$tls/server.pem" ] && return 0
    mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=blitline-bridge test CA" \
        -keyout "$tls/ca.key" -out "$tls/ca.pem" 2> /dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$tls/server.key" -out "$tls/server.csr" 2> /dev/null
    printf 'subjectAltName = DNS:localhost, IP:127.0.0.1\nextendedKeyUsage = serverAuth\n' > "$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
        -days 3650 -extfile "$tls/server.ext" -out "$tls/server.pem" 2> /dev/null
}

start() {
    mkdir -p "$dir/log" "$dir/mnesia"
    # Written at every start, so that this run's settings apply to a data folder kept from an earlier
    # one (the demo keeps its own).
    cat > "$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$port
log.console = false
log.file.level = warning
disk_free_limit.absolute = 50MB
CONF
    if [ -n "$management_port" ]; then
        printf 'management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %s\n' "$management_port" >> "$dir/rabbitmq.conf"
    fi
    if [ -n "$tls_port" ]; then
        make_certificates
        cat >> "$dir/rabbitmq.conf" <<CONF
listeners.ssl.default = 127.0.0.1:$tls_port
ssl_options.cacertfile = $dir/tls/ca.pem
ssl_options.certfile = $dir/tls/server.pem
ssl_options.keyfile = $dir/tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
CONF
    fi
    echo "[$plugins]." > "$dir/enabled_plugins"
    [ -f "$dir/advanced.config" ] || echo "[]." > "$dir/advanced.config"
    touch "$dir/rabbitmq-env.conf"
    if [ "$(id -u)" = 0 ]; then chown -R rabbitmq:rabbitmq "$dir"; fi
    setsid bash -c "$(declare -f as_rabbitmq); dir='$dir' node='$node' port='$port' \
        dist_port='$dist_port' epmd_port='$epmd_port' as_rabbitmq $bin/rabbitmq-server" \
        >> "$dir/log/startup.log" 2>&1 < /dev/null &
    for _ in $(seq 1 120); do
        if ctl -q await_startup --timeout 2 > /dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    echo "RabbitMQ node $node did not start; its log:" >&2
    tail -n 40 "$dir/log/startup.log" "$dir"/log/*.log >&2 || true
    return 1
}

stop() {
    local pid=
    [ -f "$dir/rabbitmq.pid" ] && pid=$(cat "$dir/rabbitmq.pid")
    ctl -q stop > /dev/null 2>&1 || true
    # rabbitmqctl stop returns before the node's process has exited, which may still write to its
    # data folder: wait for it (up to 30 s) so that callers can remove the folder. (Given the pid
    # file, rabbitmqctl would wait itself, but forever when the node was already down.)
    if [ -n "$pid" ]; then
        for _ in $(seq 1 120); do
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.25
        done
    fi
    as_rabbitmq epmd -port "$epmd_port" -kill > /dev/null 2>&1 || true
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) ctl -q stop > /dev/null 2>&1 || true; start ;;
    kill)
        kill -9 "$(cat "$dir/rabbitmq.pid")" 2>/dev/null || true
        sleep 0.5
        start ;;
    ctl) shift; ctl "$@" ;;
    url) echo "amqp://guest:guest@127.0.0.1:$port/%2F" ;;
    tls-url) echo "amqps://guest:guest@localhost:${tls_port:?BROKER_TLS_PORT is not set}/%2F" ;;
    tls-ca) echo "$dir/tls/ca.pem" ;;
    *) echo "usage: $0 start|stop|restart|kill|ctl ARGS…|url|tls-url|tls-ca" >&2; exit 2 ;;
esac
