"""The fuzz suite: malformed input at every entry point ends with one ``error:`` line and exit 2.

Hand-picked cases plus cases generated from every scenario's config fields (their types and declared
ranges), and hypothesis for the text no list anticipates. ``secbench run`` never starts a run here: the
runner is replaced by one that fails the test, so every rejection is proven to happen before any work.
Inputs that are valid though unusual (a grayscale watermark, duplicated list items) are asserted to pass.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from secbench import registry, store
from secbench.cli import cli
from secbench.config import field_types, option_flag
from secbench.data import load_dataset
from secbench.errors import SecbenchError
from secbench.hiding.marks import logo
from tests.conftest import build_results

SCENARIOS = registry.list_names("scenario")


class RunStarted(AssertionError):
    """A malformed input got as far as the runner."""


@pytest.fixture(autouse=True)
def no_runs(monkeypatch, tmp_path):
    """Fail the test if a run starts; read local datasets from an empty folder."""
    monkeypatch.setenv("SECBENCH_DATA", str(tmp_path / "no-data"))

    def refuse(scenario, spec, out_dir, **kwargs):
        raise RunStarted(f"{spec.scenario} started with {spec.config}")

    monkeypatch.setattr("secbench.runner.execute", refuse)


def invoke(*args: str, out: Path | None = None):
    argv = [*args, "--out", str(out)] if out is not None and args[0] == "run" else list(args)
    return CliRunner().invoke(cli, argv)


def assert_user_error(result, *words: str) -> None:
    """Exit 2, and stderr ends with exactly one ``error:`` line that contains every one of ``words``."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert lines and lines[-1].startswith("error:"), result.output
    assert sum(line.startswith("error:") for line in lines) == 1 and "Traceback" not in result.output
    for word in words:
        assert word in lines[-1], (word, lines[-1])


# ---------------------------------------------------------------- every scenario option


def _fields(scenario: str) -> list[tuple[str, type, dict]]:
    config = registry.get("scenario", scenario).load().Config
    kinds = field_types(config)
    return [(f.name, kinds[f.name], f.metadata.get("bounds", {})) for f in dataclasses.fields(config)]


def _bad_numbers(kind: type, bounds: dict) -> list[str]:
    """Values outside every numeric option's range: its declared bounds, and what no option takes."""
    bad = ["-1", "1e12", "abc", "", "1,2", "１２٣x"]
    if kind is float:
        bad += ["nan", "inf", "-inf", "1e400"]
    else:
        bad += ["1.5", "0x10", str(2**63)]
    if bounds.get("positive") or bounds.get("low", 0) > 0:
        bad.append("0")
    if bounds.get("high") is not None:
        bad.append(str(bounds["high"] * 2 + 1))
    return bad


NUMERIC_CASES = [
    pytest.param(scenario, name, value, id=f"{scenario}-{name}={value or 'empty'}")
    for scenario in SCENARIOS
    for name, kind, bounds in _fields(scenario) if kind in (int, float)
    for value in _bad_numbers(kind, bounds)
]

# Options whose value is a name (or a comma list of names): garbage must be refused by name.
GARBAGE_NAMES = ["☃,☃", "x" * 5000, "a\x00b", "all,nope", " ", "../../etc/passwd"]
FREE_TEXT = {"augment", "train_augment", "defense", "attack_options", "watermark", "owner_attacks"}
NAME_CASES = [
    pytest.param(scenario, name, value, id=f"{scenario}-{name}={value[:8]!r}")
    for scenario in SCENARIOS
    for name, kind, _ in _fields(scenario) if kind is str and name not in FREE_TEXT
    for value in GARBAGE_NAMES
]


def test_the_suite_is_systematic():
    assert len(NUMERIC_CASES) + len(NAME_CASES) >= 200


@pytest.mark.parametrize(("scenario", "name", "value"), NUMERIC_CASES)
def test_every_numeric_option_refuses_out_of_range_values(scenario, name, value, tmp_path):
    result = invoke("run", scenario, "--preset", "smoke", option_flag(name), value, out=tmp_path)
    assert_user_error(result, option_flag(name))
    assert not store.results_path(tmp_path).exists()


