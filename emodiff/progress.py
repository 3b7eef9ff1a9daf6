"""How a step tells its caller how far it is: the one progress interface every step takes.

Every step has the same call shape, ``step(job, progress=QUIET) -> result``; the step calls
``progress``, never prints. The CLI's progress bar implements :class:`Progress`; a library user
passes nothing (:data:`QUIET`) or their own object with these three methods.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """What a running step reports.

    - ``total(n)``: the step now has ``n`` units of work (utterances, texts, segments, training
      steps, folds). A step may call it again, for its next stage or its next corpus: that resets
      the count to 0 of the new ``n``. Nothing is reported before the first ``total``, so a step
      that fails early (bad input) leaves no bar behind.
    - ``advance(k=1)``: ``k`` more units of the latest ``total`` are done; ``k`` may be 0.
    - ``note(text)``: a status line in plain text (never markup): training's loss and speed, the
      study's log of its steps. A caller may show only the latest note or every one.
    """

    def total(self, n: int) -> None: ...

    def advance(self, k: int = 1) -> None: ...

    def note(self, text: str) -> None: ...


class Quiet:
    """Progress that goes nowhere; a subclass may hear only the calls it wants."""

    def total(self, n: int) -> None:
        pass

    def advance(self, k: int = 1) -> None:
        pass

    def note(self, text: str) -> None:
        pass


QUIET: Progress = Quiet()
"""The default of every step: report nothing."""
