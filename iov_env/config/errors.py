"""The config's error type and the value formatting every config message shares."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value and what is allowed."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field  # the (first) field the message is about, for locating it in a config file


def describe_kind(data: Any) -> str:
    """``a <type> (<value>)`` for messages about a document of the wrong kind."""
    return f"a {type(data).__name__} ({show_value(data)})"


def format_number(x: float) -> str:
    """Compact number for messages: 100000, 1e6, 0.001, 1e-20."""
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x) if abs(x) < 10**7 else f"{x:.0e}".replace("e+0", "e").replace("e+", "e")
    text = f"{x:g}"
    return text.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def show_value(v: Any, limit: int = 60) -> str:
    """``repr(v)`` shortened for messages (a 400-digit integer or a 5,000-character string stays readable)."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**limit:
        return f"{'-' if v < 0 else ''}{str(abs(v))[:12]}... ({len(str(abs(v)))} digits)"
    text = repr(v)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"

