/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* shared_script.c — see shared_script.h. */
#include "shared_script.h"

/* A request of cost n is n members of the window's set, all scored alike, as limiter.c's ring
 * holds n entries: its base member "SEQ" (cost 1) or "SEQxN", and "SEQxN.2" to "SEQxN.N". The
 * base names the request everywhere else (the pending and unanswered sets, shared.c), so a script
 * finds all of a request's units from it, and a cost-1 request's one member is named as before
 * costs existed. Inline code, not Lua functions: a function is a closure made on every call, and
 * a cost-1 request must cost Redis what it did before costs (bench/SHARED.md). The scripts that
 * splice these macros into their text are kept out of clang-format, which would scatter them. */
/* Lua that sets the local VAR to the units of base member MEMBER */
#define SHARED_SCRIPT_UNITS_OF(var, member)                                                        \
    "local " var ", x_ = 1, string.find(" member ", 'x', 1, true)\n"                               \
    "if x_ then " var " = tonumber(string.sub(" member ", x_ + 1)) end\n"
/* Lua that adds the N units of MEMBER to sorted set Z at SCORE (FLAGS "'XX', 'GT', ": moves
 * them later): one plain ZADD for one unit, else one ZADD per 1000 units (Lua's unpack has a
 * stack limit of a few thousand values) */
#define SHARED_SCRIPT_ADD_UNITS(z, flags, score, member, n)                                        \
    "if " n " == 1 then redis.call('ZADD', " z ", " flags score ", " member ")\n"                  \
    "else for first = 1, " n ", 1000 do\n"                                                         \
    "  local args = {" flags "}\n"                                                                 \
    "  for u = first, math.min(" n ", first + 999) do\n"                                           \
    "    args[#args + 1] = " score "\n"                                                            \
    "    args[#args + 1] = u == 1 and " member " or " member " .. '.' .. u\n"                      \
    "  end\n"                                                                                      \
    "  redis.call('ZADD', " z ", unpack(args))\n"                                                  \
    "end end\n"
/* Moves all units of MEMBER in Z to SCORE, never earlier, leaving out units no longer there */
#define SHARED_SCRIPT_MOVE_UNITS(z, score, member)                                                 \
    SHARED_SCRIPT_UNITS_OF("n_", member)                                                           \
    SHARED_SCRIPT_ADD_UNITS(z, "'XX', 'GT', ", score, member, "n_")

/* One admission, atomically. The sorted set holds admission times (past admissions and future
 * reservations, scored in microseconds of Redis' own clock; departures move them later); the new
 * entry goes at the earliest time at which the last `limit` entries span a whole window — exactly
 * limiter.c's rule. Members whose request has not departed yet are also in the set KEYS[4]
 * (shared_depart takes them out): such a member never leaves the window (an instance that went
 * away leaves them behind: after ARGV[6] more microseconds they do), and the entry the new one
 * would follow, when it is one of them, departs no earlier than now. A key held for what its origin
 * said (shared_hold: a Retry-After, a spent quota) answers 3 (wait that long, then ask again) or 4
 * (refused) while the hold lasts. ARGV[7] 1 is a dry run (enforce: false): a request that would
 * reserve a slot answers 5 (it would be held that long) and takes no entry, so the window holds
 * only what enforcing would have let through; every other answer is the one enforcing would give.
 * KEYS[5..7] (learned, departed, unanswered; absent from instances that predate them) hold the
 * budget the origin's answers leave (it counts when ARGV[8] is 1: upstream_limits: follow), as a
 * ceiling on departures: the key may send while its
 * departures (KEYS[6]) plus its requests on their way (KEYS[4]) stay below it. Spent, it answers 3
 * or 4 until the announced reset (plus margin) as a hold does; past that reset it renews at the
 * announced limit (forgotten when none was announced) until the next reset: one quota period
 * later when the period is known (announced, or seen between two resets), else one window of the
 * rule later (a guess, marked so: an answer soon says when). O(1): a counter and two
 * cardinalities.
 * ARGV[9] is the request's cost n (absent: 1, from an instance older than costs): it is admitted
 * while count + n <= limit, else reserved when the (count + n - limit)th oldest unit leaves, and
 * remaining is in units, as limiter.c's decide_window. ARGV[10] 1 says the rule has costs (its
 * requests' units may differ): max_queue then counts held requests by their base members, not
 * future units, and the learned budget counts the units of the requests on their way, as
 * limiter.c's pending entries do (its departures count one a request there too); both walk a
 * list (held units, pending requests) instead of taking a cardinality, so a cost-1 rule keeps
 * the O(1) path. */