@pytest.mark.parametrize(("scenario", "name", "value"), NAME_CASES)
def test_every_name_option_refuses_garbage(scenario, name, value, tmp_path):
    assert_user_error(invoke("run", scenario, "--preset", "smoke", option_flag(name), value, out=tmp_path))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "watermark", "--attack", ""], ["expand to no runs"]),
        (["run", "robustness", "--attack", ",,,"], ["expand to no runs"]),
        (["run", "watermark", "--method", " , "], ["expand to no runs"]),
        (["run", "clean", "--model", "cnn-s,,cnn-m"], ["unknown model ''"]),
        (["run", "watermark", "--attack-options", "degrees=abc"], ["degrees"]),
        (["run", "watermark", "--attack-options", "degrees"], ["degrees"]),
        (["run", "watermark", "--attack-options", "=3"], []),
        (["run", "watermark", "--attack-options", "nope=1"], ["nope"]),
        (["run", "watermark", "--attack-options", "degrees=nan"], ["degrees"]),
        (["run", "watermark", "--key", "#ggg"], ["--key"]),
        (["run", "watermark", "--key", "#12345"], ["--key"]),
        (["run", "watermark", "--key", "red"], ["--key"]),
        (["run", "watermark", "--watermark", "/nonexistent.png"], ["--watermark"]),
        (["run", "clean", "--dataset", "imagefolder:"], ["imagefolder:PATH"]),
        (["run", "clean", "--dataset", "cifar10:x"], ["unknown dataset"]),
        (["run", "detection", "--dataset", "coco:"], ["coco:PATH"]),
        (["run", "clean", "--seeds", "0,a"], ["--seeds"]),
        (["run", "clean", "--seeds", ","], ["--seeds"]),
        (["run", "clean", "--seed", "1", "--seeds", "2"], ["--seed"]),
        (["run", "clean", "--preset", "☃"], ["unknown preset"]),
        (["run", "clean", "--device", "tpu"], ["device"]),
        (["run", "nope"], ["unknown scenario"]),
        (["report", "/nonexistent/results"], ["no results folder"]),
    ],
)
def test_hand_picked_options(args, words, tmp_path):
    assert_user_error(invoke(*args, out=tmp_path), *words)


def test_duplicated_list_items_and_seeds_are_one_run_each(tmp_path, monkeypatch):
    started = []

    def count(scenario, spec, out_dir, **kwargs):
        started.append(spec)
        record = {"run_id": spec.run_id, "status": "ok", "seed": spec.seed, "scenario": spec.scenario,
                  "preset": spec.preset, "metrics": {}, "timing": {"wall_s": 0.0}}
        return record, False

    monkeypatch.setattr("secbench.runner.execute", count)
    result = invoke("run", "watermark", "--attack", "crop,crop", "--method", "baseline", "--seeds", "0,0",
                    out=tmp_path)
    assert result.exit_code == 0, result.output
    assert len(started) == 1


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_out_that_cannot_hold_results(kind, tmp_path):
    if kind == "file":
        out = tmp_path / "results.txt"
        out.write_text("not a folder")
    else:
        out = Path("/proc/secbench-cannot-create-this")  # not even root can create folders in /proc
    assert_user_error(invoke("run", "clean", "--preset", "smoke", out=out), "--out")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_out_read_only(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert_user_error(invoke("run", "clean", "--preset", "smoke", out=out), "--out")
    finally:
        out.chmod(0o700)


# ---------------------------------------------------------------- files read by runs


def _png(path: Path, mode: str, size: tuple[int, int] = (24, 24)) -> Path:
    rng = np.random.default_rng(0)
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, size, dtype=np.uint16)).save(path)
    elif mode == "P":
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).convert("P").save(path)
    else:
        Image.new(mode, size, 128).save(path)
    return path


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "I;16", "RGBA", "1"])
def test_watermark_images_of_any_mode_are_accepted(mode, tmp_path):
    mark = logo(32, _png(tmp_path / "mark.png", mode))
    assert mark.shape == (3, 32, 32) and 0 <= mark.min() <= mark.max() <= 1


