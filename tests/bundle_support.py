"""Helpers shared by the bundle tests."""

from __future__ import annotations


def error_messages(error: BaseException | None) -> str:
    """The messages of an exception and of every exception it was raised from (MONAI wraps config errors)."""
    parts = []
    while error is not None:
        parts.append(f"{type(error).__name__}: {error}")
        error = error.__cause__
    return " | ".join(parts)
