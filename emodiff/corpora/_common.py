"""Helpers shared by the corpus readers: root checks, hidden-file filtering, the listing builder."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

from emodiff.corpora.base import Listing, Problem, Utterance
from emodiff.errors import EmodiffError

_SPACES = re.compile(r"\s+")


def corpus_root(root: Path, expected: str) -> Path:
    """``root`` as an absolute path, or EmodiffError when it is not a directory.

    ``expected`` names what the user should point at ("the IEMOCAP_full_release folder").
    The path is made absolute without resolving symlinks, so records keep the user's spelling.
    """
    if not root.is_dir():
        raise EmodiffError(f"{root}: no such directory (expected {expected})")
    return Path(os.path.abspath(root))


def visible_files(root: Path, pattern: str, recursive: bool = False,
                  builder: ListingBuilder | None = None) -> list[Path]:
    """Files under ``root`` matching ``pattern``, sorted by path, hidden entries left out.

    macOS copies carry AppleDouble ``._name`` companions that match the same globs but hold
    resource forks, not data; any path component starting with ``.`` (those, ``.git``) is skipped.
    With ``recursive``, symlinked folders are searched too (:func:`_tree`). A symlink whose target
    is missing (or a loop of links) is no file either; with ``builder`` it is reported there
    (``dangling symlink -> target``), so that it shows among the skipped files rather than vanishing:
    when its name matches ``pattern``, and with ``recursive`` whatever its name, since it may have
    been a folder of clips (``Actor_09 -> /gone``).
    """
    found = _tree(root) if recursive else root.glob(pattern)
    files = []
    for path in sorted(found):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        matches = path.match(pattern)
        if matches and path.is_file():
            files.append(path)
        elif builder is not None and (matches or recursive) and is_dangling(path):
            builder.dangling(path)
    return files


def _tree(root: Path) -> Iterator[Path]:
    """Every entry below ``root``, depth first in sorted order, hidden folders not entered.

    Unlike ``Path.rglob`` before Python 3.13, symlinked folders are entered (``Actor_09 -> /disk2/Actor_09``
    is a common way to assemble a copy); each real folder only once, by device and inode, so a link to
    an ancestor or to a folder already searched neither loops nor lists a file twice. An unreadable
    folder is passed over, as rglob does.
    """
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
            entries = sorted(entry.name for entry in os.scandir(folder))
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        below = []
        for name in entries:
            path = folder / name
            yield path
            if not name.startswith(".") and path.is_dir():  # is_dir follows links; False for a dangling one
                below.append(path)
        stack.extend(reversed(below))


def is_dangling(path: Path) -> bool:
    """Whether ``path`` is a symlink whose target does not exist (or a loop of links)."""
    return path.is_symlink() and not path.exists()


def dangling_reason(path: Path) -> str:
    """The one wording for a symlink that points nowhere, naming its target."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return f"dangling symlink -> {target}"


def squeeze(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return _SPACES.sub(" ", text).strip()


def duplicate_reason(utt_id: str, other: str) -> str:
    """The one wording every corpus reader uses for a second occurrence of an utterance id."""
    return f"duplicate utterance id {utt_id} (also at {other})"


class ListingBuilder:
    """Collects a corpus reader's utterances, exclusions and problems into a :class:`Listing`.

    Ids are claimed once: the first claim wins and every later one becomes a duplicate
    problem, so a reader claims an id before it looks at the label or the audio.
    """

    def __init__(self) -> None:
        self._first_at: dict[str, str] = {}
        self._utterances: list[Utterance] = []
        self._excluded: Counter[str] = Counter()
        self._problems: list[Problem] = []
        self.dangling_stems: set[str] = set()  # stems of the dangling symlinks reported
        self._dangling: set[str] = set()  # their paths

    def claim(self, utt_id: str, path: Path | str, location: str | None = None) -> bool:
        """Register ``utt_id`` found at ``path``; False (and a problem) if it was seen before.

        ``location`` is how later duplicates refer to this occurrence (``file:line`` for label
        files where one file may hold many ids); it defaults to ``path``.
        """
        if utt_id in self._first_at:
            self.problem(path, duplicate_reason(utt_id, self._first_at[utt_id]))
            return False
        self._first_at[utt_id] = location if location is not None else str(path)
        return True

    def exclude(self, label: str) -> None:
        """Count one utterance whose corpus label is deliberately outside the 4-class set."""
        self._excluded[label] += 1

    def problem(self, path: Path | str, reason: str) -> None:
        """Record a defect of the copy; the entry is left out of the listing."""
        self._problems.append(Problem(str(path), reason))

    def dangling(self, path: Path) -> None:
        """Record a symlink whose target is missing, once however many listings meet it (RAVDESS lists
        ``*.wav`` and ``*.flac``); :attr:`dangling_stems` remembers its stem."""
        if str(path) in self._dangling:
            return
        self._dangling.add(str(path))
        self.dangling_stems.add(path.stem)
        self.problem(path, dangling_reason(path))

    def emotion(self, label: str, kept: Mapping[str, int], excluded: Collection[str], path: Path | str,
                what: str = "") -> int | None:
        """The emotion id of a corpus ``label``, or None after counting an excluded label or
        reporting an unknown one (``what``, such as " for <id>", ends the problem's reason)."""
        if label in excluded:
            self.exclude(label)
            return None
        if label not in kept:
            self.problem(path, f"unknown label {label!r}{what}")
            return None
        return kept[label]

    def add(self, utterance: Utterance) -> None:
        """Keep one 4-class utterance."""
        self._utterances.append(utterance)

    def listing(self) -> Listing:
        """The collected records, utterances sorted by id and exclusions by label."""
        return Listing(
            utterances=sorted(self._utterances, key=lambda utt: utt.id),
            excluded=dict(sorted(self._excluded.items())),
            problems=list(self._problems),
        )
