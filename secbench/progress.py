"""Progress reporting for long loops, decoupled from rich so the engine runs silently in tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Task(Protocol):
    def advance(self, n: int = 1, **fields: Any) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: int) -> Any:
        """A context manager yielding a :class:`Task`."""
        ...


class _NullTask:
    def advance(self, n: int = 1, **fields: Any) -> None:
        pass


class NullProgress:
    """Reports nothing: the default for library calls and tests."""

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Task]:
        yield _NullTask()


class _RichTask:
    def __init__(self, bar: Any, task_id: Any):
        self._bar, self._id = bar, task_id

    def advance(self, n: int = 1, **fields: Any) -> None:
        info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        self._bar.update(self._id, advance=n, info=info)


class RichProgress:
    """Bars on a shared ``rich.progress.Progress``; a finished bar is removed so nested loops stay tidy."""

    def __init__(self, console: Any = None):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as _Progress

        self.bar = _Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=False,
        )

    def __enter__(self) -> RichProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Task]:
        task_id = self.bar.add_task(description, total=total, info="")
        try:
            yield _RichTask(self.bar, task_id)
        finally:
            self.bar.remove_task(task_id)
