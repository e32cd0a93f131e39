"""Coverage-guided fuzzing of what tiercache reads from Redis (optional; needs ``atheris``).

Run for as long as you like (not part of the test suite; hypothesis covers the same ground there)::

    python -m pip install atheris && python tests/fuzz/fuzz_codec.py -max_total_time=600

Any exception other than our own decode error, and any crash, is a finding.
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-not-found]

with atheris.instrument_imports():
    from tiercache._l2.codec import DecodeError, decode_value
    from tiercache._l2.envelope import open_envelope


def one_input(data: bytes) -> None:
    """Decode ``data`` as a bare value and as an envelope: only DecodeError may come out."""
    for read in (decode_value, open_envelope):
        try:
            read(data)
        except DecodeError:
            pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
