"""What every ``emodiff`` subcommand shares: the consoles, the options defined once (STYLE habit 8),
``--threads`` applied, the one-line error wrapper and the progress bar."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from emodiff.errors import EmodiffError
from emodiff.parallel import use_threads

# emoji=False: rich would turn ":abc:" in user text (a path, `--folds groups:abc:`) into an emoji,
# which markup escaping does not prevent; emodiff prints no emoji codes of its own.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

# Options shared by several commands, defined once (STYLE habit 8).
StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="The HDF5 store. Default: $EMODIFF_STORE, else ./emodiff.h5.", show_default=False),
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace what the store already holds for this step.")]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", help="CPU threads: torch's intra-op threads (and inter-op ones), and the default --workers of "
    "prepare and augment (classify's --workers share them). Default: the cores this process may run on (its CPU affinity), or $OMP_NUM_THREADS when set; "
    "never more than those cores (a larger count is capped, with a note); on a shared machine leave a core to each other busy job (docs/performance.md).", show_default=False)]


F = TypeVar("F", bound=Callable[..., None])


def canonical_corpus(corpus: str | None) -> str | None:
    """--corpus as the store spells it (RAVDESS, MSP_IMPROV -> ravdess, msp-improv), as `emodiff prepare` wrote it;
    classify's names go through ClassifyJob, which does the same."""
    from emodiff.corpora import canonical_name

    return None if corpus is None else canonical_name(corpus, "--corpus")


def canonical_corpora(corpora: list[str] | None) -> list[str]:
    """A repeatable --corpus, each as :func:`canonical_corpus` reads it."""
    return [str(canonical_corpus(c)) for c in corpora or []]


def _threads(threads: int | None) -> int:
    """``--threads`` applied (emodiff.parallel.use_threads), with its note on stderr when capped at the cores."""
    return use_threads(threads, note=lambda text: err_console.print(f"note: {text}", markup=False, highlight=False))


def _friendly(command: F) -> F:
    """EmodiffError -> one red line on stderr and exit code 1; Ctrl-C -> a note and 130.

    A full disk met outside the store's writer (a checkpoint, a report file) is one line too, and so is a path
    too long for the file system.
    """

    @functools.wraps(command)
    def run(*args: object, **kwargs: object) -> None:
        try:
            command(*args, **kwargs)
        except EmodiffError as err:
            err_console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None
        except OSError as err:
            from emodiff.errors import no_space

            if err.errno == errno.ENAMETOOLONG:  # a path built inside a step; the ones typed are checked up front
                from emodiff.paths import shown

                err_console.print(f"[red]error:[/red] {escape(shown(str(err.filename or '')))}: a name in this path "
                                  "is too long for the file system; choose a shorter one", highlight=False,
                                  soft_wrap=True)
                raise typer.Exit(code=1) from None
            if not no_space(err):
                raise
            where = f"{err.filename}: " if err.filename else ""
            err_console.print(f"[red]error:[/red] {escape(where)}no space left on device; free some space and run "
                              "again", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt:
            err_console.print("[red]interrupted[/red]: nothing was added to the store")
            raise typer.Exit(code=130) from None

    return run  # type: ignore[return-value]


class _Bar:
    """The CLI's :class:`emodiff.progress.Progress`: a rich bar on stderr that appears only once the work
    is known (not before an early error).

    A note shows after the description on the bar (train's loss and speed); with ``lines=True`` each
    note is printed on stderr as a line of its own instead (the study's log of its steps).
    """

    def __init__(self, description: str, lines: bool = False):
        self.description = description
        self.lines = lines
        self.progress = RichProgress(  # markup=False: the description holds user text (a run or corpus name)
            TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
        )
        self.task: int | None = None

    def total(self, n: int) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(self.description, total=n)
        else:
            self.progress.reset(self.task, total=n)

    def advance(self, k: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, k)

    def note(self, text: str) -> None:
        if self.lines:
            err_console.print(text, markup=False, highlight=False)
        elif self.task is not None:
            self.progress.update(self.task, description=f"{self.description} {text}")

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.progress.stop()
