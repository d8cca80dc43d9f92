#!/usr/bin/env bash
# Instructions per echo round trip, torsion against the hand-written mio server,
# counted by valgrind's callgrind: figures that do not drift with a noisy machine.
#
#   benches/callgrind.sh                      # in-process: 64 B ping-pong on 1 connection
#   CASE="ping-pong 64 B, 100 conns" benches/callgrind.sh
#   CASE=pipeline N1=20000 N2=120000 benches/callgrind.sh
#   MODE=external benches/callgrind.sh        # the echo_server example, client in another process
#   MODE=external CONNS=50 benches/callgrind.sh
#   MODE=external CONNS=100 DEPTH=16 N1=20000 N2=120000 benches/callgrind.sh   # pipeline
#   KEEP=1 benches/callgrind.sh               # keep the callgrind files (for callgrind_annotate)
#
# In-process mode (MODE=inprocess, the default): the echo bench (benches/echo.rs)
# runs with TORSION_BENCH_COUNT=N, which stops after exactly N echoed messages
# with no warm-up, for one server at a time (TORSION_BENCH_SERVERS), under
# `valgrind --tool=callgrind --separate-threads=yes`. Callgrind writes one file
# per thread; the server's is found by what it ran (the file whose functions
# include run_torsion or run_mio; with one server per run that is thread 02, and
# with both servers in one run torsion is 02 and mio 03, the order
# benches/echo.rs spawns them in).
#
# External mode (MODE=external): the server is a process of its own under
# callgrind and the load comes from another process (the echo bench binary in
# its `client` role, CONNS connections, DEPTH messages of 64 B in flight on
# each). torsion's server is the `echo_server` example as users run it (release
# build, its defaults: the application runner, signal handling, the 5-minute
# idle timeout); the baseline is the same minimal mio server as the in-process
# one (benches/support), run alone (the echo bench's `mio-server` role). The
# whole server process counts (every thread, start-up and shutdown included);
# torsion's is stopped with SIGTERM after the client closed its connections,
# mio's exits when its last connection closes.
#
# Either way each server is run twice, with N1 and N2 messages, and the figure
# is (Ir(N2) - Ir(N1)) / (N2 - N1): the instructions of one more round trip,
# with start-up, connecting and shutdown cancelled out. Callgrind sees user
# space only, not the kernel's work in system calls: compare the syscall
# counts too (strace -c -f) when a change trades instructions for system calls.
set -euo pipefail

MODE=${MODE:-inprocess}
CASE=${CASE:-"ping-pong 64 B, 1 conn"}
CONNS=${CONNS:-1}
DEPTH=${DEPTH:-1}
N1=${N1:-2000}
N2=${N2:-12000}
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 1; }

# Build the bench (release profile with debug info) and find its binary.
bin=$(cargo bench --bench echo --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\/echo-[^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "callgrind.sh: could not build the echo bench" >&2; exit 1; }

out=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$out"' EXIT

# The total Ir of a callgrind file.
ir_of() {
    sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$1" | head -n 1
}

# Instructions (Ir) of the server thread of one in-process run: $1 server, $2 count.
server_ir() {
    local server=$1 count=$2 prefix="$out/$1-$2"
    TORSION_BENCH_SERVERS=$server TORSION_BENCH_COUNT=$count TORSION_BENCH_RUNS=1 \
        TORSION_BENCH_CASES=$CASE \
        valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$prefix.%p" "$bin" >"$prefix.log" 2>&1 ||
        { echo "callgrind.sh: the run failed, see $prefix.log" >&2; tail -n 20 "$prefix.log" >&2; exit 1; }
    local file
    file=$(grep -l "run_$server" "$prefix".*-[0-9][0-9] | head -n 1)
    [ -n "$file" ] || { echo "callgrind.sh: no thread ran run_$server" >&2; exit 1; }
    echo "  $server, $count messages: $(basename "$file")" >&2
    ir_of "$file"
}

# Instructions (Ir) of a whole server process driven by the external client:
# $1 server, $2 count.
external_ir() {
    local server=$1 count=$2 prefix="$out/$1-$2"
    local -a cmd
    case $server in
    torsion) cmd=("$example" 127.0.0.1:0) ;;
    mio) cmd=("$bin") ;;
    esac
    # (The role goes in the environment: valgrind does not follow `env`'s exec.)
    TORSION_BENCH_ROLE=mio-server \
        valgrind --tool=callgrind --callgrind-out-file="$prefix.cg" "${cmd[@]}" >"$prefix.log" 2>&1 &
    local pid=$! addr="" i
    for i in $(seq 1 600); do
        addr=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$prefix.log" | head -n 1 | sed 's/.* //') || true
        [ -n "$addr" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    [ -n "$addr" ] || { echo "callgrind.sh: the $server server did not start, see $prefix.log" >&2; kill "$pid" 2>/dev/null; exit 1; }
    TORSION_BENCH_ROLE=client TORSION_BENCH_ADDR=$addr TORSION_BENCH_CONNS=$CONNS \
        TORSION_BENCH_DEPTH=$DEPTH TORSION_BENCH_COUNT=$count "$bin" >"$prefix.client" 2>&1 ||
        { echo "callgrind.sh: the client failed, see $prefix.client" >&2; cat "$prefix.client" >&2; kill "$pid"; exit 1; }
    if [ "$server" = torsion ]; then
        kill -TERM "$pid"
    fi
    # mio exits by itself once the client's connections closed.
    for i in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "callgrind.sh: the $server server did not exit; killing it" >&2
        kill -KILL "$pid"
        exit 1
    fi
    wait "$pid" || { echo "callgrind.sh: the $server server failed, see $prefix.log" >&2; exit 1; }
    echo "  $server, $count messages: $(basename "$prefix.cg")" >&2
    ir_of "$prefix.cg"
}

case $MODE in
inprocess)
    echo "callgrind, in-process: \"$CASE\", $N1 and $N2 messages per server"
    measure=server_ir
    ;;
external)
    cargo build --release -p torsion-examples --example echo_server >&2 ||
        { echo "callgrind.sh: could not build the echo_server example" >&2; exit 1; }
    example=target/release/examples/echo_server
    echo "callgrind, external client: $CONNS connection(s), $DEPTH x 64 B in flight on each, $N1 and $N2 messages per server"
    measure=external_ir
    ;;
*)
    echo "callgrind.sh: MODE must be inprocess or external" >&2
    exit 2
    ;;
esac

declare -A per
for server in torsion mio; do
    a=$($measure "$server" "$N1")
    b=$($measure "$server" "$N2")
    per[$server]=$(( (b - a) / (N2 - N1) ))
done
printf '%-8s %12s\n' server "Ir/message"
for server in torsion mio; do
    printf '%-8s %12d\n' "$server" "${per[$server]}"
done
awk -v t="${per[torsion]}" -v m="${per[mio]}" \
    'BEGIN { printf "torsion/mio: %.3f (%+d instructions per message)\n", t / m, t - m }'
[ -z "${KEEP:-}" ] || echo "files kept in $out (callgrind_annotate <file>)"
