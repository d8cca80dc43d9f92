#!/usr/bin/env bash
# Instructions per echo round trip, torsion against the hand-written mio server,
# counted by valgrind's callgrind: figures that do not drift with a noisy machine.
#
#   benches/callgrind.sh                      # 64 B ping-pong on 1 connection
#   CASE="ping-pong 64 B, 100 conns" benches/callgrind.sh
#   CASE=pipeline N1=20000 N2=120000 benches/callgrind.sh
#   KEEP=1 benches/callgrind.sh               # keep the callgrind files (for callgrind_annotate)
#
# How: the echo bench (benches/echo.rs) runs with TORSION_BENCH_COUNT=N, which
# stops after exactly N echoed messages with no warm-up, for one server at a time
# (TORSION_BENCH_SERVERS), under `valgrind --tool=callgrind --separate-threads=yes`.
# Callgrind writes one file per thread; the server's is found by what it ran
# (the file whose functions include run_torsion or run_mio; with one server per
# run that is thread 02, and with both servers in one run torsion is 02 and mio
# 03, the order benches/echo.rs spawns them in). Each server is run twice, with
# N1 and N2 messages, and the figure is (Ir(N2) - Ir(N1)) / (N2 - N1): the
# instructions of one more round trip, with start-up, connecting and shutdown
# cancelled out. Everything the server thread executes counts, the kernel's work
# in system calls excepted (callgrind sees user space only): compare the syscall
# counts too (strace -c -f) when a change trades instructions for system calls.
set -euo pipefail

CASE=${CASE:-"ping-pong 64 B, 1 conn"}
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

# Instructions (Ir) of the server thread of one run: $1 server, $2 count.
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
    sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$file" | head -n 1
}

echo "callgrind: \"$CASE\", $N1 and $N2 messages per server"
declare -A per
for server in torsion mio; do
    a=$(server_ir "$server" "$N1")
    b=$(server_ir "$server" "$N2")
    per[$server]=$(( (b - a) / (N2 - N1) ))
done
printf '%-8s %12s\n' server "Ir/message"
for server in torsion mio; do
    printf '%-8s %12d\n' "$server" "${per[$server]}"
done
awk -v t="${per[torsion]}" -v m="${per[mio]}" \
    'BEGIN { printf "torsion/mio: %.3f (%+d instructions per message)\n", t / m, t - m }'
[ -z "${KEEP:-}" ] || echo "files kept in $out (callgrind_annotate <file>)"
