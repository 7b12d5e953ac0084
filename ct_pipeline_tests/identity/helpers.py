"""Test helpers for identity tests: masking so assertion messages never show a whole identity."""

from __future__ import annotations

VISIBLE_TAIL = 4


def mask(value: str | None) -> str:
    """Hide all but the first three and last four characters: '+91******3210'."""
    if value is None:
        return "None"
    if len(value) <= VISIBLE_TAIL + 3:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 3 - VISIBLE_TAIL) + value[-VISIBLE_TAIL:]
