"""The Lua the stores run: conditional writes, generation raises, lock release."""

from __future__ import annotations

from tiercache._l2.envelope import (
    ABSENT,
    FOREIGN_TOKEN,
    LEAD,
    MAX_GENERATION,
    TOKEN_OFFSET,
    TOKEN_SIZE,
)

__all__ = ["RAISE_GENERATION", "RELEASE_LOCK", "SWAP_IF_EQUAL", "WRITE_IF_UNCHANGED"]

# Delete the lock only if it still holds our token: never release another holder's lock.
RELEASE_LOCK = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
)


def _lua_bytes(raw: bytes) -> str:
    """Return ``raw`` as the inside of a Lua string literal (decimal escapes: NULs and all)."""
    return "".join(f"\\{byte}" for byte in raw)


# The conditional write (see envelope): store ARGV[2] for ARGV[3] ms only if the key's token is
# still ARGV[1], the one its writer read before computing. Absent reads as ABSENT; bytes that
# are not ours, or a key of another type, as FOREIGN_TOKEN, so garbage is still overwritten.
# (Where the writer read nothing, SET NX GET does the same at a plain SET's cost: see write().)
# Only the head is read (GETRANGE): a value planted far past any bound is not copied whole.
WRITE_IF_UNCHANGED = f"""
local head = redis.pcall('GETRANGE', KEYS[1], 0, {TOKEN_OFFSET + TOKEN_SIZE - 1})
local token = '{_lua_bytes(ABSENT)}'
if type(head) == 'table' then
  token = '{FOREIGN_TOKEN.decode()}'
elseif head ~= '' or redis.call('EXISTS', KEYS[1]) == 1 then
  local ours = string.sub(head, 1, {len(LEAD)}) == '{_lua_bytes(LEAD)}'
  if ours and #head >= {TOKEN_OFFSET + TOKEN_SIZE} then
    token = string.sub(head, {TOKEN_OFFSET + 1}, {TOKEN_OFFSET + TOKEN_SIZE})
  else
    token = '{FOREIGN_TOKEN.decode()}'
  end
end
if token ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# Compare-and-swap: store ARGV[2] for ARGV[3] ms only if the key holds exactly ARGV[1] (empty: it
# holds nothing). A key of another type reads as nothing, as MGET reads it, so it is overwritten.
# With ARGV[4], the key held a string too long to read (see replies.Oversized): it must still be
# ARGV[4] bytes long and start with ARGV[1], and is never copied whole.
SWAP_IF_EQUAL = """
local current
if ARGV[4] then
  if redis.pcall('STRLEN', KEYS[1]) ~= tonumber(ARGV[4]) then return 0 end
  current = redis.call('GETRANGE', KEYS[1], 0, #ARGV[1] - 1)
else
  current = redis.pcall('GET', KEYS[1])
  if type(current) ~= 'string' then current = '' end
end
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# Generations only go up: the new one is max(what Redis holds, ARGV[1]) + ARGV[2]. ARGV[1] is the
# highest this process has seen, so a Redis that lost the key (a restart, a failover) or had an
# old value planted back cannot take anyone back to entries written before a clear. Anything
# but a short decimal number reads as 0, as in ``envelope.generation_from`` (a long one is not
# copied to find out); none goes past MAX_GENERATION, and once there it stays (no value is
# served in it: see envelope). Returns the new generation and whether Redis held another one.
RAISE_GENERATION = f"""
local current = false
local length = redis.pcall('STRLEN', KEYS[1])
if type(length) == 'number' and length <= 20 then current = redis.call('GET', KEYS[1]) end
local n = 0
if type(current) == 'string' and string.match(current, '^%d+$') then
  n = tonumber(current)
  if n >= {MAX_GENERATION} then return {{{MAX_GENERATION}, 0}} end
end
local floor = tonumber(ARGV[1])
if floor > n then n = floor end
n = math.min(n + tonumber(ARGV[2]), {MAX_GENERATION})
local text = string.format('%d', n)
if text == current then return {{n, 0}} end
redis.call('SET', KEYS[1], text)
return {{n, 1}}
"""
