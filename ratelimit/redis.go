package ratelimit

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// reserveScript checks and reserves a plan atomically, on Redis server
// time (TIME). KEYS: one per check. ARGV: member, lease ms, group count,
// then per group its check count, then per check: kind ("w" window or
// "c" concurrency), bound, amount, window ms.
//
// A window counter is a hash: field = sub-bucket index (server ms /
// (window/60)), value = the amount counted in it. A request is admitted
// when the sum over the current sub-bucket and the 60 before it, plus its
// amount, stays within the bound. A concurrency counter is a sorted set:
// member = request id, score = the lease's end in server ms; expired
// leases are dropped before counting.
//
// It answers {1, chosen group (1-based among the alternatives, 0 when
// none), now ms, remaining and reset ms per check...} or, when denied,
// {0, the denying check (1-based), retry ms, now ms}. Nothing is written
// for a denied request but the removal of expired sub-buckets and leases.
var reserveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local lease = tonumber(ARGV[2])
local ngroups = tonumber(ARGV[3])
local a, k = 4, 1
local groups = {}
local checks = {}
for g = 1, ngroups do
  local n = tonumber(ARGV[a]); a = a + 1
  local grp = {}
  for i = 1, n do
    local c = {idx = k, key = KEYS[k], kind = ARGV[a], max = tonumber(ARGV[a+1]), amount = tonumber(ARGV[a+2]), window = tonumber(ARGV[a+3])}
    a = a + 4
    grp[i] = c
    checks[k] = c
    k = k + 1
  end
  groups[g] = grp
end

