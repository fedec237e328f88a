package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/ratelimit"
)

// newLimiter builds the limiter from the configuration's limits section:
// on Redis (a single server, Sentinel or Cluster, through go-redis's
// universal client) when addresses are given, else in memory. The Redis
// settings are read at start; a reload that changes them is logged and
// takes effect at the next restart (policies reload with the rest).
func newLimiter(ctx context.Context, ls *config.LimitSet, log *slog.Logger) (*ratelimit.Limiter, func()) {
	spec := ls.Spec
	opts := ratelimit.Options{KeyPrefix: spec.KeyPrefix, HashTag: spec.HashTag, Timeout: spec.Timeout, Lease: spec.Lease,
		BreakerFailures: spec.Breaker.Failures, BreakerOpenFor: spec.Breaker.OpenFor}
	if len(spec.Redis.Addresses) == 0 {
		if ls.Enabled() {
			log.Warn("limits are kept in this process's memory (limits.redis.addresses is empty): each replica enforces them on its own")
		}
		return ratelimit.New(opts), func() {}
	}
	redis.SetLogger(redisLog{log}) // go-redis's own lines (pool dial failures) into llmux's log
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:      spec.Redis.Addresses,
		MasterName: spec.Redis.MasterName,
		Username:   spec.Redis.Username,
		Password:   ls.Password.Value(),
		DB:         spec.Redis.DB,
		// The limiter bounds each call and has its own breaker: no
		// retries that would multiply the deadline.
		MaxRetries:   -1,
		DialTimeout:  max(spec.Timeout, time.Second),
		ReadTimeout:  spec.Timeout,
		WriteTimeout: spec.Timeout,
	})
	opts.Redis = rdb
	lim := ratelimit.New(opts)
	if err := lim.Load(ctx); err != nil {
		log.Warn("limits: cannot load the scripts into Redis yet; each policy follows its on_redis_error until Redis answers",
			"redis", spec.Redis.Addresses, "error", err)
	} else {
		log.Info("limits: counters in Redis", "redis", spec.Redis.Addresses, "policies", len(ls.Spec.Policies))
	}
	return lim, func() { _ = rdb.Close() }
}

// redisChanged reports whether a reload changed the Redis settings, which
// need a restart.
func redisChanged(a, b *config.LimitSet) bool {
	return fmt.Sprint(a.Spec.Redis, a.Spec.KeyPrefix, a.Spec.HashTag) != fmt.Sprint(b.Spec.Redis, b.Spec.KeyPrefix, b.Spec.HashTag)
}

// redisLog writes go-redis's internal log lines to llmux's logger, at
// warning level (they report connection failures).
type redisLog struct{ log *slog.Logger }

// Printf implements go-redis's logging interface.
func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.log.WarnContext(ctx, "limits: redis client", "message", fmt.Sprintf(format, v...))
}
