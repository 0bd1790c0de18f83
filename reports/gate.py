"""The CI gate: claims such as ``clean_acc >= 0.9`` over selected runs, judged on the mean over seeds.

A claims file is YAML with a top-level ``claims`` list; each claim has ``metric``, ``op`` (one of
``>= > <= < ==``), ``value`` and optionally ``min_runs`` (default 1), ``tol`` (default 1e-9),
``name`` or ``id``, plus selectors over the identity fields (``scenario: clean``, ``model: [a, b]``,
``attack: null`` for runs without an attack). A claim with ``versus`` (selector overrides, e.g.
``versus: {method: baseline}``) is judged on the difference of two means: its runs' minus those of
the same selectors with the overrides applied. The gate fails closed: a claim no run supports fails.
"""

from __future__ import annotations

import math
import re
import reprlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from reports.frame import select
from secbench.errors import SecbenchError, UnknownNameError
from secbench.store import IDENTITY_FIELDS

# Values within ``tol`` of the threshold count as equal, so a mean of 0.8999999999999999 meets
# ``>= 0.9`` and strict ops need a real margin.
DEFAULT_TOL = 1e-9
_COMPARE: dict[str, Callable[[float, bool], bool]] = {
    ">=": lambda diff, close: close or diff > 0,
    ">": lambda diff, close: not close and diff > 0,
    "<=": lambda diff, close: close or diff < 0,
    "<": lambda diff, close: not close and diff < 0,
    "==": lambda diff, close: close,
}
OPS = tuple(_COMPARE)
CLAIM_KEYS = ("metric", "op", "value", "min_runs", "tol", "name", "id", "versus")
MAX_CLAIMS_BYTES = 2**20
_SCALARS = (str, int, float, bool, type(None))
_BARE_GREATER = re.compile(r"\bop:\s*>")


@dataclass(frozen=True)
class Claim:
    """``mean(metric over the runs matching selectors) op value``, given at least ``min_runs`` runs."""

    metric: str
    op: str
    value: float
    selectors: Mapping[str, Any] = field(default_factory=dict)
    min_runs: int = 1
    tol: float = DEFAULT_TOL
    name: str | None = None
    versus: Mapping[str, Any] = field(default_factory=dict)  # overrides of the runs compared against

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        where = ", ".join(f"{key}={_show(value)}" for key, value in self.selectors.items())
        versus = ", ".join(f"{key}={_show(value)}" for key, value in self.versus.items())
        metric = f"{self.metric} - {self.metric}[{versus}]" if versus else self.metric
        return f"{metric} {self.op} {self.value:g}" + (f" [{where}]" if where else "")

    def holds(self, measured: float) -> bool:
        close = math.isclose(measured, self.value, rel_tol=0.0, abs_tol=self.tol)
        return _COMPARE[self.op](measured - self.value, close)


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    measured: float | None  # mean over the matching runs; None when none matched
    n_runs: int
    passed: bool
    reason: str  # why it failed; "" when it passed


