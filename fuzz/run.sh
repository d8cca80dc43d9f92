#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), one after the other,
# one job each, and prints each target's final figures. Built with debug
# assertions and overflow checks (-a), as the stable replay of the corpora
# runs: without them an overflow wraps silently. Needs a nightly
# toolchain and cargo-fuzz (`cargo install cargo-fuzz`). New inputs go to
# fuzz/corpus/<target>/ (minimise with `cargo +nightly fuzz cmin <target>`
# before committing); a crash stops the run and leaves its input under
# fuzz/artifacts/<target>/.
#
#   fuzz/run.sh 600          # ten minutes each
#   fuzz/run.sh 60 engine    # only the named targets
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
  echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -O -a
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: ${seconds}s"
  log="fuzz-$t.log"
  cargo +nightly fuzz run -O -a "$t" -- -max_total_time="$seconds" -max_len=4096 \
    -rss_limit_mb=1024 -print_final_stats=1 >"$log" 2>&1 || {
    echo "== $t FAILED; see fuzz/$log and fuzz/artifacts/$t/" >&2
    tail -30 "$log" >&2
    exit 1
  }
  grep -E '^#[0-9]+.*DONE' "$log" | tail -1 || true
  grep -E 'stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
done