def _huge_png(path: Path, side: int) -> Path:
    """A valid PNG header claiming ``side`` x ``side`` pixels (a decompression bomb), with one tiny IDAT."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("damage", ["text", "empty", "truncated", "huge", "folder"])
def test_watermark_files_that_are_no_image_are_one_error(damage, tmp_path):
    path = tmp_path / "mark.png"
    if damage == "text":
        path.write_text("not an image")
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        _png(path, "RGB", (64, 64))
        path.write_bytes(path.read_bytes()[:60])
    elif damage == "huge":
        _huge_png(path, 100_000)
    else:
        path.mkdir()
    with pytest.raises(SecbenchError, match="--watermark"):
        logo(32, path)


def _folder(tmp_path: Path, layout: dict[str, list[str]]) -> Path:
    """``layout``: class folder → kinds of files in it (png, jpg, text, corrupt-png, corrupt-jpg, gray, big)."""
    base = tmp_path / "photos"
    for cls, kinds in layout.items():
        (base / cls).mkdir(parents=True, exist_ok=True)
        for i, kind in enumerate(kinds):
            path = base / cls / f"{i}.{'jpg' if 'jpg' in kind else 'png' if kind != 'text' else 'txt'}"
            if kind in ("png", "jpg"):
                Image.new("RGB", (20, 20), (40 * i % 255, 90, 10)).save(path)
            elif kind == "gray":
                Image.new("L", (33, 17), 90).save(path)
            elif kind == "text":
                path.write_text("hello")
            else:  # corrupt: a real header, then nothing
                Image.new("RGB", (40, 40), (1, 2, 3)).save(path)
                path.write_bytes(path.read_bytes()[:30])
    base.mkdir(exist_ok=True)
    return base


@pytest.mark.parametrize(
    ("layout", "word"),
    [
        ({}, "imagefolder"),
        ({"cats": []}, "imagefolder"),
        ({"cats": ["png", "png"]}, "needs at least 2"),
        ({"cats": ["text"], "dogs": ["text"]}, "imagefolder"),
        ({"cats": ["png", "corrupt-png"], "dogs": ["png", "png"]}, "imagefolder"),
        ({"cats": ["png", "corrupt-jpg"], "dogs": ["png", "png"]}, "imagefolder"),
    ],
)
def test_imagefolder_that_cannot_be_a_dataset(layout, word, tmp_path):
    base = _folder(tmp_path, layout)
    with pytest.raises(SecbenchError, match=word):
        load_dataset(f"imagefolder:{base}", img_size=16)


def test_imagefolder_of_mixed_sizes_and_modes_is_accepted(tmp_path):
    base = _folder(tmp_path, {"cats": ["png", "gray", "jpg", "png", "png"], "dogs": ["gray", "png", "jpg", "png", "png"]})
    data = load_dataset(f"imagefolder:{base}", img_size=16)
    assert data.train.images.shape[1:] == (3, 16, 16) and data.num_classes == 2


def test_imagefolder_symlink_loop_ends(tmp_path):
    base = _folder(tmp_path, {"cats": ["png", "png", "png"], "dogs": ["png", "png", "png"]})
    (base / "cats" / "loop").symlink_to(base, target_is_directory=True)
    data = load_dataset(f"imagefolder:{base}", img_size=16)  # torchvision does not follow folder links
    assert data.num_classes == 2


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "gtsrb"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_local_dataset_files_damaged(name, damage, tmp_path, monkeypatch):
    """Each dataset's first file, damaged: one error naming the dataset, never a crash."""
    first = {"cifar10": "cifar-10-batches-py/data_batch_1", "cifar100": "cifar-100-python/train",
             "svhn": "svhn/train_32x32.mat", "gtsrb": "gtsrb/GTSRB/Training"}[name]
    root = tmp_path / "data"
    path = root / first
    path.parent.mkdir(parents=True)
    payload = {"truncated": b"\x80\x02}q\x00(X", "garbage": os.urandom(256), "empty": b""}[damage]
    if name == "gtsrb":
        path.mkdir()
        (path / "00000").mkdir()
        (path / "00000" / "GT-00000.csv").write_bytes(payload)
    else:
        path.write_bytes(payload)
    monkeypatch.setenv("SECBENCH_DATA", str(root))
    with pytest.raises(SecbenchError, match=first.split("/")[0]):
        load_dataset(name)