def load_claims(path: str | Path) -> list[Claim]:
    """The claims in a YAML file; any problem raises a one-line SecbenchError naming the claim."""
    try:
        if Path(path).stat().st_size > MAX_CLAIMS_BYTES:
            raise SecbenchError(f"{path} is larger than {MAX_CLAIMS_BYTES // 2**20} MiB; a claims file is a short list")
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SecbenchError(f"cannot read claims file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise SecbenchError(f"{path} is not UTF-8 text (byte {exc.start}); save the claims file as UTF-8 YAML") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # A bare `op: >=` is YAML syntax (a block scalar), the commonest way to break a claims file.
        hint = "; quote operators, e.g. op: '>='" if _BARE_GREATER.search(text) else ""
        raise SecbenchError(f"{path}: not valid YAML: {_yaml_problem(exc)}{hint}") from exc
    return parse_claims(data, source=str(path))


def parse_claims(data: Any, source: str = "claims") -> list[Claim]:
    """Claims from already-parsed YAML (``{"claims": [...]}``); ``source`` prefixes error messages."""
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise SecbenchError(f"{source}: expected a top-level 'claims:' list")
    extra = sorted(str(key) for key in data if key != "claims")
    if extra:
        raise SecbenchError(f"{source}: unknown top-level key(s) {', '.join(extra)}; only 'claims' is read")
    if not data["claims"]:
        raise SecbenchError(f"{source}: 'claims' is empty, so the gate would check nothing")
    return [_parse_claim(raw, f"{source}: claim #{i}") for i, raw in enumerate(data["claims"], start=1)]


def evaluate(claims: Sequence[Claim], df: pd.DataFrame) -> list[ClaimResult]:
    """Judge each claim on the mean of its metric over the matching rows of ``reports.frame.load``."""
    return [_judge(claim, df) for claim in claims]


def write_junit(results: Sequence[ClaimResult], path: str | Path) -> None:
    """Write the verdicts as JUnit XML: one testcase per claim, a ``<failure>`` for each failed one."""
    failures = sum(not result.passed for result in results)
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": "0", "skipped": "0"}
    root = ET.Element("testsuites", counts)
    suite = ET.SubElement(root, "testsuite", {"name": "secbench.gate", **counts})
    for result in results:
        case = ET.SubElement(suite, "testcase", {"classname": "secbench.gate", "name": result.claim.label})
        if not result.passed:
            failure = ET.SubElement(case, "failure", {"message": result.reason, "type": "ClaimFailed"})
            failure.text = _describe(result)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _values(claim: Claim, df: pd.DataFrame, selectors: Mapping[str, Any]) -> tuple[pd.Series, str]:
    """The claim's metric over the runs ``selectors`` match, and why there are none (or "")."""
    runs = select(df, **selectors)
    values = runs.loc[runs["metric"] == claim.metric, "value"]
    if not values.empty:
        return values, ""
    reason = "no matching results"
    if not runs.empty:  # the selectors matched, the metric name did not
        reason += f" (the matching runs have no {claim.metric!r}, only {', '.join(runs['metric'].unique())})"
    return values, reason


def _judge(claim: Claim, df: pd.DataFrame) -> ClaimResult:
    values, reason = _values(claim, df, claim.selectors)
    if reason:
        return ClaimResult(claim, None, 0, False, reason)
    measured, n = float(values.mean()), len(values)
    what = "mean"
    if claim.versus:
        others, reason = _values(claim, df, {**claim.selectors, **claim.versus})
        if reason:
            return ClaimResult(claim, None, 0, False, f"{reason} for versus {dict(claim.versus)}")
        measured, n, what = measured - float(others.mean()), min(n, len(others)), "mean difference"
    if n < claim.min_runs:
        reason = f"{n} matching run(s), fewer than min_runs {claim.min_runs}"
    elif not claim.holds(measured):
        reason = f"{what} {measured:.6g} over {n} run(s) is not {claim.op} {claim.value:g}"
    else:
        reason = ""
    return ClaimResult(claim, measured, n, passed=not reason, reason=reason)


def _describe(result: ClaimResult) -> str:
    claim = result.claim
    return (
        f"measured {result.measured} over {result.n_runs} run(s); claim {claim.metric} {claim.op} {claim.value:g} "
        f"(min_runs {claim.min_runs}, tol {claim.tol:g}) on {dict(claim.selectors) or 'all runs'}"
    )


def _show(value: Any) -> str:
    """A selector value as the claims file would spell it."""
    if isinstance(value, list):
        return f"[{', '.join(map(_show, value))}]"
    return "null" if value is None else str(value)


def _parse_claim(raw: Any, where: str) -> Claim:
    if not isinstance(raw, dict):
        raise SecbenchError(
            f"{where}: expected a mapping with metric, op and value, got {type(raw).__name__}"
        )
    name = raw.get("name", raw.get("id"))
    if name is not None:
        where = f"{where} ({_brief(name) if not isinstance(name, str) else name[:80]})"
    missing = [key for key in ("metric", "op", "value") if raw.get(key) is None]
    if missing:
        raise SecbenchError(f"{where}: missing {', '.join(missing)}")
    for key in raw:
        if key not in CLAIM_KEYS and key not in IDENTITY_FIELDS:
            raise SecbenchError(
                f"{where}: {UnknownNameError('key', str(key)[:80], (*CLAIM_KEYS, *IDENTITY_FIELDS))}"
            )
    if not isinstance(raw["metric"], str):
        raise SecbenchError(f"{where}: metric must be a name, got {_brief(raw['metric'])}")
    op = raw["op"]
    if op not in _COMPARE:
        hint = "; quote it in YAML, e.g. op: '>'" if op == "" else ""  # a bare `op: >` parses as ""
        raise SecbenchError(f"{where}: unknown op {_brief(op)}; valid: {', '.join(OPS)}{hint}")
    selectors = {key: raw[key] for key in IDENTITY_FIELDS if key in raw}
    for key, wanted in selectors.items():
        if not all(isinstance(v, _SCALARS) for v in (wanted if isinstance(wanted, list) else [wanted])):
            raise SecbenchError(
                f"{where}: selector {key} must be a value or a list of values, got {_brief(wanted)}"
            )
    min_runs = raw.get("min_runs", 1)
    if isinstance(min_runs, bool) or not isinstance(min_runs, int) or min_runs < 1:
        raise SecbenchError(f"{where}: min_runs must be a whole number >= 1, got {_brief(min_runs)}")
    tol = _number(raw.get("tol", DEFAULT_TOL), f"{where}: tol")
    if tol < 0:
        raise SecbenchError(f"{where}: tol must be >= 0, got {tol:g}")
    value = _number(raw["value"], f"{where}: value")
    versus = raw.get("versus", {})
    if "versus" in raw and (not isinstance(versus, dict) or not versus) or any(key not in IDENTITY_FIELDS for key in versus):
        raise SecbenchError(f"{where}: versus must map identity fields ({', '.join(IDENTITY_FIELDS)}) to the "
                            f"values of the runs compared against, got {_brief(versus)}")
    return Claim(raw["metric"], op, value, selectors, min_runs, tol, None if name is None else str(name), versus)


def _number(raw: Any, what: str) -> float:
    """A finite float; numeric strings count because YAML reads ``1e-3`` (no dot) as a string."""
    try:
        number = float(raw) if isinstance(raw, int | float | str) and not isinstance(raw, bool) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise SecbenchError(f"{what} must be a finite number, got {_brief(raw)}")
    return number


def _brief(value: Any) -> str:
    """A short repr: a value from a claims file may be huge or an anchor bomb of shared lists."""
    return _BRIEF.repr(value)


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxlist, _BRIEF.maxdict, _BRIEF.maxstring, _BRIEF.maxother = 2, 4, 4, 60, 60


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{problem}{where}"
