"""Import kserve without letting it read our command line.

``kserve.model_server`` runs ``argparse.parse_known_args()`` on ``sys.argv`` at import time, and
argparse's prefix matching would read e.g. ``texinspect serve --model x`` as ``--model_name x``.
Every serving module imports kserve through :func:`import_kserve`, which hides ``sys.argv``.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType

_lock = threading.Lock()


def import_kserve() -> ModuleType:
    with _lock:
        if "kserve.model_server" in sys.modules:
            import kserve

            return kserve
        saved = sys.argv
        sys.argv = saved[:1] if saved else ["texinspect"]
        try:
            import kserve
            import kserve.model_server  # noqa: F401  (the module that parses argv)
        finally:
            sys.argv = saved
        return kserve
