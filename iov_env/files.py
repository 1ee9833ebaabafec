"""Reading user-supplied files (data sets, traces, calibrations, configs) with errors that name the file and line.

Every loader in the package reads through here, so a missing file, a folder where a file was
expected, bytes that are not UTF-8 or a nesting bomb all surface as one typed error that says
which file, which line, and what is allowed, never as a bare ``UnicodeDecodeError`` or
``RecursionError`` from deep inside the standard library.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_TEXT_BYTES = 64 * 2**20  # one config or calibration file; data sets are streamed line by line


class DataFormatError(ValueError):
    """A data file is malformed or unreadable; the message names the file and, where it applies, the 1-based line."""


class MissingDataError(FileNotFoundError):
    """A data folder was named (``IOV_DATA_DIR`` or ``data_dir``) but a file it should hold is missing."""


def check_regular_file(path: str | os.PathLike[str], error: type[Exception] = DataFormatError, what: str = "file") -> Path:
    """``path`` as a Path if it is a readable regular file, else ``error`` saying what it is instead."""
    p = Path(path)
    try:
        info = p.stat()
    except FileNotFoundError:
        raise error(f"{what} {str(p)!r} does not exist") from None
    except (OSError, ValueError) as exc:  # name too long, NUL byte, permission on a parent
        raise error(f"{what} {shorten(str(p))!r} cannot be read: {_reason(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{what} {str(p)!r} is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
        raise error(f"{what} {str(p)!r} is not a regular file")
    return p


def read_text(
    path: str | os.PathLike[str], error: type[Exception] = DataFormatError, what: str = "file",
    max_bytes: int = MAX_TEXT_BYTES,
) -> str:
    """The whole file as UTF-8 text (a leading BOM dropped); errors name the file and the bad line."""
    p = check_regular_file(path, error, what)
    size = p.stat().st_size
    if size > max_bytes:
        raise error(f"{what} {str(p)!r} is {size / 2**20:.1f} MiB; allowed: at most {max_bytes / 2**20:.0f} MiB")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise error(f"{what} {str(p)!r} cannot be read: {_reason(exc)}") from None
    return decode_utf8(raw, p, error, what)


def decode_utf8(raw: bytes, path: Path, error: type[Exception] = DataFormatError, what: str = "file") -> str:
    """Decode ``raw`` as UTF-8; a bad byte is reported as ``file:line`` with its column."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(
            f"{what} {str(path)}:{line}: byte 0x{raw[exc.start]:02x} at column {column} is not UTF-8; "
            "allowed: UTF-8 text"
        ) from None


def iter_lines(path: str | os.PathLike[str], error: type[Exception] = DataFormatError) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without the line ending) for each line of a UTF-8 file, streamed; a NUL byte is an error."""
    p = check_regular_file(path, error)
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise error(f"{p}: cannot be read: {_reason(exc)}") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise error(
                    f"{p}:{lineno}: byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not UTF-8; "
                    "allowed: UTF-8 text"
                ) from None
            if "\x00" in text:  # a NUL is never text: it marks a binary or truncated file, and tokenizers drop it
                raise error(f"{p}:{lineno}: NUL byte at column {text.index(chr(0)) + 1}; allowed: UTF-8 text "
                            "without NUL bytes")
            yield lineno, text.rstrip("\r\n")


class DuplicateKeyError(ValueError):
    """A JSON object or YAML mapping gives one key twice; ``line`` is the 1-based line of the repeat, if known."""

    def __init__(self, key: Any, line: int | None = None, first_line: int | None = None) -> None:
        super().__init__(f"key {key!r} is given twice")
        self.key, self.line, self.first_line = key, line, first_line

    def describe(self, where: str) -> str:
        """``where:line: key 'k' is given twice (first on line n); allowed: ...``."""
        at = f"{where}:{self.line}" if self.line else where
        first = f" (first on line {self.first_line})" if self.first_line else ""
        return f"{at}: key {self.key!r} is given twice{first}; allowed: each key once (the last one would win unreported)"


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(key)
        out[key] = value
    return out


def loads_json_unique(text: str) -> Any:
    """``json.loads`` that raises ``DuplicateKeyError`` (with the repeat's line) for a key given twice in one object.

    The standard library keeps the last value silently; a config or data file that says one thing twice
    is a mistake to report, not to guess about.
    """
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except DuplicateKeyError as exc:
        # the hook sees no positions: the repeat is the second occurrence of the quoted key in the text
        hits = [m.start() for m in re.finditer(re.escape(json.dumps(exc.key)) + r"\s*:", text)]
        if len(hits) >= 2:
            exc.first_line, exc.line = (text.count("\n", 0, h) + 1 for h in hits[:2])
        raise


def loads_yaml_unique(text: str) -> Any:
    """``yaml.safe_load`` that raises ``DuplicateKeyError`` (with both lines) for a key given twice in one mapping."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # "<<" merges are YAML's own way to repeat keys
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key: SafeLoader's own error says so
                    continue
                if first != key_node.start_mark.line + 1:
                    raise DuplicateKeyError(key, key_node.start_mark.line + 1, first)
            return super().construct_mapping(node, deep=deep)

    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def parse_json(text: str, where: str, error: type[Exception] = DataFormatError, first_line: int = 1) -> Any:
    """``json.loads`` whose errors (syntax, a key given twice, nesting too deep) name ``where`` and the line."""
    try:
        return loads_json_unique(text)
    except DuplicateKeyError as exc:
        if exc.line:
            exc.line, exc.first_line = exc.line + first_line - 1, (exc.first_line or 1) + first_line - 1
        raise error(exc.describe(where)) from None
    except json.JSONDecodeError as exc:
        raise error(f"{where}:{exc.lineno + first_line - 1}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    except RecursionError:
        raise error(f"{where}:{first_line}: JSON nested too deeply; allowed: a flat record") from None


def line_of_key(text: str, *keys: str) -> int | None:
    """1-based line of the first ``key`` (JSON ``"key":`` or YAML ``key:``) after each previous key, if found."""
    pos = 0
    for key in keys:
        m = re.compile(rf"(?:^|[\s{{,])[\"']?{re.escape(key)}[\"']?\s*:", re.MULTILINE).search(text, pos)
        if m is None:
            return None
        pos = m.end()
    return text.count("\n", 0, pos) + 1


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def shorten(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters for a message, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
