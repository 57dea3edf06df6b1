#!/usr/bin/env bash
# The bridge's end-to-end benchmark (README): builds blitline-bridge, blitline-simulator and
# bridge-bench in release mode and runs them against AMQP_URL, or a throwaway local node when
# AMQP_URL is unset.
#
#   deploy/bench.sh [--cluster] [--rounds N] [--against DIR | --against-revision REV] [--count N] [--prefetch N]
#                   [--queue-type quorum|classic] [--postback-connections N]
#                   [--fresh-postback-connections] [--bridge-only]
#   deploy/bench.sh --backlog N          a restart onto N outcomes in the stream, deadlines due
#   deploy/bench.sh --soak SECONDS [--rate R]   steady load, the bridge's memory every 30 s
#   deploy/bench.sh --listener-floor SECONDS [--rate R] [--postback-connections N]
#                                        the HTTP listener alone: CPU per request at R requests/s
#
# --cluster runs against a throwaway three-node cluster (deploy/rabbitmq-cluster.sh) instead of one
# node. The other arguments go to bridge-bench (--count 20000, --prefetch 1024, --queue-type quorum,
# --postback-connections 32 by default; the bridge's own defaults are --prefetch 64, and Blitline
# posts back over many connections: --prefetch 64 --postback-connections 256, or
# --fresh-postback-connections for one connection per postback). After the bridge's run, the same
# requests are relayed by the AMQP module alone, to set the broker's CPU per job beside a plain
# relay's at the bridge's own pace; --bridge-only skips that (A/B runs of the bridge).
# --rounds N runs it N times on the same broker and ends with each figure's median and range: this
# machine's speed drifts by a third between runs, so one run is an anecdote.
# --against DIR is an A/B run: each round runs the blitline-bridge and blitline-simulator binaries
# in DIR (another build's release folder, copied aside), then this tree's, and the medians come for
# both. Only runs taken in turn like this compare builds; figures of different hours do not.
# --against-revision REV does the same with the bridge of git revision REV (e.g. fdd5b56, issue 12's
# baseline), built in release mode in a throwaway worktree (minutes: its dependencies are built from
# scratch) and run beside this tree's simulator.
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=0
rounds=1
against=
against_revision=
arguments=()
while [ $# -gt 0 ]; do
    case "$1" in
        --cluster) cluster=1 ;;
        --rounds) rounds=${2:?--rounds needs a number}; shift ;;
        --against) against=${2:?--against needs a folder with blitline-bridge and blitline-simulator}; shift ;;
        --against-revision) against_revision=${2:?--against-revision needs a git revision}; shift ;;
        *) arguments+=("$1") ;;
    esac
    shift
done

# What the script leaves behind is undone on its way out, a failed round included.
cleanups=()
cleanup() {
    for step in "${cleanups[@]}"; do eval "$step"; done
}
trap cleanup EXIT

if [ "$cluster" = 1 ] && [ -z "${CLUSTER_DIR:-}" ]; then
    deploy/install-deps.sh
    CLUSTER_DIR=$(mktemp -d /tmp/blitline-bridge-bench-cluster.XXXXXX)
    export CLUSTER_DIR
    chmod 755 "$CLUSTER_DIR"
    cleanups+=('deploy/rabbitmq-cluster.sh stop || true; rm -rf "$CLUSTER_DIR"')
    deploy/rabbitmq-cluster.sh start
    AMQP_URL=$(deploy/rabbitmq-cluster.sh url)
    export AMQP_URL
elif [ -z "${AMQP_URL:-}" ] && [ -z "${BROKER_URL:-}" ]; then
    # A node of its own, to run beside the tests' and the demo's (README, "The two commands").
    export BROKER_NODE=${BROKER_NODE:-blitline-bridge-bench} BROKER_PORT=${BROKER_PORT:-5686} \
        BROKER_DIST_PORT=${BROKER_DIST_PORT:-25686} BROKER_EPMD_PORT=${BROKER_EPMD_PORT:-4386}
    exec deploy/with-broker.sh "$0" --rounds "$rounds" ${against:+--against "$against"} \
        ${against_revision:+--against-revision "$against_revision"} "${arguments[@]}"
