"""reports.frame / reports.render / `secbench report`: long frame, selection, seed pivot, every format."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import CLEAN, HIGHER_IS_BETTER, WATERMARK, make_record

import reports
from reports.cli import report
from secbench import store
from secbench.errors import SecbenchError


@pytest.fixture
def df(results: Path) -> pd.DataFrame:
    return reports.load(results)


def cell(table: pd.DataFrame, row: Any, col: Any) -> tuple[float, float, int]:
    return table["mean"].loc[row, col], table["std"].loc[row, col], int(table["n"].loc[row, col])


def test_load_is_long_form_of_ok_records_with_reruns_counted_once(df: pd.DataFrame, results: Path) -> None:
    assert list(df.columns) == list(reports.frame.COLUMNS)
    assert len(df) == 2 * len(CLEAN) + 2 * len(WATERMARK)  # failed run and stale record left out
    stale = df[(df["model"] == "cnn-s") & (df["seed"] == 0) & (df["metric"] == "clean_acc")]
    assert stale["value"].tolist() == [0.90]
    assert [r["status"] for r in reports.not_ok(store.load_records(results))] == ["failed"]
    assert df.set_index("metric")["higher_is_better"].to_dict() == HIGHER_IS_BETTER


def test_select_matches_lists_and_none_as_missing(df: pd.DataFrame) -> None:
    wm = reports.select(df, scenario="wm", metric="wm_success")
    assert reports.select(wm, attack=None)["value"].tolist() == [1.0, 1.0]
    assert sorted(reports.select(wm, attack=[None, "blur"])["value"]) == [0.3, 1.0, 1.0]
    assert len(reports.select(df, model=["cnn-s", "cnn-m"], scenario="clean")) == 2 * len(CLEAN)
    with pytest.raises(SecbenchError, match="did you mean 'attack'"):
        reports.select(df, atack="crop")


def test_select_metrics_takes_several_comma_separated_globs(df: pd.DataFrame) -> None:
    from reports.frame import select_metrics

    assert set(select_metrics(df, "clean_acc, wm_*")["metric"]) == {"clean_acc", "wm_success"}
    with pytest.raises(SecbenchError, match="no metric matches"):
        select_metrics(df, "asr,asr_tf_*")


def test_pivot_gives_mean_sample_std_and_n_over_seeds(df: pd.DataFrame) -> None:
    table = reports.pivot(reports.select(df, scenario="clean"))
    assert table.index.names == ["model"]  # the only field that varies besides the seed
    assert list(table["mean"].columns) == ["clean_acc", "train_loss"]
    mean, std, n = cell(table, "cnn-s", "clean_acc")
    assert (mean, std, n) == (pytest.approx(0.92), pytest.approx(0.02), 3)
    mean, std, n = cell(table, "cnn-m", "clean_acc")
    assert (mean, std, n) == (pytest.approx(0.825), pytest.approx(math.sqrt(0.00125)), 2)
    assert cell(table, "cnn-s", "train_loss")[:2] == (pytest.approx(0.2), pytest.approx(0.1))
    assert table.attrs["higher_is_better"] == {"clean_acc": True, "train_loss": False}


def test_pivot_over_attacks_labels_missing_and_gives_zero_std_for_one_seed(df: pd.DataFrame) -> None:
    wm = reports.select(df, scenario="wm")
    table = reports.pivot(wm, rows=["model"], cols="attack", metric="wm_success")
    assert list(table["mean"].columns) == [reports.frame.MISSING, "crop", "blur"]
    assert cell(table, "cnn-s", "crop") == (pytest.approx(0.65), pytest.approx(math.sqrt(0.005)), 2)
    assert cell(table, "cnn-s", "blur") == (pytest.approx(0.3), 0.0, 1)
    assert reports.pivot(wm).index.names == ["attack"]


def test_pivot_refuses_to_average_over_a_varying_field(df: pd.DataFrame) -> None:
    with pytest.raises(SecbenchError, match="different values of attack"):
        reports.pivot(reports.select(df, scenario="wm"), rows=["model"])
    with pytest.raises(SecbenchError, match="unknown field 'modle'"):
        reports.pivot(df, rows=["modle"])


@pytest.fixture
def clean_table(df: pd.DataFrame) -> pd.DataFrame:
    return reports.pivot(reports.select(df, scenario="clean"))


@pytest.mark.parametrize("fmt", ["table", "md", "html"])
def test_text_formats_show_mean_std_n_and_arrows(clean_table: pd.DataFrame, fmt: str) -> None:
    text = reports.render(clean_table, fmt)
    for shown in ("0.920 ± 0.020", "0.825 ± 0.035", "0.200 ± 0.100", "clean_acc ↑", "train_loss ↓", "cnn-m"):
        assert shown in text
    assert ("<table>" in text) == (fmt == "html")


def test_latex_escapes_labels(clean_table: pd.DataFrame) -> None:
    text = reports.render(clean_table, "latex", title="clean")
    assert "\\begin{tabular}" in text and "\\end{tabular}" in text
    assert r"clean\_acc $\uparrow$" in text and r"0.920 $\pm$ 0.020" in text


def test_csv_and_json_parse_back_to_the_numbers(clean_table: pd.DataFrame) -> None:
    csv = pd.read_csv(io.StringIO(reports.render(clean_table, "csv"))).set_index(["model", "metric"])
    assert csv.loc[("cnn-s", "clean_acc"), "mean"] == pytest.approx(0.92)
    assert csv.loc[("cnn-m", "clean_acc"), ["std", "n"]].tolist() == [pytest.approx(math.sqrt(0.00125)), 2]
    data = json.loads(reports.render(clean_table, "json"))
    assert (data["rows"], data["cols"]) == (["model"], "metric")
    loss = next(c for c in data["cells"] if c["model"] == "cnn-s" and c["metric"] == "train_loss")
    assert loss == {
        "model": "cnn-s",
        "metric": "train_loss",
        "mean": pytest.approx(0.2),
        "std": pytest.approx(0.1),
        "n": 3,
        "higher_is_better": False,
    }


def test_unknown_format_names_the_valid_ones(clean_table: pd.DataFrame) -> None:
    with pytest.raises(SecbenchError, match="valid: csv, html, json"):
        reports.render(clean_table, "xlsx")


def invoke(*args: str) -> Any:
    return CliRunner().invoke(report, [str(a) for a in args])


def test_cli_prints_one_table_per_scenario_and_notes_failed_runs(results: Path) -> None:
    result = invoke(results, "--format", "md")
    assert result.exit_code == 0, result.output
    assert "## clean" in result.stdout and "## wm" in result.stdout
    assert "0.920 ± 0.020" in result.stdout and "0.650 ± 0.071" in result.stdout
    assert result.stderr == "note: skipped 1 failed run(s)\n"


def test_cli_notes_runs_whose_configurations_differ_beyond_their_identity(tmp_path: Path) -> None:
    first = make_record("clean", "cnn-s", 0, {"clean_acc": 0.9, "train_loss": 0.3})
    rerun = make_record("clean", "cnn-s", 0, {"clean_acc": 0.7, "train_loss": 0.5})
    rerun["config"] = {**rerun["config"], "epochs": 1}
    rerun["config_hash"] = "sha256:" + "0" * 64
    for record in (first, rerun):
        store.append(tmp_path, record)
    result = invoke(tmp_path, "--format", "md")
    assert result.exit_code == 0 and "0.800 ± 0.141" in result.stdout  # the two are averaged ...
    assert result.stderr == ("note: some runs of the same identity and seed differ in epochs, and their cells "
                             "average them; keep such variants in separate results folders\n")  # ... and said so


def test_cli_writes_machine_readable_files(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "table.csv"
    assert invoke(results, "--format", "csv", "-o", out).exit_code == 0
    csv = pd.read_csv(out)
    assert set(csv["table"]) == {"clean", "wm"}
    crop = csv[(csv["attack"] == "crop") & (csv["metric"] == "wm_success")]
    assert crop["mean"].tolist() == [pytest.approx(0.65)]

    result = invoke(
        results, "--scenario", "wm", "--cols", "attack", "--metric", "psnr_db", "--format", "json"
    )
    (table,) = json.loads(result.stdout)
    assert (table["table"], table["rows"], table["cols"]) == ("wm", ["model"], "attack")
    assert {c["attack"]: c["mean"] for c in table["cells"]} == {None: 41.0, "crop": 41.0, "blur": 40.0}


def test_cli_table_format(results: Path) -> None:
    result = invoke(results, "--scenario", "clean", "--rows", "model,preset")
    assert result.exit_code == 0 and "0.825 ± 0.035" in result.stdout and "preset" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "nope"], "no results for scenario 'nope'"),
        (["--metric", "nope"], "no results for metric 'nope'"),
        (["--rows", "modle"], "unknown field 'modle'"),
        (["--rows", "model", "--scenario", "wm"], "different values of attack"),
    ],
)
def test_cli_user_errors_exit_2_with_one_line(results: Path, args: list[str], message: str) -> None:
    result = invoke(results, *args)
    note, error = result.stderr.splitlines()
    assert result.exit_code == 2 and note == "note: skipped 1 failed run(s)"
    assert error.startswith("error: ") and message in error


def test_cli_empty_or_missing_results_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert invoke(tmp_path / "empty").stderr == f"error: no results in {tmp_path / 'empty'}\n"
    missing = invoke(tmp_path / "missing")
    assert missing.exit_code == 2 and "no results folder" in missing.stderr


def test_importing_the_cli_does_not_import_pandas() -> None:
    code = "import sys, reports.cli; sys.exit('pandas' in sys.modules or 'rich' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_cli_scenario_default_views(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reports.views import VIEWS, ReportView

    views = (ReportView("success by attack", rows=("model",), cols="attack", metrics="wm_*"),
             ReportView("quality", rows=("attack",), metrics="psnr*"))
    monkeypatch.setitem(VIEWS, "wm", views)
    tables = json.loads(invoke(results, "--scenario", "wm", "--format", "json").stdout)
    assert [(t["table"], t["rows"], t["cols"]) for t in tables] == [
        ("success by attack", ["model"], "attack"), ("quality", ["attack"], "metric")]
    assert {c["attack"]: c["mean"] for c in tables[0]["cells"]} == {None: 1.0, "crop": 0.65, "blur": 0.3}
    assert {c["metric"] for c in tables[1]["cells"]} == {"psnr_db"}
    # an explicit layout overrides the views; a view whose metrics no run has is left out
    assert "success by attack" not in invoke(results, "--scenario", "wm", "--cols", "attack", "--metric",
                                             "psnr_db").stdout
    monkeypatch.setitem(VIEWS, "wm", (*views, ReportView("defenses", rows=("model",), metrics="asr_*")))
    result = invoke(results, "--scenario", "wm", "--format", "json")
    assert result.exit_code == 0 and [t["table"] for t in json.loads(result.stdout)] == [v.title for v in views]
