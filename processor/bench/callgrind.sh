#!/bin/sh
# callgrind.sh [providers-regexp] [exchanges]: server instructions per
# whole exchange, llmux and the floor, counted by valgrind's callgrind in
# the child servers of BenchmarkExchangeServer. Unlike CPU time, the
# counts do not depend on the machine's load. The benchmarks run twice,
# with b.N=exchanges and b.N=3*exchanges; the difference of the children's
# totals, divided by 2*exchanges, is the cost of one exchange without the
# process's start-up, warm-up and first garbage collections.
#
#   processor/bench/callgrind.sh 'openai|bedrock' 1000
#
# With KEEP=dir, the callgrind files stay in dir for callgrind_annotate.
set -eu
providers=${1:-.}
n=${2:-1000}
cd "$(dirname "$0")"
if [ -n "${KEEP:-}" ]; then
	out=$KEEP
	mkdir -p "$out"
else
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
fi
go test -c -o "$out/bench.test" .
# Go's runtime reads the TSC with RDTSCP, which valgrind 3.19 does not
# know, and preempts with signals, which callgrind does not survive.
# Valgrind runs one thread at a time; without fair scheduling, a thread
# that yields in a loop (gRPC's writer) can spin for billions of
# instructions while the one it waits for is not scheduled.
for b in "$n" $((3 * n)); do
	GODEBUG=cpu.rdtscp=off,asyncpreemptoff=1 \
	LLMUX_BENCH_SERVER_WRAP="valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file=$out/%q{LLMUX_BENCH_ID}.cg" \
		"$out/bench.test" -test.run '^$' -test.bench "ExchangeServer/($providers)/" -test.benchtime "${b}x" >/dev/null 2>&1
done
total() { sed -n 's/^totals: //p' "$out/$1.cg"; }
per() { echo $(( ($(total "$1-$((3 * n))") - $(total "$1-$n")) / (2 * n) )); }
printf '%-10s %14s %14s %7s\n' provider floor-Ir/op llmux-Ir/op ratio
for f in "$out"/*-floor-"$n".cg; do
	p=$(basename "$f" -floor-"$n".cg)
	floor=$(per "$p-floor")
	llmux=$(per "$p-llmux")
	printf '%-10s %14d %14d %7s\n' "$p" "$floor" "$llmux" "$(echo "scale=2; $llmux / $floor" | bc)"
done
