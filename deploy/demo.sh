#!/usr/bin/env bash
# The demo (README): the whole product on this machine. Builds the project, starts a RabbitMQ node
# of its own unless AMQP_URL names a broker (with its management UI on port 15683, whose address it
# prints), starts blitline-simulator and blitline-bridge in postback mode, submits the sample jobs
# in deploy/demo/ (two resizes with several outputs, one with an unknown function, one invalid
# request), prints each event as it arrives and a summary, then stops what it started. With --keep
# everything stays running and it prints how to reach it.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=false
[ "${1:-}" = "--keep" ] && keep=true

deploy/install-deps.sh curl
echo "building (release)…"
# Linked as the Dockerfile, the systemd unit and deploy/bench.sh link them: what users run, and one
# release build for all of them (a build with other flags starts again from scratch).
for product in blitline-bridge blitline-simulator; do
    swift build -c release --static-swift-stdlib --product "$product" 2>&1 | tail -n 1
done
bin=$(swift build -c release --show-bin-path)

state=/tmp/blitline-bridge-demo
mkdir -p "$state"
export BROKER_DIR="$state/broker" BROKER_NODE=blitline-bridge-demo BROKER_PORT=5683 \
    BROKER_DIST_PORT=25683 BROKER_EPMD_PORT=4383 BROKER_MANAGEMENT_PORT=15683
own_broker=false
broker_ui=
if [ -z "${AMQP_URL:-}" ]; then
    mkdir -p "$BROKER_DIR" && chmod 755 "$state" "$BROKER_DIR"
    if ! deploy/rabbitmq-node.sh ctl -q status > /dev/null 2>&1; then
        echo "starting a RabbitMQ node of its own on port $BROKER_PORT…"
        deploy/rabbitmq-node.sh start
        own_broker=true
    fi
    AMQP_URL=$(deploy/rabbitmq-node.sh url)
    broker_ui="http://127.0.0.1:$BROKER_MANAGEMENT_PORT/ (user guest, password guest: guest logs in from this machine only)"
fi
export AMQP_URL

# The first free port from $1 on.
free_port() {
    local port=$1
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2> /dev/null; do port=$((port + 1)); done
    echo "$port"
}
simulator_port=$(free_port 8090)
listener_port=$(free_port 8080)
[ "$listener_port" = "$simulator_port" ] && listener_port=$(free_port $((simulator_port + 1)))

pids=()
cleanup() {
    if [ "$keep" = true ]; then return; fi
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2> /dev/null || true; done
    if [ "$own_broker" = true ]; then deploy/rabbitmq-node.sh stop; fi
}
trap cleanup EXIT

"$bin/blitline-simulator" --port "$simulator_port" --processing-delay 500ms > "$state/simulator.log" 2>&1 &
pids+=($!)
export BLITLINE_API_URL="http://127.0.0.1:$simulator_port" BLITLINE_POLL_URL="http://127.0.0.1:$simulator_port"
export BLITLINE_APPLICATION_ID=demo-application JOBS_QUEUE=blitline-demo.jobs EVENTS_EXCHANGE=blitline-demo.events
export LISTEN_ADDRESS="127.0.0.1:$listener_port" POSTBACK_BASE_URL="http://127.0.0.1:$listener_port/blitline"
export POSTBACK_SECRET="demo-secret-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$bin/blitline-bridge" > "$state/bridge.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 150); do
    curl -sf "http://127.0.0.1:$listener_port/readyz" > /dev/null && break
    if ! kill -0 "${pids[1]}" 2> /dev/null; then
        echo "blitline-bridge stopped; its log:" >&2
        tail -n 20 "$state/bridge.log" >&2
        exit 1
    fi
    sleep 0.2
done
echo "bridge ready: simulator on :$simulator_port, listener on :$listener_port, broker $AMQP_URL" | sed 's#//[^@]*@#//#'
if [ -n "$broker_ui" ]; then echo "broker UI: $broker_ui"; fi
echo
"$bin/blitline-bridge" submit deploy/demo/*.json --wait --timeout 60s | tee "$state/events.txt" || true
echo
if [ "$keep" = true ]; then
    cat <<INFO
Still running (--keep):
  broker:     $(echo "$AMQP_URL" | sed 's#//[^@]*@#//#')   (jobs queue $JOBS_QUEUE, events exchange $EVENTS_EXCHANGE)
  broker UI:  ${broker_ui:-none (the broker is yours)}
  listener:   http://127.0.0.1:$listener_port/healthz, /readyz
  metrics:    http://127.0.0.1:$listener_port/metrics
  simulator:  http://127.0.0.1:$simulator_port/_control/stats
  logs:       $state/bridge.log, $state/simulator.log
  submit:     AMQP_URL=$AMQP_URL JOBS_QUEUE=$JOBS_QUEUE $bin/blitline-bridge submit FILE.json --wait
  stop:       kill ${pids[*]}$( [ "$own_broker" = true ] && echo "; BROKER_DIR=$BROKER_DIR BROKER_NODE=$BROKER_NODE BROKER_EPMD_PORT=$BROKER_EPMD_PORT deploy/rabbitmq-node.sh stop")
INFO
fi
# The samples include an invalid request and an unknown function, so two failures are expected:
# the demo succeeds when every request got its event.
if grep -q "without an event" "$state/events.txt" || ! grep -q "requests:" "$state/events.txt"; then
    echo "some requests got no event; see $state/bridge.log" >&2
    exit 1
fi
