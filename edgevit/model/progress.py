"""Rich progress for training: one bar per run, loss / accuracy live, a line per epoch."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class EpochProgress:
    """Tracks images seen in the current epoch and prints a summary line when it ends."""

    def __init__(self, progress: Progress, console: Console, epochs: int, images_per_epoch: int) -> None:
        self._p, self._console, self._epochs = progress, console, epochs
        self._task = progress.add_task("train", total=images_per_epoch, stats="")

    def start_epoch(self, epoch: int) -> None:
        """Reset the bar for epoch `epoch` (0-based)."""
        self._p.reset(self._task, description=f"epoch {epoch + 1}/{self._epochs}", stats="")

    def advance(self, loss: float, acc: float, images: int) -> None:
        """Add `images` to the bar and show the running loss and accuracy."""
        self._p.update(self._task, advance=images, stats=f"loss {loss:.4f}  acc {acc:.2%}")

    def end_epoch(self, epoch: int, loss: float, train_acc: float, val_acc: float) -> None:
        """Print one permanent line for the finished epoch."""
        self._console.print(
            f"epoch {epoch + 1}/{self._epochs}  loss {loss:.4f}  train {train_acc:.2%}  val {val_acc:.2%}"
        )


@contextmanager
def epoch_progress(epochs: int, images_per_epoch: int, start_epoch: int = 0) -> Iterator[EpochProgress]:
    """Context manager yielding an EpochProgress; notes a resumed run."""
    console = Console(stderr=True)
    if start_epoch:
        console.print(f"resuming after epoch {start_epoch}/{epochs}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as p:
        yield EpochProgress(p, console, epochs, images_per_epoch)
