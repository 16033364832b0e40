"""``python -m harness``: the ``harness`` command, for a virtual environment that is not activated."""

import sys

from harness.cli import main

sys.exit(main())
