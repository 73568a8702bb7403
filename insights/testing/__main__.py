"""``python -m insights.testing``: the same as ``python -m insights.testing.server``."""

from __future__ import annotations

import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main())
