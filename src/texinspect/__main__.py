"""``python -m texinspect`` is the same as the ``texinspect`` command."""

import sys

from texinspect.cli import main

sys.exit(main())
