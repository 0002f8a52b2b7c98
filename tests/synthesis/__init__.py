"""Tests of texinspect.synthesis (a package so the helpers in conftest can be imported)."""
