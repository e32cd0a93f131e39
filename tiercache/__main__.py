"""``python -m tiercache``: the command-line entry point."""

from __future__ import annotations

import argparse
import sys

from . import _demo


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; return its exit code."""
    parser = argparse.ArgumentParser(prog="tiercache", description="Two-tier (L1 + Redis) memoization.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="cache two slow lookups and print their stats")
    demo.add_argument("--requests", type=int, default=2000, help="number of simulated requests")
    args = parser.parse_args(argv)
    return _demo.main(args.requests)


if __name__ == "__main__":
    sys.exit(main())
