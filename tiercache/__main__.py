"""``python -m tiercache``: the same command line as the ``tiercache`` script."""

from __future__ import annotations

import sys

from tiercache._tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