/* clang-format off */
const char shared_script_decide[] =
    "local z, seq, hold, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4]\n"
    "local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local delay, max_delay, max_queue = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local stale, dry = tonumber(ARGV[6]), tonumber(ARGV[7])\n"
    "local cost, costs = tonumber(ARGV[9] or '1'), ARGV[10] == '1'\n"
    "local held = redis.call('PTTL', hold)\n"
    "if held > 0 then\n"
    "  if delay == 1 and held * 1000 <= max_delay then return {3, held * 1000, 0, ''} end\n"
    "  return {4, held * 1000, 0, ''}\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local old = redis.call('ZRANGEBYSCORE', z, '-inf', now - window, 'WITHSCORES')\n"
    "for i = 1, #old, 2 do\n"
    "  local base, dot = old[i], string.find(old[i], '.', 1, true)\n"
    "  if dot then base = string.sub(base, 1, dot - 1) end\n"
    "  if redis.call('SISMEMBER', pending, base) == 0 then redis.call('ZREM', z, old[i])\n"
    "  elseif tonumber(old[i + 1]) < now - window - stale then\n"
    "    redis.call('ZREM', z, old[i])\n"
    "    redis.call('SREM', pending, base)\n"
    "  end\n"
    "end\n"
    "local learned, departed, unanswered = KEYS[5], KEYS[6], KEYS[7]\n"
    "if learned and ARGV[8] == '1' then\n"
    "  local l = redis.call('HMGET', learned, 'ceiling', 'until', 'limit', 'period', 'reset')\n"
    "  local ceiling, till = tonumber(l[1]), tonumber(l[2])\n"
    "  if till and now >= till then\n"
    "    local quota, period, reset = tonumber(l[3]), tonumber(l[4]), tonumber(l[5])\n"
    "    ceiling = nil\n"
    "    if quota then\n"
    "      local renewed, guessed = now + window, 1\n"
    "      if period and period > 0 then\n"
    "        renewed, guessed = reset + (math.floor((now - reset) / period) + 1) * period, 0\n"
    "      end\n"
    "      till = renewed + till - reset\n"
    "      ceiling = quota + tonumber(redis.call('GET', departed) or '0')\n"
    "      redis.call('HSET', learned, 'ceiling', ceiling, 'until', till, 'reset', renewed,\n"
    "                 'guessed', guessed)\n"
    "      local ttl = math.floor((till - now + (period or 0)) / 1000) + 1000\n"
    "      for _, k in ipairs({learned, departed, unanswered}) do\n"
    "        if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end\n"
    "      end\n"
    "    else redis.call('DEL', learned) end\n"
    "  end\n"
    "  local on_way = 0\n"
    "  if not ceiling then\n"
    "  elseif costs then\n"
    "    for _, p in ipairs(redis.call('SMEMBERS', pending)) do\n"
    "      local x = string.find(p, 'x', 1, true)\n"
    "      on_way = on_way + (x and tonumber(string.sub(p, x + 1)) or 1)\n"
    "    end\n"
    "  else on_way = redis.call('SCARD', pending) end\n"
    "  if ceiling and tonumber(redis.call('GET', departed) or '0') + on_way >= ceiling then\n"
    "    if delay == 1 and till - now <= max_delay then return {3, till - now, 0, ''} end\n"
    "    return {4, till - now, 0, ''}\n"
    "  end\n"
    "end\n"
    "local count = redis.call('ZCARD', z)\n"
    "local at, verdict = now, 1\n"
    "if count + cost > limit then\n"
    "  local room = limit - count\n"
    "  if room < 0 then room = 0 end\n"
    "  local last = count + cost - limit - 1\n"
    "  local e = redis.call('ZRANGE', z, last, last, 'WITHSCORES')\n"
    "  at = tonumber(e[2]) + window\n"
    "  if at <= now then at = now + window end\n"
    "  local queued = 0\n"
    "  if delay == 0 or at - now > max_delay then return {0, at - now, room, ''}\n"
    "  elseif costs then\n"
    "    for _, m in ipairs(redis.call('ZRANGEBYSCORE', z, '(' .. now, '+inf')) do\n"
    "      if not string.find(m, '.', 1, true) then queued = queued + 1 end\n"
    "    end\n"
    "  else queued = redis.call('ZCOUNT', z, '(' .. now, '+inf') end\n"
    "  if queued >= max_queue then return {0, at - now, room, ''}\n"
    "  elseif dry == 1 then return {5, at - now, room, ''}\n"
    "  else verdict = 2 end\n"
    "end\n"
    "local member = tostring(redis.call('INCR', seq))\n"
    "if cost > 1 then member = member .. 'x' .. cost end\n"
    SHARED_SCRIPT_ADD_UNITS("z", "", "at", "member", "cost")
    "redis.call('SADD', pending, member)\n"
    "local ttl = math.floor((window + max_delay) / 1000) + 1000\n"
    "redis.call('PEXPIRE', z, ttl)\n"
    "redis.call('PEXPIRE', seq, ttl)\n"
    "redis.call('PEXPIRE', pending, ttl)\n"
    "local left = limit - count - cost\n"
    "if left < 0 then left = 0 end\n"
    "return {verdict, at - now, left, member}\n";
