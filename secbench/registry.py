"""One registry for every named component: scenarios, attacks, defenses, models, datasets.

Built-ins register themselves with ``@register(kind, name)`` when their package is imported;
the registry imports that package the first time a kind is asked for, so ``secbench --help``
never pays for torch. Third-party packages add entries through the entry-point group
``secbench.plugins`` (entry name ``<kind>.<name>``, value ``"pkg.module:factory"``); they are
loaded only when used, and a built-in always wins a name clash.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar

from secbench.errors import SecbenchError, UnknownNameError

KINDS = ("scenario", "attack", "defense", "model", "dataset", "pointcloud", "segmenter", "detection-dataset",
         "detector")
_BUILTIN_PACKAGES = {
    "scenario": "secbench.scenarios",
    "attack": "attacks",
    "defense": "defenses",
    "model": "secbench.models",
    "dataset": "secbench.data",
    "pointcloud": "secbench.data",  # point-cloud segmentation datasets (PointSplits, not images)
    "segmenter": "secbench.models",  # point-cloud segmentation networks
    "detection-dataset": "secbench.data",  # images with boxes (DetectionSplits)
    "detector": "secbench.models",  # dense object detectors over a zoo backbone
}
PLUGIN_GROUP = "secbench.plugins"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Entry:
    kind: str
    name: str
    summary: str
    factory: Callable[..., Any] | None = None
    target: str | None = None  # "module:attr" of a plugin not imported yet
    source: str = "builtin"

    def load(self) -> Callable[..., Any]:
        if self.factory is None:
            module, _, attr = (self.target or "").partition(":")
            try:
                self.factory = getattr(importlib.import_module(module), attr)
            except Exception as exc:  # a broken plugin only breaks the runs that name it
                raise SecbenchError(f"plugin {self.kind} {self.name!r} ({self.source}) failed to load: {exc}") from exc
        return self.factory


_entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_loaded: set[str] = set()


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UnknownNameError("kind", kind, KINDS)


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def register(kind: str, name: str, *, summary: str | None = None) -> Callable[[F], F]:
    """Decorator: make ``factory`` available as ``name`` of ``kind``. A duplicate name raises."""
    _check_kind(kind)

    def decorate(factory: F) -> F:
        if name in _entries[kind] and _entries[kind][name].source == "builtin":
            raise ValueError(f"{kind} {name!r} is registered twice")
        _entries[kind][name] = Entry(kind, name, summary or _first_line(factory), factory=factory)
        return factory

    return decorate


def _ensure_loaded(kind: str) -> None:
    if kind in _loaded:
        return
    _loaded.add(kind)
    importlib.import_module(_BUILTIN_PACKAGES[kind])
    for ep in entry_points(group=PLUGIN_GROUP):
        ep_kind, _, ep_name = ep.name.partition(".")
        if ep_kind != kind or not ep_name or ep_name in _entries[kind]:
            continue  # built-ins win
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "plugin"
        _entries[kind][ep_name] = Entry(kind, ep_name, f"(plugin: {dist})", target=ep.value, source=dist)


def get(kind: str, name: str) -> Entry:
    """The registry entry for ``name``; an unknown name raises with the closest match."""
    _check_kind(kind)
    _ensure_loaded(kind)
    if name not in _entries[kind]:
        raise UnknownNameError(kind, name, _entries[kind], hint=f"see `secbench list {kind}s`")
    return _entries[kind][name]


def list_names(kind: str, pattern: str = "*") -> list[str]:
    _check_kind(kind)
    _ensure_loaded(kind)
    return sorted(n for n in _entries[kind] if fnmatch.fnmatch(n, pattern))


def describe(kind: str) -> list[tuple[str, str]]:
    """``(name, one-line summary)`` pairs for ``secbench list``."""
    return [(name, _entries[kind][name].summary) for name in list_names(kind)]


def loaded_plugins() -> list[str]:
    """``"kind.name (distribution version)"`` for every plugin entry used so far, for the record."""
    return sorted(f"{e.kind}.{e.name} ({e.source})" for table in _entries.values() for e in table.values()
                  if e.source != "builtin" and e.factory is not None)


def create(kind: str, name: str, /, **cfg: Any) -> Any:
    """Build ``name`` of ``kind`` with ``cfg``. ``None`` values are dropped so that an unset CLI
    option never masks the component's own default; an option it does not take raises."""
    factory = get(kind, name).load()
    cfg = {k: v for k, v in cfg.items() if v is not None}
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in cfg:
            if key not in params:
                raise UnknownNameError(f"option for {kind} {name!r}:", key, params)
    return factory(**cfg)


def create_model(name: str, *, num_classes: int, img_size: int = 32, **cfg: Any) -> Any:
    """Build a registered model: ``(N, 3, img_size, img_size)`` floats in [0, 1] → ``(N, num_classes)`` logits."""
    return create("model", name, num_classes=num_classes, img_size=img_size, **cfg)
