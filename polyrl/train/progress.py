"""A rich progress bar with steps/s, ETA and the latest return."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainProgress:
    """Context manager wrapping ``rich.progress``; a no-op when disabled."""

    def __init__(self, description: str, total: int, start: int = 0, *, unit: str = "steps", enabled: bool = True) -> None:
        self.enabled = enabled
        self.latest = "-"
        if enabled:
            self._p = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                TextColumn(f"{{task.completed:,.0f}}/{{task.total:,.0f}} {unit}"),
                TextColumn(f"{{task.fields[sps]:,.0f}} {unit}/s"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                TextColumn("return {task.fields[ret]}"), transient=False,
            )
            self._task = self._p.add_task(description, total=total, completed=start, sps=0.0, ret="-")

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            self._p.start()
        return self

    def update(self, completed: int, sps: float, latest_return: float | None = None) -> None:
        if latest_return is not None:
            self.latest = f"{latest_return:.1f}"
        if self.enabled:
            self._p.update(self._task, completed=completed, sps=sps, ret=self.latest)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._p.stop()
