#!/usr/bin/env bash
# Instructions and heap allocations per HTTP request, torsion's server against
# the minimal hand-written mio responder, counted by valgrind's callgrind:
# figures that do not drift with a noisy machine. The sibling of
# benches/callgrind.sh (which does the same for the echo bench).
#
#   benches/callgrind_http.sh                   # keep-alive hello-world, 100 connections
#   CONNS=1 benches/callgrind_http.sh           # one connection (no batching of events)
#   N1=5000 N2=25000 benches/callgrind_http.sh
#   KEEP=1 benches/callgrind_http.sh            # keep the callgrind files (for callgrind_annotate)
#   BIN=/tmp/http-before benches/callgrind_http.sh  # a bench binary built earlier (before a change)
#   RUN_TIMEOUT=900 benches/callgrind_http.sh   # seconds each valgrind run may take (default 600)
#
# How: the HTTP bench (benches/http.rs) runs with TORSION_BENCH_COUNT=N, which
# stops after exactly N answered requests with no warm-up, for one server at a
# time (TORSION_BENCH_SERVERS), under `valgrind --tool=callgrind
# --separate-threads=yes`. Callgrind writes one file per thread; the server's
# is the one whose functions include run_torsion or run_mio. Each server is run
# twice, with N1 and N2 requests, and each figure is (X(N2) - X(N1)) / (N2 - N1):
# the cost of one more request, with start-up, connecting and shutdown
# cancelled out. "Ir" is every instruction the server thread executes in user
# space (the kernel's work in system calls is not seen); "allocs" counts the
# thread's calls to malloc, calloc, realloc and the aligned allocators.
#
# Any failure (a build, a run that fails or outlives RUN_TIMEOUT, a file
# without the server thread or without totals) stops the script with one
# line saying why, and a non-zero status: no figure is printed from a run
# that did not complete.
set -euo pipefail

CONNS=${CONNS:-100}
N1=${N1:-4000}
N2=${N2:-20000}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
cd "$(dirname "$0")/.."

# Stops the script with one line saying why; the run's files are kept.
fail() {
    echo "callgrind_http.sh: $*" >&2
    [ -z "${out:-}" ] || trap - EXIT
    exit 1
}

command -v valgrind >/dev/null || fail "valgrind is not installed"
command -v python3 >/dev/null || fail "python3 is needed to read the call counts"
command -v timeout >/dev/null || fail "timeout (coreutils) is needed to bound the runs"
[ "$N2" -gt "$N1" ] || fail "N2 ($N2) must be larger than N1 ($N1)"

# Build the bench (release profile with debug info) and find its binary.
if [ -n "${BIN:-}" ]; then
    bin=$BIN
else
    json=$(cargo bench --bench http --no-run --message-format=json 2>/dev/null) ||
        fail "could not build the http bench (cargo bench --bench http --no-run)"
    bin=$(sed -n 's/.*"executable":"\([^"]*\/http-[^"]*\)".*/\1/p' <<<"$json" | tail -n 1)
fi
[ -x "$bin" ] || fail "no http bench binary (${bin:-none in the output of cargo})"

out=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$out"' EXIT

# Total Ir and allocation calls in one callgrind file, as "IR ALLOCS".
count_file() {
    python3 - "$1" <<'EOF'
import re, sys
alloc = {"malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign"}
names, total, allocs, target, pending = {}, 0, 0, None, None
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"(summary|totals):\s*(\d+)", line)
    if m and not total:
        total = int(m.group(2))
        continue
    m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(2):
            names[m.group(1)] = m.group(2).strip()
        target = names.get(m.group(1), "")
        continue
    m = re.match(r"c?fn=\((\d+)\) (.*)", line)
    if m:
        names[m.group(1)] = m.group(2).strip()
        continue
    m = re.match(r"calls=(\d+)", line)
    if m and target in alloc:
        allocs += int(m.group(1))
print(total, allocs)
EOF
}

# The server thread's counts of one run ($1 server, $2 requests), left in
# RUN_IR and RUN_ALLOCS. Not run in a command substitution, so that `fail`
# ends the script and not only a subshell.
server_counts() {
    local server=$1 count=$2 prefix="$out/$1-$2" status=0
    TORSION_BENCH_SERVERS=$server TORSION_BENCH_COUNT=$count TORSION_BENCH_RUNS=1 \
        TORSION_BENCH_CONNS=$CONNS \
        timeout --kill-after=10 "$RUN_TIMEOUT" \
        valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$prefix.%p" "$bin" >"$prefix.log" 2>&1 || status=$?
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        fail "the $server run of $count requests did not finish in ${RUN_TIMEOUT}s (stopped; log: $prefix.log)"
    elif [ "$status" -ne 0 ]; then
        fail "the $server run of $count requests failed with status $status ($(grep -m1 -iE 'panicked|error' "$prefix.log" || echo "log: $prefix.log"))"
    fi
    local file
    file=$(grep -l "run_$server" "$prefix".*-[0-9][0-9] 2>/dev/null | head -n 1) || true
    [ -n "$file" ] || fail "no thread of the $server run of $count requests ran run_$server (log: $prefix.log)"
    echo "  $server, $count requests: $(basename "$file")" >&2
    local counts
    counts=$(count_file "$file") || fail "could not read the counts in $file"
    read -r RUN_IR RUN_ALLOCS <<<"$counts"
    [[ "${RUN_IR:-}" =~ ^[1-9][0-9]*$ && "${RUN_ALLOCS:-}" =~ ^[0-9]+$ ]] ||
        fail "no totals in $file (got '$counts')"
}

echo "callgrind: keep-alive hello-world, $CONNS connection(s), $N1 and $N2 requests per server"
declare -A ir allocs
for server in torsion mio; do
    server_counts "$server" "$N1"
    a_ir=$RUN_IR a_al=$RUN_ALLOCS
    server_counts "$server" "$N2"
    b_ir=$RUN_IR b_al=$RUN_ALLOCS
    [ "$b_ir" -gt "$a_ir" ] || fail "$server: $N2 requests counted no more instructions than $N1 ($b_ir, $a_ir)"
    ir[$server]=$(( (b_ir - a_ir) / (N2 - N1) ))
    allocs[$server]=$(awk -v a="$a_al" -v b="$b_al" -v n=$(( N2 - N1 )) 'BEGIN { printf "%.2f", (b - a) / n }')
done
printf '%-8s %12s %12s\n' server "Ir/request" "allocs/req"
for server in torsion mio; do
    printf '%-8s %12d %12s\n' "$server" "${ir[$server]}" "${allocs[$server]}"
done
awk -v t="${ir[torsion]}" -v m="${ir[mio]}" \
    'BEGIN { printf "torsion/mio: %.3f (%+d instructions per request)\n", t / m, t - m }'
[ -z "${KEEP:-}" ] || echo "files kept in $out (callgrind_annotate <file>)"
