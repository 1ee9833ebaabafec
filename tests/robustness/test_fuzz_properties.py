"""The fuzz as property tests: every config field, config files, every loader, calls before reset().

The property: an input is either refused with a typed error that names what was wrong and what is
allowed, or the env runs and every observation, reward, cost and info number is finite. Fields are
enumerated from the config dataclasses, so a field added later is covered by its type's strategy.
A ``RuntimeWarning`` from the package's modules is an error here (``pytestmark``). Hypothesis runs derandomised with a fixed example budget, so CI is reproducible; the whole module
takes well under two minutes. ``fuzz_count.py`` runs the same cases and counts outcomes per class.
"""

from __future__ import annotations

from pathlib import Path

import fuzzing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LEAVES = fuzzing.config_leaves()
GUARD_S = 60  # an endless case fails as "hang" instead of stalling CI; a case takes milliseconds
PROPERTY = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
ACCEPTABLE = ("ok", "refused")
# a RuntimeWarning (overflow, invalid value) raised in the package's own code is a finding, not noise: inside a
# case it becomes the outcome "crash:RuntimeWarning" (issue 22)
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning:(iov_env|agents|benchmarks)")


def _assert_acceptable(label: str, outcome: tuple[str, str]) -> None:
    cls, detail = outcome
    assert cls in ACCEPTABLE, f"{label}: {cls}: {detail}"


def test_every_config_field_is_enumerated() -> None:
    """The fuzz sees every leaf of the config, whatever branch added it."""
    from iov_env.config import FIELD_SECTION

    assert {lf.name for lf in LEAVES} == set(FIELD_SECTION)
    assert all(fuzzing.hostile_values(lf) for lf in LEAVES)


@pytest.mark.parametrize("leaf", LEAVES, ids=[lf.name for lf in LEAVES])
def test_every_hostile_value_of_a_field_is_refused_or_runs_finite(leaf: fuzzing.Leaf) -> None:
    """Each of the field's type's hostile values, alone on the tiny preset."""
    failures = []
    for value in fuzzing.hostile_values(leaf):
        cls, detail = fuzzing.timed(fuzzing.run_config_case, {leaf.name: value}, limit_s=GUARD_S)
        if cls not in ACCEPTABLE:
            failures.append(f"{leaf.name}={value!r:.60}: {cls}: {detail}")
    assert not failures, "\n".join(failures)


@PROPERTY
@given(overrides=fuzzing.config_overrides())
def test_random_field_combinations_are_refused_or_run_finite(overrides: dict) -> None:
    """1-4 fields at once, mostly plausible values (so most configs run), some hostile."""
    _assert_acceptable(repr(overrides)[:200], fuzzing.timed(fuzzing.run_config_case, overrides, limit_s=GUARD_S))


def _sumo_backends() -> tuple[str, ...]:
    from iov_env.sim import sumo

    return ("auto", "traci", "libsumo") if sumo.missing_reason() is None and _has_libsumo() else ("auto", "traci")


def _has_libsumo() -> bool:
    import importlib.util

    return importlib.util.find_spec("libsumo") is not None


def _sumo_missing() -> str | None:
    from iov_env.sim import sumo

    return sumo.missing_reason()


