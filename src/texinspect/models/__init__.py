"""The model families (one folder each: network, losses, trainer, config) and what they share.

Shared here: the :class:`~texinspect.models.base.Detector` contract, the saved artifact
(``artifact.py``), common blocks, and the family registry (``registry.py``, re-exported below).
"""

from __future__ import annotations

from texinspect.models.registry import (
    FAMILIES,
    FamilySpec,
    discover,
    family_module,
    family_spec,
    register,
    register_family,
)

__all__ = ["FAMILIES", "FamilySpec", "discover", "family_module", "family_spec", "register", "register_family"]