# ---------------------------------------------------------------- report on damaged results


def _results(tmp_path: Path, content: bytes) -> Path:
    out = tmp_path / "runs"
    out.mkdir()
    (out / store.RESULTS_FILE).write_bytes(content)
    return out


@pytest.mark.parametrize(
    "content",
    [b"", b"\n\n", os.urandom(512), b'{"schema_version": 1, "run_id": "torn', b"[1, 2, 3]\n", b'"text"\n',
     b'{"a": 1}\n', b"null\n", b"{" * 100_000 + b"\n",
     json.dumps({"schema_version": "1", "run_id": 3, "status": "ok", "scenario": "clean", "seed": 0, "metrics": {},
                 "config": {}, "config_hash": "h"}).encode() + b"\n",
     json.dumps({"schema_version": 1, "run_id": "r", "status": "ok", "scenario": "clean", "seed": 0,
                 "metrics": {"acc": "high"}, "config": {}, "config_hash": "h"}).encode() + b"\n"],
    ids=["empty", "blank", "binary", "torn", "list", "string", "other-dict", "null", "deep", "wrong-types",
         "text-metric"],
)
def test_report_on_results_without_a_record(content, tmp_path):
    assert_user_error(invoke("report", str(_results(tmp_path, content))), "no results")


def test_report_skips_torn_lines_and_names_them(results):
    path = store.results_path(results)
    good = path.read_bytes()
    path.write_bytes(good + b'{"torn\n' + os.urandom(64).replace(b"\n", b"") + b"\n")
    result = invoke("report", str(results), "--format", "csv")
    lines = good.count(b"\n")
    assert result.exit_code == 0, result.output
    assert f"skipped line(s) {lines + 1}, {lines + 2}: not a results record" in result.stderr
    assert "Traceback" not in result.output and "cnn-s" in result.stdout


def test_results_of_a_newer_schema_are_refused(results):
    record = json.loads(store.results_path(results).read_text().splitlines()[0])
    with open(store.results_path(results), "a") as fh:
        fh.write(json.dumps({**record, "schema_version": store.SCHEMA_VERSION + 1}) + "\n")
    assert_user_error(invoke("report", str(results)), "newer secbench", "upgrade")
    assert_user_error(invoke("gate", "examples/claims/clean.yaml", "--results", str(results)), "newer secbench")


# ---------------------------------------------------------------- gate on malformed claims

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8)
) + "claims: [*i]\n"
CLAIM = "claims:\n  - {metric: clean_acc, op: '>=', value: 0.5, model: cnn-s}\n"