@pytest.mark.skipif(_sumo_missing() is not None, reason=_sumo_missing() or "")
@settings(max_examples=6, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(overrides=fuzzing.sumo_overrides(backends=_sumo_backends()))
def test_sumo_configs_are_refused_or_run_finite(overrides: dict) -> None:
    """SUMO traffic with its fields fuzzed: each accepted config is one short SUMO run, finite throughout."""
    _assert_acceptable(repr(overrides)[:200], fuzzing.timed(fuzzing.run_config_case, overrides, limit_s=GUARD_S))


@pytest.mark.skipif(_sumo_missing() is not None, reason=_sumo_missing() or "")
def test_sumo_file_values(tmp_path: Path) -> None:
    """Unusable SUMO network/route paths are ConfigErrors naming the field, before SUMO runs."""
    failures = []
    for label, case in fuzzing.sumo_file_cases(tmp_path):
        cls, detail = fuzzing.timed(fuzzing.run_config_case, case, limit_s=GUARD_S)
        if cls != "refused" or label.split()[0] not in detail:
            failures.append(f"{label}: {cls}: {detail}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("as_path", [False, True], ids=["str", "Path"])
@pytest.mark.parametrize(("name", "content", "expect"), fuzzing.CONFIG_FILE_CASES,
                         ids=[c[0] for c in fuzzing.CONFIG_FILE_CASES])
def test_config_files(tmp_path: Path, name: str, content: bytes, expect: str, as_path: bool) -> None:
    outcome = fuzzing.timed(fuzzing.run_config_file_case, tmp_path, name, content, expect, as_path, limit_s=GUARD_S)
    _assert_acceptable(name, outcome)


def test_config_arguments(tmp_path: Path) -> None:
    failures = []
    for label, arg, expect in fuzzing.config_arg_cases(tmp_path):
        cls, detail = fuzzing.timed(fuzzing.run_config_arg_case, label, arg, expect, limit_s=GUARD_S)
        if cls not in ACCEPTABLE:
            failures.append(f"config={label}: {cls}: {detail}")
    assert not failures, "\n".join(failures)


LOADER_BASES = {
    "sst2": fuzzing.SST2_OK, "conll": fuzzing.CONLL_OK, "copa": fuzzing.COPA_OK, "tdrive": fuzzing.TDRIVE_OK,
    "config_yaml": "preset: tiny\nnum_vehicles: 4\nrounds: 3\n",
    "config_json": '{"preset": "tiny",\n"num_vehicles": 4,\n"rounds": 3}\n',
}


@pytest.mark.parametrize("kind", sorted(LOADER_BASES))
def test_every_line_mutation_of_every_loader(tmp_path: Path, kind: str) -> None:
    """Each hostile line at the first and a middle line of a valid file: valid data or a typed file:line error."""
    failures = []
    for rep in fuzzing.LINE_MUTATIONS:
        for line in (0, 2):
            content = fuzzing.mutated(LOADER_BASES[kind], line, rep)
            cls, detail = fuzzing.timed(fuzzing.run_loader_case, kind, content, tmp_path, limit_s=GUARD_S)
            if cls not in ACCEPTABLE:
                failures.append(f"{kind} line {line} <- {rep[:40]!r}: {cls}: {detail}")
    assert not failures, "\n".join(failures)


@settings(max_examples=40, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(sorted(LOADER_BASES)), line=st.integers(0, 30),
       junk=st.one_of(st.binary(max_size=120), st.text(max_size=120).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_random_bytes_in_any_loader(tmp_path_factory: pytest.TempPathFactory, kind: str, line: int, junk: bytes) -> None:
    tmp = tmp_path_factory.mktemp("junk")
    content = fuzzing.mutated(LOADER_BASES[kind], line, junk)
    _assert_acceptable(f"{kind} line {line} <- {junk[:40]!r}",
                       fuzzing.timed(fuzzing.run_loader_case, kind, content, tmp, limit_s=GUARD_S))


def test_every_calibration_mutation(tmp_path: Path) -> None:
    """Structure, types, ranges and encoding of the calibration JSON: refused naming the file, or finite."""
    failures = []
    for j, content in enumerate(fuzzing.calibration_mutations()):
        cls, detail = fuzzing.timed(fuzzing.run_loader_case, "calibration", content, tmp_path, limit_s=GUARD_S)
        if cls not in ACCEPTABLE:
            failures.append(f"calibration mutation {j}: {cls}: {detail}")
    assert not failures, "\n".join(failures[:20])


def test_tdrive_dir_values(tmp_path: Path) -> None:
    for label, folder in fuzzing.tdrive_dir_cases(tmp_path):
        case = {"mobility_model": "tdrive", "tdrive_dir": folder}
        _assert_acceptable(f"tdrive_dir {label}", fuzzing.timed(fuzzing.run_config_case, case, limit_s=GUARD_S))


@pytest.mark.parametrize(("label", "call"), fuzzing.pre_reset_calls(), ids=[c[0] for c in fuzzing.pre_reset_calls()])
def test_calls_before_reset(label: str, call) -> None:  # noqa: ANN001 - a zero-argument callable
    _assert_acceptable(label, fuzzing.run_pre_reset_case(call))