/* clang-format on */

/* A reservation's time came: it may go when the entry `limit` places before its last unit in the
 * set has left the window (all of a request's units rank together, the base member first, so its
 * last is n - 1 past the base's rank). It is ranked at now when its reserved time has passed (its
 * timer fired late: a loaded machine, a busy loop), not at that stale score: it cannot depart
 * before now, so a member that departed in between (after the reserved time, before now) is ahead
 * of it in the window's final order. Ranked at its reserved time it would follow that member
 * instead, the entry `limit` places back would be one too early, and limit + 1 could go within one
 * window. That entry may have departed later than the time the reservation was computed from
 * (departures move members later): then the member moves to when it may go, and the caller waits
 * that long more. While that entry, or any entry scored at or below it, has not departed, the
 * caller asks again after ARGV[4] microseconds: such an entry moves later when it departs and may
 * overtake it, so the one `limit` places back would be a later one. A member gone from the set
 * goes. The pending set holds the key's requests in flight and held, so the loop is bounded by that
 * (max_queue and the in-flight requests), not by the window's size; a pending entry older than
 * ARGV[5] past its window is one an instance left behind, as in the decision script. */
/* clang-format off */
const char shared_script_ready[] =
    "local z, pending, member = KEYS[1], KEYS[2], ARGV[1]\n"
    "local limit, window = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    SHARED_SCRIPT_MOVE_UNITS("z", "now", "member")
    "local rank = redis.call('ZRANK', z, member)\n"
    "if not rank then return 0 end\n"
    "local last = rank + n_ - 1 - limit\n"
    "if last < 0 then return 0 end\n"
    "local e = redis.call('ZRANGE', z, last, last, 'WITHSCORES')\n"
    "local score, stale = tonumber(e[2]), now - window - tonumber(ARGV[5])\n"
    "for _, p in ipairs(redis.call('SMEMBERS', pending)) do\n"
    "  local s = tonumber(redis.call('ZSCORE', z, p))\n"
    "  if s and p ~= member and s <= score and s >= stale then return tonumber(ARGV[4]) end\n"
    "end\n"
    "local free = score + window\n"
    "if free <= now then return 0 end\n"
    SHARED_SCRIPT_ADD_UNITS("z", "'XX', 'GT', ", "free", "member", "n_")
    "return free - now\n";
/* clang-format on */

/* XX: a member the window dropped meanwhile stays dropped; GT: never earlier (a reservation's
 * time may be later than its request's departure by the timer's slack). */
