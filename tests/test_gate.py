"""reports.gate / `secbench gate`: claims judged on the mean over seeds, exit codes 0/1/2, JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reports import evaluate, load, parse_claims
from reports.cli import gate


def run_gate(tmp_path: Path, results: Path, claims_yaml: str, *extra: str) -> Any:
    claims = tmp_path / "claims.yaml"
    claims.write_text(claims_yaml, encoding="utf-8")
    return CliRunner().invoke(gate, [str(claims), "--results", str(results), *extra])


def test_passing_claims_exit_0(tmp_path: Path, results: Path) -> None:
    result = run_gate(
        tmp_path,
        results,
        """
claims:
  - {name: small-cnn-accuracy, scenario: clean, model: cnn-s, metric: clean_acc, op: ">=", value: 0.92, min_runs: 3}
  - {scenario: wm, attack: null, metric: wm_success, op: "==", value: 1}
  - {scenario: wm, attack: [crop, blur], metric: wm_success, op: "<", value: 0.6}
""",
    )
    assert result.exit_code == 0, result.output
    assert "3/3 claims passed" in result.stdout and "PASS" in result.stdout and "FAIL" not in result.stdout


def test_failing_claim_exits_1_with_the_measured_mean(tmp_path: Path, results: Path) -> None:
    result = run_gate(
        tmp_path,
        results,
        """
claims:
  - {name: medium-cnn-accuracy, model: cnn-m, metric: clean_acc, op: ">", value: 0.9}
  - {model: cnn-s, metric: clean_acc, op: ">", value: 0.5}
""",
    )
    assert result.exit_code == 1
    assert "FAIL medium-cnn-accuracy: mean 0.825 over 2 run(s) is not > 0.9" in result.stdout
    assert "1/2 claims passed" in result.stdout


@pytest.mark.parametrize(
    ("claim", "reason"),
    [
        ("{model: resnet, metric: clean_acc, op: '>=', value: 0}", "no matching results"),
        (
            "{scenario: wm, metric: clean_acc, op: '>=', value: 0}",
            "no matching results (the matching runs have no",
        ),
        ("{model: cnn-m, metric: clean_acc, op: '>=', value: 0, min_runs: 3}", "fewer than min_runs 3"),
    ],
)
def test_unsupported_claims_fail_closed(tmp_path: Path, results: Path, claim: str, reason: str) -> None:
    result = run_gate(tmp_path, results, f"claims:\n  - {claim}\n")
    assert result.exit_code == 1 and reason in result.stdout


def test_evaluate_uses_the_mean_over_seeds_with_a_tolerance(results: Path) -> None:
    df = load(results)
    claims = parse_claims(
        {
            "claims": [
                {"model": "cnn-s", "metric": "clean_acc", "op": "==", "value": 0.92},
                {
                    "model": "cnn-s",
                    "metric": "clean_acc",
                    "op": ">",
                    "value": 0.92,
                },  # equal within tol: not greater
                {
                    "model": "cnn-s",
                    "metric": "train_loss",
                    "op": "<=",
                    "value": "2e-1",
                },  # YAML reads 2e-1 as a string
                {"model": "cnn-s", "metric": "clean_acc", "op": "==", "value": 0.9, "tol": 0.05},
            ]
        }
    )
    verdicts = evaluate(claims, df)
    assert [v.passed for v in verdicts] == [True, False, True, True]
    assert verdicts[0].measured == pytest.approx(0.92) and verdicts[0].n_runs == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("claims: [", "not valid YAML"),
        ("claims:\n  - {metric: a, op: >=, value: 1}\n", "quote operators"),
        ("thresholds: []\n", "expected a top-level 'claims:' list"),
        ("claims: {metric: a}\n", "expected a top-level 'claims:' list"),
        ("claims: []\n", "'claims' is empty"),
        ("claims:\n  - {op: '>=', value: 1}\n", "claim #1: missing metric"),
        (
            "claims:\n  - {metric: a, op: '>=', value: 1}\n  - {metric: a, op: '=>', value: 1}\n",
            "claim #2: unknown op '=>'; valid: >=, >, <=, <, ==",
        ),
        (
            "claims:\n  - {name: acc, metric: a, op: '>=', value: high}\n",
            "claim #1 (acc): value must be a finite number",
        ),
        (
            "claims:\n  - {metric: a, op: '>=', value: 1, atack: crop}\n",
            "unknown key 'atack' (did you mean 'attack'?)",
        ),
        (
            "claims:\n  - {metric: a, op: '>=', value: 1, min_runs: 0}\n",
            "min_runs must be a whole number >= 1",
        ),
        (
            "claims:\n  - {metric: a, op: '>=', value: 1, model: {a: 1}}\n",
            "selector model must be a value or a list",
        ),
    ],
)
def test_malformed_claims_exit_2_with_one_line(
    tmp_path: Path, results: Path, text: str, message: str
) -> None:
    result = run_gate(tmp_path, results, text)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr


def test_missing_results_exit_2_but_empty_results_fail_closed(tmp_path: Path) -> None:
    claims = "claims:\n  - {metric: clean_acc, op: '>=', value: 0}\n"
    assert run_gate(tmp_path, tmp_path / "missing", claims).exit_code == 2
    (tmp_path / "empty").mkdir()
    result = run_gate(tmp_path, tmp_path / "empty", claims)
    assert result.exit_code == 1 and "no matching results" in result.stdout


def test_junit_report_counts_tests_and_failures(tmp_path: Path, results: Path) -> None:
    junit = tmp_path / "reports" / "gate.xml"
    result = run_gate(
        tmp_path,
        results,
        """
