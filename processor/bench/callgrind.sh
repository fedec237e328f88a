#!/bin/sh
# callgrind.sh [providers-regexp] [exchanges]: server instructions per
# whole exchange, llmux and the floor, counted by valgrind's callgrind in
# the child servers of BenchmarkExchangeServer. Unlike CPU time, the
# counts do not depend on the machine's load. Each sub-benchmark runs
# once with b.N=1 and once with b.N=exchanges; the difference of the two
# children's totals, divided by exchanges-1, is the cost of one exchange
# without the process's start-up and warm-up.
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
GODEBUG=cpu.rdtscp=off,asyncpreemptoff=1 \
LLMUX_BENCH_SERVER_WRAP="valgrind --tool=callgrind --callgrind-out-file=$out/%q{LLMUX_BENCH_ID}.cg" \
	"$out/bench.test" -test.run '^$' -test.bench "ExchangeServer/($providers)/" -test.benchtime "${n}x" >/dev/null 2>&1
total() { sed -n 's/^totals: //p' "$out/$1.cg"; }
printf '%-10s %14s %14s %7s\n' provider floor-Ir/op llmux-Ir/op ratio
for f in "$out"/*-floor-"$n".cg; do
	p=$(basename "$f" -floor-"$n".cg)
	floor=$(( ($(total "$p-floor-$n") - $(total "$p-floor-1")) / (n - 1) ))
	llmux=$(( ($(total "$p-llmux-$n") - $(total "$p-llmux-1")) / (n - 1) ))
	printf '%-10s %14d %14d %7s\n' "$p" "$floor" "$llmux" "$(echo "scale=2; $llmux / $floor" | bc)"
done