fi
if [ -n "$against" ] && [ -n "$against_revision" ]; then
    echo "bench: --against and --against-revision: one or the other" >&2
    exit 2
fi
if [ -n "$against" ] && [ ! -x "$against/blitline-bridge" ]; then
    echo "bench: --against $against: no blitline-bridge there" >&2
    exit 2
fi
deploy/install-deps.sh
if [ -n "$against_revision" ]; then
    against=$(mktemp -d /tmp/blitline-bridge-bench-against.XXXXXX)
    source_tree="$against/source"
    cleanups+=('[ ! -d "$source_tree" ] || git worktree remove --force "$source_tree" || true; rm -rf "$against"')
    git worktree add --detach "$source_tree" "$against_revision"
    (cd "$source_tree" && swift build -c release --static-swift-stdlib --product blitline-bridge) \
        && cp "$source_tree/.build/release/blitline-bridge" "$against/" \
        || echo "bench: --against-revision $against_revision: its blitline-bridge did not build" >&2
    git worktree remove --force "$source_tree"
    [ -x "$against/blitline-bridge" ] || exit 1
fi
# Linked as the Dockerfile and the systemd unit link them (--static-swift-stdlib): what users run.
# Measured here, calls into a static Swift runtime cost the bridge about 8 % less CPU per job.
for product in blitline-bridge blitline-simulator bridge-bench; do
    swift build -c release --static-swift-stdlib --product "$product"
done
bin=$(swift build -c release --show-bin-path)
[ -z "$against_revision" ] || cp "$bin/blitline-simulator" "$against/"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(. /etc/os-release; echo "$PRETTY_NAME")"
outputs=()
earlier=()
cleanups+=('rm -f "${outputs[@]}" "${earlier[@]}"')
run_against() {
    echo "--- ${against_revision:-$against}"
    output=$(mktemp)
    earlier+=("$output")
    "$bin/bridge-bench" --url "${AMQP_URL:-${BROKER_URL:-}}" --bin "$against" "${arguments[@]}" | tee "$output"
}
run_tree() {
    [ -z "$against" ] || echo "--- this tree"
    output=$(mktemp)
    outputs+=("$output")
    "$bin/bridge-bench" --url "${AMQP_URL:-${BROKER_URL:-}}" --bin "$bin" "${arguments[@]}" | tee "$output"
}
for round in $(seq 1 "$rounds"); do
    [ "$rounds" = 1 ] || echo "--- round $round of $rounds"
    # A/B rounds take turns going first: the machine's drift within a round then favours neither.
    if [ -z "$against" ]; then
        run_tree
    elif [ $((round % 2)) = 1 ]; then
        run_against
        run_tree
    else
        run_tree
        run_against
    fi
done
[ "$rounds" = 1 ] && [ -z "$against" ] && exit 0

# Numbers on standard input, one a line: "MEDIAN LOWEST HIGHEST COUNT BELOW-ONE"; nothing for none.
spread() {
    sort -g | awk '
        { value[NR] = $1; if ($1 < 1) below++ }
        END {
            if (NR == 0) exit
            median = NR % 2 ? value[(NR + 1) / 2] : (value[NR / 2] + value[NR / 2 + 1]) / 2
            print median, value[1], value[NR], NR, below + 0
        }'
}