claims:
  - {id: acc-floor, scenario: clean, metric: clean_acc, op: ">=", value: 0.8}
  - {id: loss-ceiling, model: cnn-m, metric: train_loss, op: "<", value: 0.1}
  - {id: ghost, model: vit, metric: clean_acc, op: ">=", value: 0.5}
""",
        "--junit",
        str(junit),
    )
    assert result.exit_code == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("3", "2")
    cases = {case.get("name"): case.find("failure") for case in suite.iter("testcase")}
    assert cases["acc-floor"] is None
    assert cases["loss-ceiling"].get("message") == "mean 0.3 over 2 run(s) is not < 0.1"
    assert cases["ghost"].get("message") == "no matching results"


def test_shipped_example_claims_files_are_valid() -> None:
    from reports.gate import load_claims

    for path in sorted((Path(__file__).parent.parent / "examples" / "claims").glob("*.yaml")):
        assert load_claims(path), path


def _watermark_results(out: Path, structure_success: float) -> Path:
    """Three seeds of the watermark grid shaped like the scenario's records: the structure mark at
    ``structure_success`` under every attack, the baseline verifying only a plain surrogate."""
    from conftest import make_record

    from secbench import store

    higher = {"wm_success": True, "wm_auroc": True, "psnr_wm": True, "fp_clean_model": False, "fp_natural": False}
    for seed in range(3):
        for method in ("none", "baseline", "structure"):
            for attack in ("none", "crop", "rotate", "resize"):
                success = {"none": 0.0, "baseline": 0.95 if attack == "none" else 0.1,
                           "structure": structure_success}[method]
                metrics = {"wm_success": success, "wm_auroc": 0.5 + success / 2, "psnr_wm": 37.0,
                           "fp_clean_model": 0.0, "fp_natural": 0.01}
                record = make_record("watermark", "unet", seed, {}, attack=attack)
                # each method its own config hash: the store keeps the latest record of a hash
                record |= {"dataset": "patches/derain", "method": method, "metrics": metrics,
                           "higher_is_better": higher, "run_id": f"watermark-{method}-{attack}-{seed}",
                           "config_hash": f"sha256:{method}-{attack}-{seed}"}
                store.append(out, record)
    return out


def test_watermark_claims_pass_on_a_working_mark_and_fail_on_a_weakened_one(tmp_path: Path) -> None:
    claims = Path(__file__).parent.parent / "examples" / "claims" / "watermark.yaml"
    working = CliRunner().invoke(gate, [str(claims), "--results", str(_watermark_results(tmp_path / "ok", 0.92))])
    assert working.exit_code == 0, working.output
    weakened = CliRunner().invoke(gate, [str(claims), "--results", str(_watermark_results(tmp_path / "weak", 0.3))])
    assert weakened.exit_code == 1
    assert "FAIL structure verifies a cropping thief: mean 0.3 over 3 run(s) is not >= 0.8" in weakened.stdout
    assert ("FAIL structure beats the baseline against a cropping thief: mean difference 0.2 over 3 run(s) "
            "is not >= 0.5") in weakened.stdout


def test_versus_claims_compare_two_means_and_fail_closed(tmp_path: Path, results: Path) -> None:
    result = run_gate(tmp_path, results, """
claims:
  - {name: none beats crop, scenario: wm, attack: null, metric: wm_success, op: ">=", value: 0.3,
     versus: {attack: crop}}
  - {name: ghost rival, scenario: wm, attack: null, metric: wm_success, op: ">=", value: 0, versus: {attack: shear}}
""")
    assert result.exit_code == 1
    assert "1/2 claims passed" in result.stdout and "FAIL none beats crop" not in result.stdout  # 1.0 - 0.65
    assert "FAIL ghost rival: no matching results for versus {'attack': 'shear'}" in result.stdout
    bad = run_gate(tmp_path, results, "claims:\n  - {metric: wm_success, op: '>=', value: 0, versus: {colour: red}}\n")
    assert bad.exit_code == 2 and "versus must map identity fields" in bad.output