@pytest.mark.parametrize(
    ("content", "word"),
    [
        (b"\xff\xfe\x00\x00binary", "UTF-8"),
        ("claims: é".encode("latin-1"), "UTF-8"),
        (b"", "claims"),
        (b"claims: []\n", "empty"),
        (b"claims: {metric: x}\n", "claims"),
        (b"- a\n- b\n", "claims"),
        (b"claims:\n  - !!python/object/apply:os.system ['touch /tmp/secbench-pwned']\n", "YAML"),
        (b"claims:\n  - metric: clean_acc\n    op: >=\n    value: 0.5\n", "quote"),
        (b"claims: [{metric: clean_acc, op: '~', value: 0.5}]\n", "unknown op"),
        (b"claims: [{metric: clean_acc, op: '>=', value: 0.5, colour: red}]\n", "unknown key"),
        (b"claims: [{metric: clean_acc, op: '>='}]\n", "missing value"),
        (b"claims: [{op: '>=', value: 1}]\n", "missing metric"),
        (b"claims: [{metric: [a, b], op: '>=', value: 1}]\n", "metric must be a name"),
        (b"claims: [{metric: clean_acc, op: '>=', value: high}]\n", "value must be a finite number"),
        (b"claims: [{metric: clean_acc, op: '>=', value: .nan}]\n", "value must be a finite number"),
        (b"claims: [{metric: clean_acc, op: '>=', value: 1, min_runs: 0}]\n", "min_runs"),
        (b"claims: [{metric: clean_acc, op: '>=', value: 1, min_runs: 2.5}]\n", "min_runs"),
        (b"claims: [{metric: clean_acc, op: '>=', value: 1, tol: -1}]\n", "tol"),
        (b"claims: [{metric: clean_acc, op: '>=', value: 1, model: {a: 1}}]\n", "selector model"),
        (b"claims: [{metric: clean_acc, op: '>=', value: 1, versus: [1]}]\n", "versus"),
        (b"claims: [5]\n", "expected a mapping"),
        (b"claims:\n\t- x\n", "YAML"),
        (BOMB.encode(), "claims.yaml"),
        ((CLAIM * 1).encode() + b"#" * (2**20 + 1), "MiB"),
        (b"extra: 1\n" + CLAIM.encode(), "unknown top-level"),
    ],
)
def test_gate_on_malformed_claims(content, word, results, tmp_path):
    claims = tmp_path / "claims.yaml"
    claims.write_bytes(content)
    result = invoke("gate", str(claims), "--results", str(results))
    assert_user_error(result, word)
    assert len(result.stderr) < 2000  # an anchor bomb or a huge value is not echoed back
    assert not Path("/tmp/secbench-pwned").exists()


@pytest.mark.parametrize("target", ["missing", "folder"])
def test_gate_on_a_claims_path_that_is_no_file(target, results, tmp_path):
    path = tmp_path / "claims.yaml"
    if target == "folder":
        path.mkdir()
    assert_user_error(invoke("gate", str(path), "--results", str(results)))


def test_gate_exit_1_only_for_a_claim_that_fails_on_valid_input(results, tmp_path):
    claims = tmp_path / "claims.yaml"
    claims.write_text("claims:\n  - {metric: clean_acc, op: '>=', value: 0.99, model: cnn-s}\n")
    assert invoke("gate", str(claims), "--results", str(results)).exit_code == 1
    claims.write_text(CLAIM)
    assert invoke("gate", str(claims), "--results", str(results)).exit_code == 0


# ---------------------------------------------------------------- hypothesis: the text no list anticipates

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(value=st.text(max_size=40))
def test_any_text_for_a_numeric_option_is_a_value_or_one_error(value, tmp_path):
    result = invoke("run", "clean", "--preset", "smoke", "--lr", value, out=tmp_path)
    if result.exit_code != 2:  # only a valid learning rate may reach the runner (whose refusal the CLI reports)
        assert "internal error RunStarted" in result.stderr, result.output
        lr = float(value)
        assert math.isfinite(lr) and 0 < lr <= 2**31
    else:
        assert_user_error(result, "--lr")


@FAST
@given(content=st.binary(max_size=300))
def test_any_bytes_as_claims_are_judged_or_one_error(content, tmp_path):
    claims = tmp_path / "fuzz-claims.yaml"
    claims.write_bytes(content)
    if not (tmp_path / "fuzz-runs").exists():
        build_results(tmp_path / "fuzz-runs")
    result = invoke("gate", str(claims), "--results", str(tmp_path / "fuzz-runs"))
    # the CLI always ends in sys.exit: judged (0 or 1) or one error (2); never an internal error (70)
    assert result.exit_code in (0, 1, 2) and "Traceback" not in result.output, result.output
    if result.exit_code == 2:
        assert_user_error(result)


@FAST
@given(garbage=st.binary(max_size=200))
def test_any_bytes_appended_to_results_lose_no_record(garbage, tmp_path):
    out = tmp_path / "append-runs"
    if not out.exists():
        build_results(out)
    before = len(store.load_records(out))
    path = store.results_path(out)
    original = path.read_bytes()
    path.write_bytes(original + garbage)
    try:
        records = store.load_records(out)
        assert len(records) >= before  # garbage may happen to be a record itself, never costs one
    except SecbenchError as exc:  # only a valid line of a newer schema is refused
        assert "newer secbench" in str(exc)
    finally:
        path.write_bytes(original)
