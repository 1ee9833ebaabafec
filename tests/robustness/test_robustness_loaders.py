"""Issue 11 regressions, data side: every loader's errors are typed and name the file and line.

SST-2, CoNLL-2003, COPA, T-Drive, calibration JSON and config files; T-Drive's range checks, its
documented outlier rule and its report; a data folder that lacks a file it should hold.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from fuzzing import CALIBRATION_OK, CONLL_OK, COPA_OK, COPA_ROW, SST2_OK

import iov_env
from iov_env.config import ConfigError, IoVConfig
from iov_env.files import DataFormatError, MissingDataError
from iov_env.learning import tasks
from iov_env.learning.surrogate import load_calibration
from iov_env.sim import tdrive

READERS = {
    "sst2": ("f.tsv", SST2_OK, tasks.read_sst2_tsv),
    "conll": ("f.txt", CONLL_OK, tasks.read_conll),
    "copa": ("f.jsonl", COPA_OK, tasks.read_copa_jsonl),
}


# -- non-UTF-8 and other bytes: file and line, for every loader ---------------------------------------------
@pytest.mark.parametrize("kind", sorted(READERS))
def test_non_utf8_bytes_name_the_file_and_line(tmp_path: Path, kind: str) -> None:
    name, text, reader = READERS[kind]
    lines = text.encode("utf-8").split(b"\n")
    lines[2] = b"caf\xe9 " + lines[2]
    p = tmp_path / name
    p.write_bytes(b"\n".join(lines))
    with pytest.raises(DataFormatError, match=rf"{p}:3: byte 0xe9 at column 4 is not UTF-8"):
        reader(p)


def test_tdrive_and_calibration_non_utf8_name_the_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "5.txt"
    p.write_bytes(b"5,2008-02-02 15:00:00,116.4,39.9\n5,2008-02-02 15:10:00,116.4\xff,39.9\n")
    with pytest.raises(tdrive.TDriveFormatError, match=rf"{p}:2: byte 0xff"):
        tdrive.parse_tdrive_file(p)
    c = tmp_path / "cal.json"
    c.write_bytes(CALIBRATION_OK.encode().replace(b"hand-set", b"hand\xffset"))
    with pytest.raises(DataFormatError, match=rf"{c}:3: byte 0xff"):
        load_calibration(c)


def test_tdrive_format_error_is_a_data_format_error() -> None:
    assert issubclass(tdrive.TDriveFormatError, DataFormatError)
    assert tasks.DataFormatError is DataFormatError  # one error type for every data file


@pytest.mark.parametrize(("label", "needle"), [
    ("true", "label must be the integer 0 or 1, got True"),
    ("1.0", "label must be the integer 0 or 1, got 1.0"),
    ('"1"', "label must be the integer 0 or 1, got '1'"),
])
def test_copa_label_must_be_an_integer(tmp_path: Path, label: str, needle: str) -> None:
    """A boolean label used to reach Arrow and raise ArrowTypeError with no file or line."""
    p = tmp_path / "c.jsonl"
    row = '{"premise": "a", "choice1": "b", "choice2": "c", "question": "cause", "label": ' + label + "}"
    p.write_text(COPA_OK + row + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{p}:7: {needle}"):
        tasks.read_copa_jsonl(p)


def test_copa_deeply_nested_json_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "c.jsonl"
    p.write_text(COPA_OK + "[" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{p}:7: JSON nested too deeply"):
        tasks.read_copa_jsonl(p)


def test_loaders_refuse_a_directory_or_missing_file(tmp_path: Path) -> None:
    for _, _, reader in READERS.values():
        with pytest.raises(DataFormatError, match="is a directory"):
            reader(tmp_path)
        with pytest.raises(DataFormatError, match="does not exist"):
            reader(tmp_path / "nope")


def test_crlf_line_endings_are_read(tmp_path: Path) -> None:
    p = tmp_path / "s.tsv"
    p.write_bytes(SST2_OK.replace("\n", "\r\n").encode("utf-8"))
    assert tasks.read_sst2_tsv(p)["label"][:4] == [0, 1, 0, 1]


# -- a data folder that lacks a file: an error, never a fallback -----------------------------------------
def _data_folder(root: Path) -> Path:
    for rel, text in (("sst2/train.tsv", SST2_OK), ("sst2/dev.tsv", SST2_OK), ("conll2003/train.txt", CONLL_OK),
                      ("conll2003/valid.txt", CONLL_OK), ("copa/train.jsonl", COPA_OK), ("copa/val.jsonl", COPA_OK)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(("task", "missing"), [
    ("sst2", "sst2/dev.tsv"), ("conll2003", "conll2003/valid.txt"), ("copa", "copa/train.jsonl"),
])
def test_iov_data_dir_with_a_missing_file_is_an_error(tmp_path: Path, monkeypatch, task: str, missing: str) -> None:
    root = _data_folder(tmp_path)
    (root / missing).unlink()
    monkeypatch.setenv("IOV_DATA_DIR", str(root))
    with pytest.raises(MissingDataError, match=rf"IOV_DATA_DIR=.*{missing}.* missing") as info:
        tasks.load_task(task)  # was: a silent synthetic stand-in
    assert "unset IOV_DATA_DIR" in str(info.value)
    assert issubclass(MissingDataError, FileNotFoundError)
    with pytest.raises(MissingDataError, match="data_dir="):
        tasks.load_task(task, data_dir=root)


def test_iov_data_dir_complete_folder_loads(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("IOV_DATA_DIR", str(_data_folder(tmp_path)))
    td = tasks.load_task("sst2")
    assert td.source.startswith("local:") and len(td.train) == 12


# -- T-Drive: range checks, the outlier rule, the report ----------------------------------------------------
def _trace_lines(n: int = 18, taxi: int = 7) -> list[str]:
    return [f"{taxi},2008-02-02 {15 + i // 6:02d}:{(i % 6) * 10:02d}:00,{116.40 + 0.001 * i:.5f},39.90000"
            for i in range(n)]


def _write(folder: Path, name: str, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_tdrive_nat_timestamp_names_file_and_line(tmp_path: Path) -> None:
    """'NaT' parses as a datetime and used to ask for a 2 EiB array."""
    lines = _trace_lines()
    lines[4] = "7,NaT,116.4,39.9"
    p = _write(tmp_path, "7.txt", lines)
    with pytest.raises(tdrive.TDriveFormatError, match=rf"{p}:5: timestamp 'NaT' is not a date"):
        tdrive.read_tdrive(tmp_path, 30.0, 50.0)


@pytest.mark.parametrize(("stamp", "rule"), [
    ("1000-01-01 00:00:00", "time_out_of_range"), ("9999-12-31 23:59:59", "time_out_of_range"),
    ("2099-12-31 23:59:59", "time_outlier"), ("2008-06-01 00:00:00", "time_outlier"),
])
def test_tdrive_timestamps_far_from_the_trace_are_dropped_and_reported(tmp_path: Path, stamp: str, rule: str) -> None:
    """A fix dated 1000 or 2099 used to stretch the trace over centuries: GiBs of resampled points."""
    lines = _trace_lines()
    lines[0] = f"7,{stamp},116.40000,39.90000"
    _write(tmp_path, "7.txt", lines)
    traces, report = tdrive.read_tdrive(tmp_path, 30.0, 50.0)
    assert report.dropped[rule] == 1 and report.fixes_kept == 17
    assert len(traces[0]) == (16 * 600) // 30 + 1  # 15:10 .. 17:50 at 30 s
    assert rule in report.summary()


@pytest.mark.parametrize(("lon", "lat", "rule"), [
    ("2.35", "48.85", "far_from_centre"),  # Paris
    ("114.50000", "38.00000", "far_from_centre"),  # 270 km away
    ("117.00000", "39.90000", "speed_jump"),  # 51 km away: within the radius, 85 m/s from its neighbours
    ("nan", "39.9", "invalid_coordinates"), ("116.4", "91.0", "invalid_coordinates"),
    ("0.0", "0.0", "invalid_coordinates"),
])
@pytest.mark.parametrize("where", [0, 9])
def test_one_outlier_fix_is_dropped_and_the_trace_kept(tmp_path: Path, lon: str, lat: str, rule: str, where: int) -> None:
    """An outlier first fix used to discard every fix after it until the speed cap allowed the jump back."""
    lines = _trace_lines()
    stamp = lines[where].split(",")[1]
    lines[where] = f"7,{stamp},{lon},{lat}"
    _write(tmp_path, "7.txt", lines)
    traces, report = tdrive.read_tdrive(tmp_path, 30.0, 50.0)
    assert report.dropped[rule] == 1 and report.fixes_kept == 17 and report.fixes_read == 18
    extent = np.ptp(traces[0], axis=0)
    assert extent[0] == pytest.approx(17 * 85.3, rel=0.01) or extent[0] == pytest.approx(16 * 85.3, rel=0.01)
    assert extent[1] < 1e-6  # the trace still runs east along one street, not across the country


def test_tdrive_outlier_rule_keeps_a_clean_trace_whole(tmp_path: Path) -> None:
    _write(tmp_path, "7.txt", _trace_lines())
    traces, report = tdrive.read_tdrive(tmp_path, 600.0, 50.0)
    assert report.fixes_kept == 18 and sum(report.dropped.values()) == 0
    np.testing.assert_allclose(np.diff(traces[0][:, 0]), 85.30, rtol=1e-3)


def test_tdrive_report_lists_skipped_files_and_counts(tmp_path: Path) -> None:
    _write(tmp_path, "1.txt", _trace_lines(taxi=1))
    _write(tmp_path, "2.txt", ["2,2008-02-02 15:00:00,116.4,39.9", "2,2008-02-02 15:00:00,116.4,39.9"])
    traces, report = tdrive.read_tdrive(tmp_path, 30.0, 50.0)
    assert len(traces) == 1 and report.skipped_files == ["2.txt"] and report.dropped["duplicate_time"] == 1
    assert report.files_read == 2 and report.traces_kept == 1


def test_tdrive_resampling_is_bounded(tmp_path: Path) -> None:
    _write(tmp_path, "7.txt", _trace_lines())
    with pytest.raises(ConfigError, match="round_duration_s"):
        tdrive.read_tdrive(tmp_path, 0.001, 50.0)  # 9.6 million rounds for a 3-hour trace


def test_tdrive_loads_only_the_traces_vehicles_use(tmp_path: Path) -> None:
    for taxi in range(1, 6):
        _write(tmp_path, f"{taxi}.txt", _trace_lines(taxi=taxi))
    traces, report = tdrive.read_tdrive(tmp_path, 30.0, 50.0, max_traces=2)
    assert len(traces) == 2 and report.files_read == 2


@pytest.mark.parametrize("case", ["missing", "a file", "empty", "folder named 1.txt"])
def test_tdrive_dir_that_holds_no_traces_is_refused_at_construction(tmp_path: Path, case: str) -> None:
    folder = {"missing": tmp_path / "nope", "a file": _write(tmp_path, "x.txt", _trace_lines()),
              "empty": tmp_path / "empty", "folder named 1.txt": tmp_path / "odd"}[case]
    (tmp_path / "empty").mkdir(exist_ok=True)
    (tmp_path / "odd" / "1.txt").mkdir(parents=True, exist_ok=True)
    with pytest.raises((ConfigError, DataFormatError), match="tdrive|1.txt"):
        iov_env.parallel_env(preset="tiny", mobility_model="tdrive", tdrive_dir=str(folder))


def test_tdrive_report_is_kept_on_the_simulator(fixture_tdrive_dir: Path) -> None:
    env = iov_env.parallel_env(preset="tiny", mobility_model="tdrive", tdrive_dir=str(fixture_tdrive_dir))
    try:
        report = env.simulator.tdrive_report
        assert report is not None and report.traces_kept == 2
        assert report.dropped == {"invalid_coordinates": 1, "time_out_of_range": 0, "duplicate_time": 1,
                                  "far_from_centre": 0, "time_outlier": 0, "speed_jump": 1}
    finally:
        env.close()


# -- calibration JSON ----------------------------------------------------------------------------------
def _calibration(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "cal.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data, indent=1), encoding="utf-8")
    return p


def test_calibration_without_tasks_names_the_file(tmp_path: Path) -> None:
    p = _calibration(tmp_path, {"model": "x"})  # was KeyError: 'tasks'
    with pytest.raises(DataFormatError, match=rf"{p}:1: 'tasks' is missing"):
        load_calibration(p)


def test_invalid_calibration_json_names_the_file_and_line(tmp_path: Path) -> None:
    p = _calibration(tmp_path, '{"tasks": {\n  "sst2": {,\n}}')  # was a bare JSONDecodeError
    with pytest.raises(DataFormatError, match=rf"{p}:2: not valid JSON"):
        load_calibration(p)


@pytest.mark.parametrize("bad", [None, "abc", -1.0, 1e308, [1], True, 10**400])
@pytest.mark.parametrize("key", ["sample_scale", "tokens_per_sample", "floor"])
def test_calibration_values_are_checked_with_line(tmp_path: Path, key: str, bad: object) -> None:
    data = json.loads(CALIBRATION_OK)
    data["tasks"]["conll2003"][key] = bad
    p = _calibration(tmp_path, json.dumps(data, indent=1) if bad != 10**400 else
                     json.dumps(data, indent=1).replace("10000000000", "1" + "0" * 400, 1))
    want_line = next(i for i, ln in enumerate(p.read_text().splitlines(), 1) if "conll2003" in ln)
    with pytest.raises(DataFormatError, match=rf"{p}:(\d+): tasks\.conll2003\.{key}=") as info:
        load_calibration(p)
    assert int(str(info.value).split(":")[1]) > want_line  # the line of the key, inside the conll2003 block


def test_calibration_errors_reach_the_env_as_typed_errors(tmp_path: Path) -> None:
    p = _calibration(tmp_path, {"tasks": {"sst2": 3}})
    with pytest.raises(DataFormatError, match=str(p)):
        iov_env.parallel_env(preset="tiny", calibration=str(p))


def test_calibration_at_its_limits_runs_finite(tmp_path: Path) -> None:
    data = json.loads(CALIBRATION_OK)
    for curve in data["tasks"].values():
        curve.update(sample_scale=1e12, tokens_per_sample=1e6, rank_half=1e6, speed_rank_half=1e6,
                     noise_std=1.0, zero_pad_penalty=1e3)
    p = _calibration(tmp_path, data)
    env = iov_env.parallel_env(preset="tiny", calibration=str(p), aggregation="zero_pad")
    try:
        env.reset(seed=0)
        _, rewards, _, _, infos = env.step({a: 0 for a in env.agents})
        assert all(math.isfinite(r) for r in rewards.values())
        assert all(math.isfinite(i["cost"]) for i in infos.values())
    finally:
        env.close()


def test_config_from_file_unknown_suffix_and_existing_behaviour(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("num_vehicles = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="suffix"):
        IoVConfig.from_file(p)
    with pytest.raises(ConfigError, match="does not exist"):
        IoVConfig.from_file(tmp_path / "nope.toml")


# -- issue 22: the last data inputs that passed silently ------------------------------------------------------
def test_tdrive_date_without_a_time_is_an_error_not_midnight(tmp_path: Path) -> None:
    """A bare date parsed as midnight: the hours in between were interpolated into the trace."""
    lines = _trace_lines()
    lines[6] = "7,2008-02-02,116.406,39.9"
    p = _write(tmp_path, "7.txt", lines)
    with pytest.raises(tdrive.TDriveFormatError,
                       match=rf"{p}:7: timestamp '2008-02-02' is not a date and time \(field 'time'\); "
                             r"allowed: YYYY-MM-DD HH:MM:SS"):
        tdrive.read_tdrive(tmp_path, 30.0, 50.0)


def test_sst2_empty_sentence_names_file_line_and_field(tmp_path: Path) -> None:
    p = tmp_path / "s.tsv"
    p.write_text(SST2_OK + "   \t1\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{p}:14: field 'sentence' is empty; allowed: a non-empty sentence"):
        tasks.read_sst2_tsv(p)


@pytest.mark.parametrize("kind", sorted(READERS))
def test_nul_bytes_name_the_file_line_and_column(tmp_path: Path, kind: str) -> None:
    name, text, reader = READERS[kind]
    lines = text.split("\n")
    lines[2] = lines[2][:3] + "\x00" + lines[2][3:]
    p = tmp_path / name
    p.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{p}:3: NUL byte at column 4; allowed: UTF-8 text without NUL bytes"):
        reader(p)


def test_sst2_with_one_label_throughout_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "s.tsv"
    p.write_text("sentence\tlabel\n" + "".join(f"a film {i}\t1\n" for i in range(9)), encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{p}: field 'label' is 1 on all 9 rows; allowed: both labels 0 and 1"):
        tasks.read_sst2_tsv(p)


@pytest.mark.parametrize("field", ["premise", "choice1", "choice2"])
def test_copa_empty_text_field_names_file_line_and_field(tmp_path: Path, field: str) -> None:
    p = tmp_path / "c.jsonl"
    p.write_text(COPA_OK + json.dumps({**COPA_ROW, field: " ", "label": 0}) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{p}:7: field '{field}' is empty; allowed: a non-empty string"):
        tasks.read_copa_jsonl(p)


def test_a_link_to_a_folder_in_the_data_folder_is_reported_as_a_directory(tmp_path: Path, monkeypatch) -> None:
    """It used to be reported as missing ("does not exist")."""
    root = _data_folder(tmp_path / "data")
    (root / "sst2/dev.tsv").unlink()
    (tmp_path / "elsewhere").mkdir()
    (root / "sst2/dev.tsv").symlink_to(tmp_path / "elsewhere")
    monkeypatch.setenv("IOV_DATA_DIR", str(root))
    with pytest.raises(DataFormatError, match=r"dev.tsv' is a directory, not a file"):
        tasks.load_task("sst2")


def test_a_calibration_given_as_a_link_to_a_folder_is_reported_as_a_directory(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "cal.json").symlink_to(tmp_path / "folder")
    with pytest.raises(ConfigError, match=r"calibration=.*cal.json' is a directory, not a file; allowed"):
        iov_env.parallel_env(preset="tiny", calibration=str(tmp_path / "cal.json")).reset(seed=0)
