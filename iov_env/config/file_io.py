"""Config files: reading a YAML or JSON file, parsing it, and naming the file and line in every error."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iov_env.config.errors import ConfigError, describe_kind
from iov_env.config.limits import MAX_CONFIG_FILE_BYTES, MAX_NESTING
from iov_env.files import (
    DuplicateKeyError,
    check_regular_file,
    line_of_key,
    loads_json_unique,
    loads_yaml_unique,
    read_text,
)

if TYPE_CHECKING:
    from iov_env.config.schema import IoVConfig


def config_from_file(path: str | os.PathLike[str]) -> IoVConfig:
    """Build from a YAML or JSON file holding a mapping; every error names the file and, when known, the line.

    An empty file is the default preset; any other document that is not a mapping (``false``,
    ``0``, ``""``, a list) is refused.
    """
    from iov_env.config.schema import IoVConfig  # the schema imports this module lazily, and this one it

    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"config file path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        check_regular_file(p, ConfigError, "config file")  # a missing file is the likelier mistake
        raise ConfigError(f"config file {str(p)!r}: suffix must be .yaml, .yml or .json")
    text = read_text(p, ConfigError, "config file", max_bytes=MAX_CONFIG_FILE_BYTES)
    data = _parse_config_text(text, p, suffix)
    if data is None:  # an empty document
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config file {str(p)!r} holds {describe_kind(data)}, not a mapping of config fields; "
            "allowed: a mapping such as 'preset: tiny' (an empty file is the default preset)"
        )
    try:
        return IoVConfig.from_dict(data)
    except ConfigError as exc:
        line = line_of_key(text, exc.field) if exc.field else None
        where = f"{p}:{line}" if line else str(p)
        raise ConfigError(f"config file {where}: {exc}", exc.field) from None




def _parse_config_text(text: str, path: Path, suffix: str) -> Any:
    """The document in a config file; syntax errors name the file and line."""
    if suffix == ".json":
        try:
            return loads_json_unique(text)
        except DuplicateKeyError as exc:
            raise ConfigError(f"config file {exc.describe(str(path))}", str(exc.key)) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path}:{exc.lineno}: could not be parsed as JSON: {exc.msg} "
                              f"(column {exc.colno})") from None
        except RecursionError:
            raise ConfigError(f"config file {path}: could not be parsed: nested too deeply; "
                              f"allowed: at most {MAX_NESTING} list levels") from None
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - pyyaml is a dependency
        raise ConfigError(f"config file {path}: could not be parsed: {exc}") from None
    try:
        return loads_yaml_unique(text)
    except DuplicateKeyError as exc:
        raise ConfigError(f"config file {exc.describe(str(path))}", str(exc.key)) from None
    except yaml.YAMLError as exc:  # not a ValueError: would escape callers that catch ConfigError
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"config file {where}: could not be parsed as YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"config file {path}: could not be parsed: nested too deeply; "
                          f"allowed: at most {MAX_NESTING} list levels") from None

