"""Compressed L2 bodies: zstd where this process has it, zlib where it does not; bounded inflation.

zstd comes from the standard library's ``compression.zstd`` (Python 3.14+) or the
``backports.zstd`` package before it (``pip install tiercache[zstd]``); without either, values
are compressed with zlib, which every Python has. The envelope's flags say which was used, so
every reader knows; a reader without zstd reads a zstd body as a miss (it cannot decode it).

Inflating is where a small payload could cost us dearly (a few KB that inflate to gigabytes), so
it never produces more than the caller's limit plus one byte, and a zstd frame may not ask for a
window (the memory it decodes with) larger than that limit needs.
"""

from __future__ import annotations

import zlib
from types import ModuleType
from typing import Any, Final

from tiercache._l2.codec import DecodeError
from tiercache._l2.envelope import ZLIB, ZSTD

__all__ = ["compress", "has_zstd", "inflate"]

_zstd: ModuleType | None
try:  # pragma: no cover - which one exists depends on the Python
    from compression import zstd as _zstd  # type: ignore[import-not-found,no-redef,unused-ignore]
except ImportError:  # pragma: no cover
    try:
        from backports import zstd as _zstd  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:
        _zstd = None

_ZSTD_LEVEL: Final = 3  # zstd's default: ~10 µs for 1 KB, 150 µs for 60 KB, ratios 2.6-5.5x
_ZLIB_LEVEL: Final = 1  # zlib's fastest: its default (6) costs 3x the time for 5% fewer bytes


def has_zstd() -> bool:
    """Whether this process compresses (and can inflate) with zstd."""
    return _zstd is not None


def compress(body: bytes) -> tuple[int, bytes] | None:
    """Return ``(flag, compressed body)``, or None when compressing would not make it shorter."""
    if _zstd is not None:
        flag, packed = ZSTD, _zstd.compress(body, level=_ZSTD_LEVEL)
    else:
        flag, packed = ZLIB, zlib.compress(body, _ZLIB_LEVEL)
    return (flag, packed) if len(packed) < len(body) else None


def inflate(flag: int, data: bytes | memoryview, limit: int) -> bytes:
    """Return the body ``data`` compressed; raise DecodeError past ``limit`` bytes or if damaged."""
    inflater = _inflater(flag, limit)
    try:
        body: bytes = inflater.decompress(data, limit + 1)
    except Exception as exc:  # zlib.error, ZstdError: damaged, or asks for too large a window
        raise DecodeError(f"compressed body that does not inflate: {exc}") from None
    if len(body) > limit:
        raise DecodeError(f"compressed body inflating past {limit} bytes (max_value_bytes)")
    if not inflater.eof or inflater.unused_data:
        raise DecodeError("compressed body truncated, or followed by other bytes")
    return body


def _inflater(flag: int, limit: int) -> Any:
    """Return a new decompressor for ``flag`` (each kind has decompress, eof, unused_data)."""
    if flag == ZLIB:
        return zlib.decompressobj()
    if flag != ZSTD:
        raise DecodeError(f"unknown compression flags {flag}")
    if _zstd is None:
        raise DecodeError("a zstd-compressed body, and no zstd here (pip install tiercache[zstd])")
    window_log = min(max(limit.bit_length(), 10), 31)  # zstd's own bounds on the parameter
    return _zstd.ZstdDecompressor(options={_zstd.DecompressionParameter.window_log_max: window_log})
