#!/usr/bin/env bash
# How echo throughput scales from 1 to 2 reactor threads: examples/echo_server
# with --threads 1 and 2, loaded by examples/netperf (100 connections, 64 B
# ping-pong, 1 s warm-up + 4 s measured), REPS times, interleaved.
#
#   benches/scale.sh            # REPS=3
#
# Two placements: "free" lets server and load share both cores (the load with 2
# threads); "split" pins the server to CPU 0 and the load (1 thread) to CPU 1, so
# the second reactor can only show its overhead there. Server CPU comes from
# /proc/<pid>/stat (utime + stime over warm-up and measurement, ~5 s), divided by
# rate x 5 s: an estimate of server CPU per message.
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example echo_server --example netperf >/dev/null 2>&1
S=target/release/examples/echo_server
N=target/release/examples/netperf
REPS=${REPS:-3}
cpu_ticks() { awk '{print $14+$15}' /proc/$1/stat; }
run() { # label server_taskset server_threads load_taskset load_threads port
  local label=$1 st=$2 sth=$3 lt=$4 lth=$5 port=$6
  RUST_LOG=warn taskset -c $st $S --threads $sth 127.0.0.1:$port 2>/dev/null &
  local pid=$!
  for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
  local c0=$(cpu_ticks $pid)
  local out=$(taskset -c $lt $N 127.0.0.1:$port -c 100 -m pingpong -s 64 --duration 4 -w 1 --threads $lth --json -q 2>/dev/null)
  local c1=$(cpu_ticks $pid)
  kill -INT $pid; wait $pid; local rc=$?
  local msgs=$(echo "$out" | sed -n 's/.*"messages":\([0-9]*\).*/\1/p')
  local rate=$(echo "$out" | sed -n 's/.*"msgs_per_sec":\([0-9.]*\).*/\1/p')
  # server CPU over warm-up + measure (5 s); per message measured ~ ticks*10ms/(rate*5)
  echo "$label rate=$rate server_cpu_s=$(echo "($c1-$c0)/100" | bc -l | cut -c1-5) us_per_msg=$(echo "($c1-$c0)*10000/($rate*5)" | bc -l | cut -c1-6) exit=$rc"
}
for r in $(seq $REPS); do
  for th in 1 2; do
    run "free   server-T$th load-T2" 0,1 $th 0,1 2 $((9100+r*10+th))
  done
  for th in 1 2; do
    run "split  server-T$th(cpu0) load-T1(cpu1)" 0 $th 1 1 $((9200+r*10+th))
  done
done
