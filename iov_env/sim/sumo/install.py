"""Whether SUMO is installed, where, which version, and which backend (libsumo or traci) runs it."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install 'iov-env[sumo]'"


class SumoUnavailableError(ImportError):
    """``mobility_model="sumo"`` was asked for but SUMO is not installed; the message says how to install it."""


# -- availability --------------------------------------------------------------------------------
def importable(name: str) -> bool:
    """Whether module ``name`` can be imported (without importing it when it is not loaded yet)."""
    if name in sys.modules:
        return sys.modules[name] is not None  # None marks a module known to be missing
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def sumo_home() -> Path | None:
    """SUMO's installation folder (binaries in bin/, tools in tools/): the eclipse-sumo wheel, else $SUMO_HOME."""
    if importable("sumo"):
        import sumo

        home = getattr(sumo, "SUMO_HOME", None)
        if home and (Path(home) / "bin").is_dir():
            return Path(home)
    env = os.environ.get("SUMO_HOME")
    if env and (Path(env) / "bin").is_dir():
        return Path(env)
    return None


def missing_reason() -> str | None:
    """Why SUMO cannot run here, naming what is missing and how to install it; None when it can."""
    missing = []
    if sumo_home() is None:
        missing.append("the SUMO binaries (eclipse-sumo, or $SUMO_HOME)")
    for name in ("sumolib", "traci"):
        if not importable(name):
            missing.append(name)
    if not missing:
        return None
    return f"mobility_model='sumo' needs SUMO, but {', '.join(missing)} is not installed; install it with: {INSTALL_HINT}"


def require() -> None:
    """Raise ``SumoUnavailableError`` with the install command unless the ``sumo`` extra is installed."""
    reason = missing_reason()
    if reason is not None:
        raise SumoUnavailableError(reason)


def resolve_backend(name: str) -> str:
    """``"auto"`` -> libsumo when it imports, else traci (the fallback); an explicit choice must work."""
    require()
    if name == "traci":
        return name
    problem = None
    if not importable("libsumo"):
        problem = "libsumo is not installed"
    else:
        try:
            import_libsumo()
        except (ImportError, OSError) as exc:  # e.g. a wheel built against other system libraries
            problem = f"libsumo does not import ({type(exc).__name__}: {exc})"
    if problem is None:
        return "libsumo"
    if name == "auto":
        return "traci"
    raise SumoUnavailableError(f"sumo_backend='libsumo' but {problem}; install it with: {INSTALL_HINT} "
                               "(or use sumo_backend='traci' or 'auto')")


def sumo_version() -> str:
    """The installed SUMO version (part of every cache key: another SUMO moves vehicles differently)."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("eclipse-sumo", "sumolib"):
        with contextlib.suppress(PackageNotFoundError):
            return version(dist)
    return "unknown"  # pragma: no cover - sumolib is required


def binary(name: str) -> str:
    """Path of a SUMO executable (``sumo``, ``netgenerate``)."""
    home = sumo_home()
    if home is None:
        require()
    exe = Path(home) / "bin" / name  # type: ignore[arg-type]
    return str(exe.with_suffix(".exe") if os.name == "nt" else exe)


def import_libsumo() -> Any:
    """The libsumo module, imported quietly."""
    with contextlib.redirect_stdout(io.StringIO()):  # its import warns about pyarrow, which we do not use
        import libsumo
    return libsumo
