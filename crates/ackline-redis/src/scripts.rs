//! The Lua scripts that make each multi-step change of the backend one atomic step on Redis.
//!
//! Redis runs a script alone (no other command interleaves) and writes its effects to the AOF as
//! one `MULTI`/`EXEC` block, which Redis replays all or nothing after a crash (a torn block at the
//! end of the AOF is dropped). So every move below is complete or absent: a worker or Redis dying
//! between its steps cannot lose a message nor leave two copies.
//!
//! Fencing: every script that settles a delivery first checks, in the group's pending entries
//! list (PEL), that the entry is still owned by the settling consumer AND has the delivery count
//! the delivery was made with (`XPENDING q g id id 1`): a delivery reclaimed by another consumer
//! (the count grew) or already settled (not pending) is answered without touching it. The
//! answers are per item: `0` done, `-1` not pending (settled or deleted), `n > 0` the current
//! delivery count (someone else's delivery now).
//!
//! Entry fields (see `entry.rs`): `id`, `enqueued_at`, `headers`, `attempts` (deliveries that
//! ended before this copy was made), `first_failure`, `last_error`, `payload` (last);
//! dead letters add `last_failure` and `reason`. Fields of other producers pass through copies
//! untouched.

use std::sync::LazyLock;

use redis::Script;

/// Helpers shared by the scripts.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function ms(x) return string.format('%d', x) end
local function get(f, k)
  for j = 1, #f, 2 do if f[j] == k then return f[j + 1] end end
  return nil