/* clang-format off */
const char shared_script_depart[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    SHARED_SCRIPT_MOVE_UNITS("KEYS[1]", "now", "ARGV[1]")
    "redis.call('SREM', KEYS[2], ARGV[1])\n"
    "return 1\n";
/* clang-format on */

/* Extends a hold, never shortens one. */
const char shared_script_hold[] =
    "local ms = tonumber(ARGV[1])\n"
    "if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end\n"
    "return 1\n";

/* The departure of a request whose rule follows the origin's limits: as shared_script_depart, and
 * it takes the key's next departure number and is unanswered until shared_script_learn hears of
 * it. Counted even when the member left the pending set meanwhile (taken for stale): it reaches
 * the origin all the same. The counter and the unanswered set live at least as long as the
 * window's set, and as long as a learned budget that counts on them (shared_script_learn extends
 * them). ARGV[2]: how many departures back an unanswered member is taken as lost. */
/* clang-format off */
const char shared_script_depart_learn[] =
    "local z, pending, departed, unanswered = KEYS[1], KEYS[2], KEYS[3], KEYS[4]\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    SHARED_SCRIPT_MOVE_UNITS("z", "now", "ARGV[1]")
    "redis.call('SREM', pending, ARGV[1])\n"
    "local d = redis.call('INCR', departed)\n"
    "redis.call('ZADD', unanswered, d, ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', unanswered, '-inf', '(' .. (d - tonumber(ARGV[2])))\n"
    "local ttl = redis.call('PTTL', z)\n"
    "if ttl < 1000000 then ttl = 1000000 end\n"
    "for _, k in ipairs({departed, unanswered}) do\n"
    "  if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end\n"
    "end\n"
    "return d\n";
/* clang-format on */

/* An answer to the departed request ARGV[1] (once per departure; ARGV[2] -1 when it said nothing:
 * it is only answered). What it says is the origin's count as of that request: the budget left is
 * its remaining less the departures after it, less those before it not answered yet (the origin
 * may count them after it: answers overtake each other), less the requests on their way. Kept as a
 * ceiling on departures + requests on their way, ceiling = remaining - earlier unanswered + its
 * departure number, so that each admission spends one without a write. A quota window is known by
 * its reset (Redis' clock, within ARGV[7] µs): for the same window the lower ceiling stays (the
 * lowest count is the latest, whichever answer came last) and the later reset; a later window
 * replaces it; an answer about an earlier window says nothing. A reset guessed at a renewal (no
 * period known) gives way to the one an answer says, keeping the lower ceiling. A remaining
 * without a reset is not learned (a shared budget needs an end every instance agrees on). ARGV:
 * member, remaining, reset_us, limit, period_us (-1 when not said), margin_us, slack_us.
 * O(log of unanswered). */
const char shared_script_learn[] =
    "local learned, departed, unanswered = KEYS[1], KEYS[2], KEYS[3]\n"
    "local d = tonumber(redis.call('ZSCORE', unanswered, ARGV[1]))\n"
    "if not d then return 0 end\n"
    "redis.call('ZREM', unanswered, ARGV[1])\n"
    "local remaining, reset = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "if remaining < 0 or reset < 0 then return 0 end\n"
    "local quota, period = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local margin, slack = tonumber(ARGV[6]), tonumber(ARGV[7])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local at = now + reset\n"
    "local ceiling = remaining - redis.call('ZCOUNT', unanswered, '-inf', '(' .. d) + d\n"
    "local l = redis.call('HMGET', learned, 'ceiling', 'reset', 'period', 'guessed')\n"
    "local known, known_period = tonumber(l[2]), tonumber(l[3]) or 0\n"
    "if period <= 0 then period = known_period end\n"
    "if known and l[4] == '1' then\n"
    "  if ceiling > tonumber(l[1]) then ceiling = tonumber(l[1]) end\n"
    "  redis.call('HSET', learned, 'ceiling', ceiling, 'reset', at, 'until', at + margin,\n"
    "             'guessed', 0)\n"
    "elseif known and at + slack > known and at < known + slack then\n"
    "  if ceiling < tonumber(l[1]) then redis.call('HSET', learned, 'ceiling', ceiling) end\n"
    "  if at > known then redis.call('HSET', learned, 'reset', at, 'until', at + margin) end\n"
    "elseif not known or at > known then\n"
    "  if tonumber(ARGV[5]) <= 0 and known then period = at - known end\n"
    "  redis.call('HSET', learned, 'ceiling', ceiling, 'reset', at, 'until', at + margin,\n"
    "             'guessed', 0)\n"
    "else\n"
    "  return 0\n"
    "end\n"
    "redis.call('HSET', learned, 'period', period)\n"
    "if quota > 0 then redis.call('HSET', learned, 'limit', quota) end\n"
    "local till = tonumber(redis.call('HGET', learned, 'until'))\n"
    "local ttl = math.floor((till - now + period) / 1000) + 1000\n"
    "for _, k in ipairs({learned, departed, unanswered}) do\n"
    "  if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end\n"
    "end\n"
    "return 1\n";

/* Gives back the reservation of a request of cost n > 1 (shared.c sends a cost-1 one as a plain
 * ZREM and SREM): all of its units, and its place in the pending set. */
const char shared_script_release[] =
    "local z, member = KEYS[1], ARGV[1]\n"
    "local n = tonumber(string.sub(member, string.find(member, 'x', 1, true) + 1))\n"
    "for first = 1, n, 1000 do\n"
    "  local args = {}\n"
    "  for u = first, math.min(n, first + 999) do args[#args + 1] = u == 1 and member or member .. "
    "'.' .. u end\n"
    "  redis.call('ZREM', z, unpack(args))\n"
    "end\n"
    "redis.call('SREM', KEYS[2], member)\n"
    "return 1\n";
