#!/usr/bin/env bash
# Runs README's "Quick start with the simulator" as written, as a new user would: its ```sh blocks,
# in order, in one bash with nothing of this environment but PATH and HOME (so that a variable the
# README forgets to export is missing here too), stopping at the first failing command. Passes when
# `submit` printed a completed event for the sample job and the README's own stop commands left
# nothing running. Whatever happens, it stops what the quick start started (the processes, its
# node) and removes its folder. deploy/test.sh runs it.
#
# The quick start's node and ports are its own: this refuses to run when the README's block does
# not name them, names the tests' or the demo's, or when any of them is in use (a quick start of
# yours still running, say), so that it never touches another node.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-quickstart: $*" >&2; exit 1; }

section="## Quick start with the simulator"
block=$(awk -v section="$section" '
    /^## / { inside = ($0 == section) }
    inside && /^```/ { if (code) { code = 0 } else if ($0 == "```sh") { code = 1 }; next }
    inside && code' README.md)
[ -n "$block" ] || fail "README has no \`\`\`sh block under \"$section\""

setting() { { grep -oE "\\b$1=[^ ]+" <<< "$block" || true; } | head -n 1 | cut -d= -f2; }
node=$(setting BROKER_NODE)
ports=()
for name in BROKER_PORT BROKER_DIST_PORT BROKER_EPMD_PORT; do
    port=$(setting "$name")
    [ -n "$port" ] || fail "the quick start sets no $name: its node would share the tests' (deploy/rabbitmq-node.sh's defaults)"
    ports+=("$port")
done
case "$node" in
    "") fail "the quick start sets no BROKER_NODE: its node would be the tests'" ;;
    blitline-bridge-test | blitline-bridge-demo) fail "the quick start's node $node is the tests' or the demo's" ;;
esac
for port in "${ports[@]}"; do
    case "$port" in
        5682 | 25682 | 4382 | 5683 | 25683 | 4383 | 571[234] | 2571[234] | 4412)
            fail "the quick start's port $port is one of the tests', the demo's or the test cluster's" ;;
    esac
done
ports+=($(grep -oE -- '(--port |127\.0\.0\.1:)[0-9]+' <<< "$block" | grep -oE '[0-9]+$' | sort -u))
for port in "${ports[@]}"; do
    if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
        fail "port $port, which the quick start uses, is in use (a quick start still running? stop it as README says): not run"
    fi
done

work=$(mktemp -d /tmp/blitline-bridge-quickstart-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The README's commands, then a check of what they left behind. On a failure (set -e) the trap
# stops what they started, from the variables they set, and shows the logs.
cat > "$work/quickstart.sh" <<'PROLOGUE'
set -euo pipefail
finish() {
    local status=$? left
    trap - EXIT
    trap '' TERM
    left=$(jobs -pr)
    if [ -n "$left" ]; then
        [ "$status" != 0 ] || echo "test-quickstart: still running after the README's stop commands: $(ps -o args= -p "$(paste -sd, <<< "$left")" | paste -sd ' ')" >&2
        kill -KILL $left 2> /dev/null || true
        wait || true
        status=1
    fi
    # Asked through its port: rabbitmqctl would start an epmd of its own for the question.
    if [ "$status" = 0 ] && (exec 3<> "/dev/tcp/127.0.0.1/${BROKER_PORT:-0}") 2> /dev/null; then
        echo "test-quickstart: the node still runs after the README's stop commands" >&2
        status=1
    fi
    if [ "$status" != 0 ] && [ -d "${BROKER_DIR:-}" ]; then deploy/rabbitmq-node.sh stop || true; fi
    if [ -n "${QUICKSTART_DIR:-}" ] && [ -d "$QUICKSTART_DIR" ]; then
        if [ "$status" != 0 ]; then
            for log in "$QUICKSTART_DIR"/*.log; do [ -f "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }; done
        else
            echo "test-quickstart: $QUICKSTART_DIR is left after the README's stop commands" >&2
            status=1
        fi
        rm -rf "$QUICKSTART_DIR"
    fi
    exit "$status"
}
trap finish EXIT
trap 'exit 143' TERM
PROLOGUE
printf '%s\n' "$block" >> "$work/quickstart.sh"

echo "test-quickstart: running README's quick start (node $node, ports ${ports[*]})…" >&2
started=$SECONDS
status=0
limit=90
timeout --kill-after 30 "$limit" env -i PATH="$PATH" HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}" bash "$work/quickstart.sh" > "$work/output" 2>&1 || status=$?
if [ "$status" != 0 ] || ! grep -qE '^✔ thumbnails[^:]*: completed' "$work/output"; then
    cat "$work/output" >&2
    [ "$status" != 124 ] || echo "test-quickstart: timed out after $limit s" >&2
    fail "README's quick start failed (exit status $status), or its submit printed no completed event for thumbnails"
fi
for port in "${ports[@]}"; do
    if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
        fail "port $port is still in use after README's stop commands"
    fi
done
echo "test-quickstart: passed in $((SECONDS - started)) s" >&2
