// Package xbench holds the translators' whole-exchange benchmarks: the
// request of processor/bench's BenchmarkExchangeServer rewritten and its
// response decoded, without the processor or gRPC around them, so that a
// translator's own cost can be counted with callgrind in one process.
package xbench