# Each figure over the rounds: median (lowest – highest).
summary() {  # summary LABEL SED-EXPRESSION (prints the figure's number from a matching line)
    sed -n "$2" "${files[@]}" | spread | while read -r median lowest highest count _; do
        printf "  %-58s %8.2f  (%s – %s, %d rounds)\n" "$1" "$median" "$lowest" "$highest" "$count"
    done
}
summaries() {  # summaries TITLE FILE... (every figure's median over those runs)
    echo "$1"
    shift
    files=("$@")
    summary "jobs/s" 's/^bridge: \([0-9.]*\) jobs\/s.*/\1/p'
    summary "bridge CPU per job (µs)" 's/^bridge CPU per job: \([0-9.]*\) µs.*/\1/p'
    summary "  of which SwiftNIO's threads (µs)" 's/^bridge CPU per job by thread: SwiftNIO \([0-9.]*\) µs.*/\1/p'
    summary "  of which the Swift pool's threads (µs)" 's/^bridge CPU per job by thread: .*Swift pool \([0-9.]*\) µs.*/\1/p'
    summary "  of which the AMQP connections' threads (µs)" 's/^bridge CPU per job by thread: .*AMQP \([0-9.]*\) µs.*/\1/p'
    summary "broker CPU per job, driven by the bridge (µs)" 's/.*broker CPU per job: \([0-9.]*\) µs.*/\1/p'
    summary "broker CPU per job, plain relay at the bridge's pace (µs)" 's/^  \([0-9.]*\) µs by a plain relay$/\1/p'
    summary "broker CPU per job, plain relay + outcome records (µs)" 's/^  \([0-9.]*\) µs by a plain relay plus an outcome record per [0-9]* events$/\1/p'
    summary "broker CPU per job, the bridge's pattern relayed (µs)" 's/^  \([0-9.]*\) µs by a plain relay plus an outcome record per .* and a deadline.*/\1/p'
    summary "broker, bridge ÷ plain relay" 's/.*drives the broker at \([0-9.]*\)× a plain relay/\1/p'
    summary "postback-to-event p50 (ms)" 's/.*latency: p50 \([0-9.]*\) ms.*/\1/p'
    summary "postback-to-event p99 (ms)" 's/.*latency: p50 .*, p99 \([0-9.]*\) ms.*/\1/p'
    summary "bridge peak RSS (MiB)" 's/^bridge peak RSS: \([0-9.]*\) MiB/\1/p'
    summary "listener's floor: requests answered per second" 's/^listener floor: .*(\([0-9.]*\)\/s).*/\1/p'
    summary "listener's floor: bridge CPU per request (µs)" 's/^bridge CPU per request: \([0-9.]*\) µs.*/\1/p'
}
[ -z "$against" ] || summaries "--- ${against_revision:-$against}: medians over $rounds rounds (lowest – highest)" "${earlier[@]}"
summaries "--- ${against:+this tree: }medians over $rounds rounds (lowest – highest)" "${outputs[@]}"

# Each round's pair compared: what drifts between rounds cancels out of a ratio taken within one.
# The machine's speed drifts within a round too, by a fifth in a minute; the simulator, the same
# work in both runs of a pair, drifts with it, so the bridge's CPU over the simulator's cancels
# the machine out of the comparison (unless a change alters what the simulator does, e.g. the
# submissions' size).
[ -n "$against" ] || exit 0
cpu() {  # cpu FILE: "BRIDGE SIMULATOR", the CPU seconds of the bridge and the simulator in the run;
          # for the listener's floor, which runs no simulator, the bridge's CPU per request alone
    sed -n -e 's/^CPU seconds during the run: bridge \([0-9.]*\), simulator \([0-9.]*\),.*/\1 \2/p' \
        -e 's/^bridge CPU per request: \([0-9.]*\) µs.*/\1/p' "$1"
}
compare() {  # compare LABEL FIGURE (bridge: the bridge's seconds; over-simulator: over the simulator's)
    local ratios=() index
    for index in "${!outputs[@]}"; do
        ratios+=("$(awk -v other="$(cpu "${earlier[$index]}")" -v tree="$(cpu "${outputs[$index]}")" -v figure="$2" '
            function seconds(run,   f) { split(run, f, " "); return figure == "bridge" ? f[1] : f[1] / f[2] }
            BEGIN {
                split(other, o, " ")
                if (other != "" && tree != "" && (figure == "bridge" || o[2] != "")) printf "%.3f", seconds(tree) / seconds(other)
            }')")
    done
    printf '%s\n' "${ratios[@]}" | { grep . || true; } | spread | while read -r median lowest highest count lower; do
        printf "  %-58s %8.3f  (%s – %s); lower in %d of %d rounds (%s)\n" \
            "$1" "$median" "$lowest" "$highest" "$lower" "$count" "${ratios[*]}"
    done
}
echo "--- this tree ÷ ${against_revision:-$against}, round by round"
compare "bridge CPU" bridge
compare "bridge CPU ÷ simulator CPU" over-simulator
