"""Sphinx directives that write the docs' reference tables from the code at build time.

Nothing in these tables is pasted: each directive reads the registry or constant it documents, so a
new config field, scenario, Gym id or agent shows up in the docs at the next ``make docs``.

- ``iov-limits-table``: every numeric config field's allowed interval (``iov_env.config.LIMITS``),
  its section and its default;
- ``iov-work-limits``: the bounds on one step's work (the ``MAX_*`` constants, T-Drive, the render canvas);
- ``iov-presets``: the named presets (``iov_env.config.PRESETS``);
- ``iov-env-ids``: the registered Gymnasium ids (``iov_env.ENV_IDS``);
- ``iov-scenarios``: the frozen benchmark scenarios (``iov_env.scenarios.SCENARIOS``);
- ``iov-agents``: the registered agents (``agents.baselines.AGENTS``, ``agents.sb3.SHARED_AGENTS``);
- ``iov-cli-reference``: the ``iov`` command's ``--help`` tree (sphinx-click), once ``iov_env.cli`` exists.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Sequence
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList


def _cell(text: Any) -> str:
    """One table cell on one line (Markdown inline syntax: ````code```` spans)."""
    return " ".join(str(text).split()) or " "


def list_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], widths: str = "auto") -> list[str]:
    """The MyST ``list-table`` (Markdown) that shows ``rows`` under ``headers``."""
    lines = ["```{list-table}", ":header-rows: 1", f":widths: {widths}", ""]
    for row in [headers, *rows]:
        lines.append(f"* - {_cell(row[0])}")
        lines.extend(f"  - {_cell(c)}" for c in row[1:])
    return [*lines, "```"]


class _TableDirective(Directive):
    """Base: subclasses return MyST Markdown lines, parsed in place (the pages are MyST), so tables get the theme's
    styling."""

    has_content = False
    option_spec = {"filter": directives.unchanged}

    def lines(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(StringList(self.lines(), source="iov_tables"), self.content_offset, container)
        return container.children


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return f"``{v!r}``"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:g}"


def _defaults() -> dict[str, Any]:
    from iov_env.config import IoVConfig

    flat: dict[str, Any] = {}
    for key, value in IoVConfig.from_kwargs().to_dict().items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


class LimitsTable(_TableDirective):
    """Every entry of ``LIMITS``: field, section, interval (with its note), and the default (paper preset)."""

    def lines(self) -> list[str]:
        from iov_env import config

        defaults = _defaults()
        rows = []
        for name, limit in config.LIMITS.items():
            section = config.FIELD_SECTION.get(name, "")
            rows.append((f"``{name}``", section or "(top level)", f"``{limit.describe()}``",
                         _num(defaults[name]) if name in defaults else "—"))
        rows.append(("any other numeric field", "—", f"integers ``{config.DEFAULT_INT_LIMIT.describe()}``, floats "
                     f"``{config.DEFAULT_FLOAT_LIMIT.describe()}``", "—"))
        return list_table(("field", "section", "allowed (``(`` open, ``[`` closed)", "default (``paper``)"), rows,
                          "30 15 40 15")


# the bounds on one step's work: the constant's name in iov_env.config, and what it bounds
WORK_LIMITS = (
    ("MAX_VEHICLES", "vehicles (``num_vehicles``)"),
    ("MAX_RSUS", "RSUs (``num_rsus``)"),
    ("MAX_PAIRS", "vehicle-RSU pairs, and vehicle-rank pairs, computed per round (each)"),
    ("MAX_MOBILITY_SUBSTEPS", "grid mobility sub-steps per round, ``ceil(speed_max_mps * round_duration_s / "
                              "road_spacing_m)``"),
    ("MAX_VEHICLE_SUBSTEPS", "vehicles x grid mobility sub-steps per round"),
    ("MAX_ROUNDS", "``rounds`` and ``history_rounds``"),
    ("MAX_STR_CHARS", "characters in a string field (and no NUL)"),
    ("MAX_ITEMS", "entries in one list-valued field (a YAML alias bomb is refused before it expands)"),
    ("MAX_NESTING", "list depth of any field"),
    ("MAX_CONFIG_FILE_BYTES", "bytes in a config file"),
    ("MAX_SUMO_STEPS", "SUMO steps of the one run ``reset()`` makes: (``sumo_warmup_s`` + ``rounds`` x "
                       "``round_duration_s``) / ``sumo_step_length_s``"),
    ("MAX_SUMO_VEHICLES", "SUMO vehicles on the road at once (``sumo_vehicles_per_agent`` x vehicles)"),
    ("MAX_SUMO_JUNCTIONS", "junctions of a generated SUMO grid"),
    ("MAX_TRACE_CELLS", "(``rounds`` + 1) x vehicles samples of a replayed SUMO trace"),
)
RENDER_LIMITS = (
    ("CANVAS_WIDTH_PX", "``render()``: width of the map raster in pixels (the frame adds fixed margins)"),
    ("MAX_CANVAS_HEIGHT_PX", "``render()``: height of the map raster in pixels"),
    ("MIN_ROAD_STEP_PX", "``render()``: grid roads closer than this many pixels are not drawn"),
    ("COVERAGE_BUDGET_CANVASES", "``render()``: coverage shading stops after this many canvases' worth of pixels"),
    ("MAX_RANK_LABELS", "``render()``: vehicles on the map above which ranks are shown by dot size only"),
)


TDRIVE_LIMITS = (
    ("MAX_TRACE_POINTS", "T-Drive: resampled points (rounds) per taxi trace; one trace is loaded per vehicle"),
    ("MAX_TOTAL_TRACE_POINTS", "T-Drive: points over all loaded traces"),
)
TDRIVE_MODULES = ("iov_env.sim.tdrive", "iov_env.sim.mobility")  # where the T-Drive reader lives (newest first)


def _tdrive_module() -> Any:
    for name in TDRIVE_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if all(hasattr(module, c) for c, _ in TDRIVE_LIMITS):
            return module
    raise RuntimeError(f"no module of {TDRIVE_MODULES} defines {[c for c, _ in TDRIVE_LIMITS]}")


class WorkLimits(_TableDirective):
    """The ``MAX_*`` constants of ``iov_env.config``, the T-Drive reader and the render bounds of ``iov_env.render``."""

    def lines(self) -> list[str]:
        from iov_env import config, render

        tdrive = _tdrive_module()
        rows = [(f"``{name}``", text, _num(getattr(config, name))) for name, text in WORK_LIMITS]
        rows += [(f"``{name}``", text, _num(getattr(tdrive, name))) for name, text in TDRIVE_LIMITS]
        rows += [(f"``render.{name}``", text, _num(getattr(render, name))) for name, text in RENDER_LIMITS]
        return list_table(("constant", "bounds", "value"), rows, "25 60 15")


class Presets(_TableDirective):
    """Every preset of ``iov_env.config.PRESETS``: fleet, RSUs, tasks, rounds, map, mobility, budget."""

    def lines(self) -> list[str]:
        from iov_env.config import PRESETS, IoVConfig

        rows = []
        for name in PRESETS:
            c = IoVConfig.from_kwargs(preset=name)
            rows.append((f"``{name}``", _num(c.num_vehicles), _num(c.rsu.num_rsus), ", ".join(c.tasks.tasks),
                         _num(c.episode.rounds), f"{c.map.width_m:,.0f} m x {c.map.height_m:,.0f} m",
                         c.mobility.mobility_model, f"{c.energy.energy_budget_j_per_vehicle_round:g} J"))
        return list_table(("preset", "vehicles", "RSUs", "tasks", "rounds", "map", "mobility",
                           "budget per vehicle-round"), rows)


class EnvIds(_TableDirective):
    """``iov_env.ENV_IDS``: id, preset, fidelity, and whether the id pins the ``-v0`` regime."""

    def lines(self) -> list[str]:
        import iov_env

        rows = []
        for env_id, kw in iov_env.ENV_IDS.items():
            extra = sorted(k for k in kw if k not in ("preset", "fidelity"))
            rows.append((f"``{env_id}``", kw.get("preset", "paper"), kw.get("fidelity", "real"),
                         ", ".join(f"``{k}``" for k in extra) or "—"))
        return list_table(("Gymnasium id", "preset", "fidelity", "pinned overrides (``-v0``: the old LoRA regime)"),
                          rows, "40 12 12 36")


SCENARIO_REGISTRY = "iov_env.scenarios"


class Scenarios(_TableDirective):
    """``iov_env.scenarios.SCENARIOS``: id, preset, fidelity, what differs from the preset (``:filter: v1``)."""

    def lines(self) -> list[str]:
        registry = importlib.import_module(SCENARIO_REGISTRY)
        only = self.options.get("filter")
        rows = []
        for sid, kw in registry.SCENARIOS.items():
            if only and not sid.endswith(f"-{only}"):
                continue
            overrides = {k: v for k, v in kw.items() if k not in ("preset", "fidelity")}
            legacy = getattr(registry, "LEGACY_V0", {})
            if sid.endswith("-v0"):
                overrides = {k: v for k, v in overrides.items() if k not in legacy or legacy[k] != v}
                overrides = {"(the v0 regime)": "", **overrides}
            text = ", ".join(f"``{k}={v!r}``" if v != "" else k for k, v in overrides.items()) or "the preset as is"
            rows.append((f"``{sid}``", kw.get("preset", "paper"), kw.get("fidelity", "real"), text))
        return list_table(("scenario id", "preset", "fidelity", "overrides"), rows, "25 10 10 55")


class DefaultScenarios(_TableDirective):
    """One sentence: the leaderboard's default grid, read from ``benchmarks.leaderboard.DEFAULT_SCENARIOS``."""

    def lines(self) -> list[str]:
        board = importlib.import_module("benchmarks.leaderboard")
        ids = ", ".join(f"``{sid}``" for sid in board.DEFAULT_SCENARIOS)
        return [f"The leaderboard's default grid (``DEFAULT_SCENARIOS``): {ids}."]


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