end
local function push(t, k, v) t[#t + 1] = k; t[#t + 1] = v end
-- The entry's fields without the `drop`ped names and without its payload (returned aside),
-- with `id` and `enqueued_at` made explicit (another producer's entry has neither).
local function base(f, eid, drop)
  local out, payload, has_id, has_t = {}, nil, false, false
  for j = 1, #f, 2 do
    local k = f[j]
    if k == 'payload' then payload = f[j + 1]
    elseif not drop[k] then
      push(out, k, f[j + 1])
      if k == 'id' then has_id = true elseif k == 'enqueued_at' then has_t = true end
    end
  end
  if not has_id then push(out, 'id', 'redis-' .. eid) end
  if not has_t then push(out, 'enqueued_at', string.match(eid, '^(%d+)')) end
  return out, payload
end
local MOVE_DROP = {attempts = true, first_failure = true, last_error = true}
local DEAD_DROP = {attempts = true, first_failure = true, last_error = true,
                   last_failure = true, reason = true}
local function dead(dlq, f, eid, attempts, reason, last_error, now)
  local out, payload = base(f, eid, DEAD_DROP)
  push(out, 'attempts', tostring(attempts))
  push(out, 'first_failure', get(f, 'first_failure') or ms(now))
  push(out, 'last_failure', ms(now))
  push(out, 'reason', reason)
  push(out, 'last_error', last_error)
  if payload then push(out, 'payload', payload) end
  redis.call('XADD', dlq, '*', unpack(out))
end
-- {owner, count} of a pending entry, or nil.
local function pending(q, g, id)
  local p = redis.call('XPENDING', q, g, id, id, 1)[1]
  if p then return p[2], p[4] end
  return nil, nil
end
"#;

/// Acks: `XACK` + `XDEL` of each fenced entry. This consumer's pending entries between the
/// lowest and highest id acked are read with one `XPENDING ... <consumer>` (it holds at most
/// `limit`); only an entry missing there (settled, or taken over by another consumer) is looked
/// up alone.
/// KEYS: stream. ARGV: group, consumer, lowest id, highest id, limit, then (entry id,
/// delivery count) pairs.
const ACK: &str = r#"
local q, g, me = KEYS[1], ARGV[1], ARGV[2]
local mine = {}
for _, p in ipairs(redis.call('XPENDING', q, g, ARGV[3], ARGV[4], ARGV[5], me)) do
  mine[p[1]] = p[4]
end
local out, acks = {}, {}
for i = 6, #ARGV, 2 do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  local count = mine[id]
  if count == n then
    out[#out + 1] = 0; acks[#acks + 1] = id
  else
    local owner, c = pending(q, g, id)
    if not owner then out[#out + 1] = -1
    elseif owner ~= me or c ~= n then out[#out + 1] = c
    else out[#out + 1] = 0; acks[#acks + 1] = id end
  end
end
for s = 1, #acks, 500 do
  local e = math.min(s + 499, #acks)
  redis.call('XACK', q, g, unpack(acks, s, e))
  redis.call('XDEL', q, unpack(acks, s, e))
end
return out
"#;

/// Everything but acks, per item: `x` extend (`XCLAIM ... JUSTID`: idle time reset, delivery
/// count kept), `n` nack (a copy with `attempts` = this attempt to the delay set, or straight
/// to the stream for a zero delay; dead-lettered instead at `max_attempts`), `r` reject (to
/// the dead-letter stream), `l` release (lease expired, consumer closed, settlement lost: a
/// copy to the stream, or the dead-letter stream at `max_attempts`). Each move ends with
/// `XACK` + `XDEL` of the original.
/// KEYS: stream, dead-letter stream, delay set. ARGV: group, consumer, max_attempts, the
/// max-attempts reason, then (entry id, delivery count, kind, delay ms, text) tuples.
const MOVE: &str = r#"
local q, dlq, delay = KEYS[1], KEYS[2], KEYS[3]
local g, me, max, max_reason = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = now_ms()
local out = {}
for i = 5, #ARGV, 5 do
  local id, n, kind = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local d, text = tonumber(ARGV[i + 3]), ARGV[i + 4]
  local owner, count = pending(q, g, id)
  if not owner then out[#out + 1] = -1
  elseif owner ~= me or count ~= n then out[#out + 1] = count
  elseif kind == 'x' then
    redis.call('XCLAIM', q, g, me, 0, id, 'JUSTID')
    out[#out + 1] = 0
  else
    local e = redis.call('XRANGE', q, id, id)[1]
    if not e then
      redis.call('XACK', q, g, id)
      out[#out + 1] = -1
    else
      local f = e[2]
      local attempt = (tonumber(get(f, 'attempts')) or 0) + n
      if kind == 'r' then
        dead(dlq, f, id, attempt, text, get(f, 'last_error') or text, now)
      else
        local err = text
        if kind == 'l' then err = get(f, 'last_error') or text end
        if attempt >= max then
          dead(dlq, f, id, attempt, max_reason, err, now)
        else
          local c, payload = base(f, id, MOVE_DROP)
          push(c, 'attempts', tostring(attempt))
          local ff = get(f, 'first_failure')
          if kind == 'n' and not ff then ff = ms(now) end
          if ff then push(c, 'first_failure', ff) end
          if err ~= '' and (kind == 'n' or get(f, 'last_error')) then push(c, 'last_error', err) end
          if payload then push(c, 'payload', payload) end
          if d > 0 then
            table.insert(c, 1, id)
            redis.call('ZADD', delay, ms(now + d), cmsgpack.pack(c))
          else
            redis.call('XADD', q, '*', unpack(c))
          end
        end
      end
      redis.call('XACK', q, g, id)
      redis.call('XDEL', q, id)
      out[#out + 1] = 0
    end
  end
end
return out
"#;

/// Claims entries for this consumer: `auto` = `XAUTOCLAIM` of entries idle at least `min idle`
/// (a dead or slow consumer's), `ids` = `XCLAIM` of the given ids (this consumer's own
/// entries whose delivery was lost with a connection). Both increment the delivery count. An
/// entry whose attempt would pass `max_attempts` is dead-lettered here instead.
/// KEYS: stream, dead-letter stream. ARGV: group, consumer, min idle ms, count, max_attempts,
/// max-attempts reason, the error of an unsettled delivery, mode (`auto`|`ids`), then the
/// cursor (`auto`) or the ids (`ids`). Returns {next cursor, {id, count, fields}...}.
const RECLAIM: &str = r#"
local q, dlq = KEYS[1], KEYS[2]
local g, me, idle, count = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max, max_reason, unsettled, mode = tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8]
local now = now_ms()
local entries, cursor
if mode == 'auto' then
  local r = redis.call('XAUTOCLAIM', q, g, me, idle, ARGV[9], 'COUNT', count)
  cursor, entries = r[1], r[2]
else
  cursor = '0-0'
  entries = redis.call('XCLAIM', q, g, me, idle, unpack(ARGV, 9))
end
local out = {cursor}
for _, e in ipairs(entries) do
  if e and e[2] then
    local id, f = e[1], e[2]
    local _, n = pending(q, g, id)
    n = n or 1
    local attempt = (tonumber(get(f, 'attempts')) or 0) + n
    if attempt > max then
      dead(dlq, f, id, attempt - 1, max_reason, get(f, 'last_error') or unsettled, now)
      redis.call('XACK', q, g, id)
      redis.call('XDEL', q, id)
    else
      out[#out + 1] = {id, n, f}
    end
  end
end
return out
"#;

/// Moves delayed copies that are due back into the stream (`XADD` + `ZREM`, one step).
/// KEYS: stream, delay set. ARGV: most to move.
const PROMOTE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ms(now_ms()), 'LIMIT', 0, ARGV[1])
for _, m in ipairs(due) do
  local c = cmsgpack.unpack(m)
  redis.call('XADD', KEYS[1], '*', unpack(c, 2))
  redis.call('ZREM', KEYS[2], m)
end
return #due
"#;

/// Replays dead letters: a copy without the failure fields (attempts reset) to the stream and
/// `XDEL` of the dead letter, one step per entry; entries already gone are skipped.
/// KEYS: stream, dead-letter stream. ARGV: dead-letter entry ids. Returns how many moved.
const REPLAY: &str = r#"
local n = 0
for i = 1, #ARGV do
  local e = redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i])[1]
  if e then
    local c, payload = base(e[2], ARGV[i], DEAD_DROP)
    if payload then push(c, 'payload', payload) end
    redis.call('XADD', KEYS[1], '*', unpack(c))
    redis.call('XDEL', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
"#;

/// Publishes a batch only if the queue's memory (Redis' `MEMORY USAGE` estimate of the stream
/// and the delay set) plus the batch stays within the limit.
/// KEYS: stream, delay set. ARGV: max bytes, batch bytes, then per message its field count and
/// fields. Returns {0 | -1 (refused), bytes used before}.
const PUBLISH_BOUNDED: &str = r#"
local used = (redis.call('MEMORY', 'USAGE', KEYS[1]) or 0)
  + (redis.call('MEMORY', 'USAGE', KEYS[2]) or 0)
if used + tonumber(ARGV[2]) > tonumber(ARGV[1]) then return {-1, used} end
local i = 3
while i <= #ARGV do
  local k = tonumber(ARGV[i])
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + k))
  i = i + k + 1
end
return {0, used}
"#;

/// Removes this consumer from the group if it holds nothing (`XGROUP DELCONSUMER` would make
/// its pending entries unclaimable), and other consumers that hold nothing and were idle
/// longer than the given time (those of killed processes, once their entries were reclaimed).
/// KEYS: stream. ARGV: group, consumer, whether to remove it (`1`/`0`), idle ms.
const FORGET: &str = r#"
local q, g, me = KEYS[1], ARGV[1], ARGV[2]
local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', q, g)) do
  local name, held, idle
  for j = 1, #c, 2 do
    if c[j] == 'name' then name = c[j + 1]
    elseif c[j] == 'pending' then held = c[j + 1]
    elseif c[j] == 'idle' then idle = c[j + 1] end
  end
  local old = idle and idle > tonumber(ARGV[4])
  if held == 0 and ((name == me and ARGV[3] == '1') or (name ~= me and old)) then
    redis.call('XGROUP', 'DELCONSUMER', q, g, name)
    n = n + 1
  end
end
return n
"#;

/// The scripts, each compiled once (`Script` keeps the SHA1; redis-rs loads a script again when
/// Redis answers `NOSCRIPT`, e.g. after a restart).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub ack: Script,
    pub moves: Script,
    pub reclaim: Script,
    pub promote: Script,
    pub replay: Script,
    pub publish_bounded: Script,
    pub forget: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let s = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
    Scripts {
        ack: s(ACK),
        moves: s(MOVE),
        reclaim: s(RECLAIM),
        promote: s(PROMOTE),
        replay: s(REPLAY),
        publish_bounded: s(PUBLISH_BOUNDED),
        forget: s(FORGET),
    }
});
