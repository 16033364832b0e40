"""A helper a flow imports by name (``from tests.function_helpers import digest``): a function target is patched
here, where it is defined, and in the flow's module, where the name was copied."""

from __future__ import annotations


def digest(text: str) -> str:
    return text[::-1]