-- read fills c.used, c.buckets (sorted) and c.cur.
local function read(c)
  if c.kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', c.key, '-inf', now)
    c.used = redis.call('ZCARD', c.key)
    return
  end
  c.width = c.window / 60
  c.cur = math.floor(now / c.width)
  local oldest = c.cur - 60
  local flat = redis.call('HGETALL', c.key)
  local used, stale, buckets = 0, {}, {}
  for i = 1, #flat, 2 do
    local b = tonumber(flat[i])
    if b < oldest then
      stale[#stale + 1] = flat[i]
    else
      local v = tonumber(flat[i + 1])
      used = used + v
      buckets[#buckets + 1] = {b, v}
    end
  end
  if #stale > 0 then redis.call('HDEL', c.key, unpack(stale)) end
  table.sort(buckets, function(x, y) return x[1] < y[1] end)
  c.used, c.buckets = used, buckets
end

-- retry: ms until c could admit its amount (a window bound the amount
-- alone exceeds: the whole window).
local function retry(c)
  if c.kind == 'c' then return 1000 end
  local amt = math.max(c.amount, 1)
  if amt > c.max then return c.window end
  local need = c.used + amt - c.max
  local freed = 0
  for _, bv in ipairs(c.buckets) do
    freed = freed + bv[2]
    if freed >= need then
      return math.max((bv[1] + 61) * c.width - now, 1)
    end
  end
  return c.window
end

-- fits: the first check of grp that does not fit, or nil.
local function fits(grp)
  local worst, wr = nil, -1
  for _, c in ipairs(grp) do
    read(c)
    if c.used + math.max(c.amount, 1) > c.max then
      local r = retry(c)
      if r > wr then worst, wr = c, r end
    end
  end
  return worst, wr
end

local bad, br = fits(groups[1])
if bad then return {0, bad.idx, br, now} end
local chosen = 0
if ngroups > 1 then
  local best, bestr = nil, -1
  for g = 2, ngroups do
    local b, r = fits(groups[g])
    if not b then chosen = g; break end
    if bestr < 0 or r < bestr then best, bestr = b, r end
  end
  if chosen == 0 then return {0, best.idx, bestr, now} end
end

local out = {1, math.max(chosen - 1, 0), now}
for i = 1, #checks do
  out[#out + 1] = -1
  out[#out + 1] = -1
end
local function apply(grp)
  for _, c in ipairs(grp) do
    local rem, reset
    if c.kind == 'c' then
      redis.call('ZADD', c.key, now + lease, member)
      redis.call('PEXPIRE', c.key, lease)
      rem, reset = c.max - c.used - 1, 0
    else
      if c.amount ~= 0 then
        redis.call('HINCRBY', c.key, c.cur, c.amount)
        redis.call('PEXPIRE', c.key, c.window + math.ceil(c.width))
      end
      rem = c.max - c.used - c.amount
      local first = c.cur
      if #c.buckets > 0 then first = c.buckets[1][1] end
      reset = (first + 61) * c.width - now
    end
    out[3 + 2 * c.idx - 1] = rem
    out[3 + 2 * c.idx] = math.floor(reset)
  end
end
apply(groups[1])
if chosen > 0 then apply(groups[chosen]) end
return out
`)

// settleScript applies the difference between a reservation's estimate
// and the real usage to the sub-bucket the reservation was counted in (if
// it is still in its window), and frees the request's concurrency slots.
// KEYS: one per reserved check. ARGV: member, the reservation's server
// ms, then per key: kind, window ms, difference.
var settleScript = redis.NewScript(`
local member = ARGV[1]
local at = tonumber(ARGV[2])
local a = 3
for i = 1, #KEYS do
  local kind, window, diff = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  if kind == 'c' then
    redis.call('ZREM', KEYS[i], member)
  elseif diff ~= 0 then
    local b = math.floor(at / (window / 60))
    if redis.call('HEXISTS', KEYS[i], b) == 1 then
      redis.call('HINCRBY', KEYS[i], b, diff)
    end
  end
end
return 1
`)

// reserveRedis runs the reserve script for p.
func (l *Limiter) reserveRedis(ctx context.Context, id string, p *plan, o *outcome) error {
	keys := make([]string, len(p.checks))
	args := make([]any, 0, 3+len(p.groups)+4*len(p.checks))
	args = append(args, id, l.opts.Lease.Milliseconds(), len(p.groups))
	i := 0
	for _, n := range p.groups {
		args = append(args, n)
		for _, c := range p.checks[i : i+n] {
			keys[i] = c.key
			kind := "w"
			if !c.limit.Kind.Windowed() {
				kind = "c"
			}
			args = append(args, kind, c.max, c.amount, c.limit.Window.Milliseconds())
			i++
		}
	}
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	res, err := reserveScript.Run(ctx, l.rdb, keys, args...).Int64Slice()
	if err != nil {
		return fmt.Errorf("ratelimit: reserve: %w", err)
	}
	if len(res) < 4 {
		return fmt.Errorf("ratelimit: reserve: unexpected answer %v", res)
	}
	if res[0] == 0 {
		if res[1] < 1 || int(res[1]) > len(p.checks) {
			return fmt.Errorf("ratelimit: reserve: unexpected answer %v", res)
		}
		*o = outcome{fail: int(res[1]) - 1, retry: res[2], nowMs: res[3]}
		return nil
	}
	if len(res) != 3+2*len(p.checks) {
		return fmt.Errorf("ratelimit: reserve: unexpected answer length %d", len(res))
	}
	*o = outcome{ok: true, chosen: int(res[1]), nowMs: res[2], rem: o.rem[:0], reset: o.reset[:0]}
	for j := range p.checks {
		o.rem = append(o.rem, res[3+2*j])
		o.reset = append(o.reset, res[4+2*j])
	}
	return nil
}

// settleRedis runs the settle script for r.
func (l *Limiter) settleRedis(ctx context.Context, r *Reservation, actual Usage) error {
	keys := make([]string, len(r.checks))
	args := make([]any, 0, 2+3*len(r.checks))
	args = append(args, r.id, r.nowMs)
	for i, c := range r.checks {
		keys[i] = c.key
		kind := "w"
		if !c.limit.Kind.Windowed() {
			kind = "c"
		}
		args = append(args, kind, c.limit.Window.Milliseconds(), actual.settleAmount(c.limit.Kind)-r.est.settleAmount(c.limit.Kind))
	}
	// The request may have ended because its context was cancelled (the
	// client went away): settle anyway, within the deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.Timeout)
	defer cancel()
	if err := settleScript.Run(ctx, l.rdb, keys, args...).Err(); err != nil {
		return fmt.Errorf("ratelimit: settle: %w", err)
	}
	return nil
}