class Agents(_TableDirective):
    """``agents.baselines.AGENTS`` (name, class, first docstring paragraph) and the SB3 shared-parameter agents."""

    def lines(self) -> list[str]:
        from agents.baselines import AGENTS
        from agents.sb3 import SHARED_AGENTS

        rows = [(f"``{name}``", f"``{cls.__module__}.{cls.__name__}``", _summary(cls)) for name, cls in AGENTS.items()]
        rows += [(f"``{name}``", f"``agents.sb3`` ({algo})", "shared-parameter policy trained with "
                  f"{'sb3-contrib' if algo in ('MaskablePPO', 'PPOLag') else 'Stable-Baselines3'} {algo}; one network, "
                  "every vehicle acts on its own observation") for name, algo in SHARED_AGENTS.items()]
        rows.append(("``rllib_ppo``", "``agents.rllib``", "RLlib PPO, multi-agent with one shared policy and an "
                     "action-masking module (the ``ray`` extra, its own venv)"))
        return list_table(("name", "class", "what it does"), rows, "18 30 52")


CLI_MODULE = "iov_env.cli"


def cli_group() -> str | None:
    """``module:attribute`` of the ``iov`` click group, or None when this checkout has no ``iov_env.cli``."""
    if importlib.util.find_spec(CLI_MODULE) is None:
        return None
    import click

    module = importlib.import_module(CLI_MODULE)
    for attr in ("main", "cli", "iov"):
        if isinstance(getattr(module, attr, None), click.Group):
            return f"{CLI_MODULE}:{attr}"
    raise RuntimeError(f"{CLI_MODULE} defines no click group named main, cli or iov")


class CliReference(_TableDirective):
    """The ``iov`` command's full ``--help`` tree via sphinx-click, or a note where ``iov_env.cli`` is absent."""

    def lines(self) -> list[str]:
        target = cli_group()
        if target is None:
            return ["```{note}",
                    f"This checkout has no ``{CLI_MODULE}``, so there is no ``iov`` command reference to generate.",
                    "The ``python -m`` modules named on each page take the same options (``--help`` lists them).",
                    "```"]
        return ["```{eval-rst}", f".. click:: {target}", "   :prog: iov", "   :nested: full", "```"]


def setup(app: Any) -> dict[str, Any]:
    """Register the directives."""
    app.add_directive("iov-limits-table", LimitsTable)
    app.add_directive("iov-work-limits", WorkLimits)
    app.add_directive("iov-presets", Presets)
    app.add_directive("iov-env-ids", EnvIds)
    app.add_directive("iov-scenarios", Scenarios)
    app.add_directive("iov-agents", Agents)
    app.add_directive("iov-default-scenarios", DefaultScenarios)
    app.add_directive("iov-cli-reference", CliReference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
