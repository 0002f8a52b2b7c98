"""``python -m texinspect.serving serve --model ...``: the serving commands without the full CLI."""

import sys

from texinspect.serving.cli import main

sys.exit(main())
