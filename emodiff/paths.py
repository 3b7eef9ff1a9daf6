"""Paths a user types (``--store``, ``--out``, ``--runs``), checked where each is resolved, before any work.

The operating system refuses a file name longer than ``NAME_MAX`` bytes (255 on Linux file systems)
and a path longer than ``PATH_MAX`` (4096) with ``ENAMETOOLONG``, deep inside whatever step first
touches the path. :func:`checked_path` says so at once, in one line naming the flag, and leaves room
for the names emodiff adds: the temporary names beside a store or a report folder, the files inside
a run or report folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from emodiff.errors import EmodiffError

NAME_MAX = 255  # bytes in one file name, where os.pathconf cannot tell
PATH_MAX = 4096  # bytes in a whole path, with its terminating NUL
INSIDE = 256  # bytes kept for the files emodiff writes inside a folder (figures/..., ckpt-0000300.pt.tmp)


def checked_path(path: str | Path, flag: str, room: int = 0) -> Path:
    """``path`` as a Path, or EmodiffError naming ``flag`` when the OS could not take it.

    Every part of ``path`` must fit the file system's name limit, its last one with ``room`` bytes to
    spare (the temporary name emodiff builds from it, such as ``.report.partial-PID``), and the whole
    path, made absolute, must leave :data:`INSIDE` bytes of the path limit.
    """
    path = Path(path)
    name_max, path_max = _limits()
    whole = len(os.fsencode(str(path.absolute())))  # absolute(): no resolve, so no system call on the path
    if whole + INSIDE >= path_max:
        raise EmodiffError(f"{flag} {shown(str(path))}: a path of {whole} bytes (made absolute); expected one of "
                           f"at most {path_max - INSIDE - 1}, to leave room for the files emodiff puts inside "
                           f"(the system's limit is {path_max})")
    parts = path.parts
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        limit = name_max - (room if last else 0)
        size = len(os.fsencode(part))
        if size > limit:
            which = "its name" if last else f"the folder name {shown(part)}"
            spare = f", less {room} for the temporary names emodiff adds" if room and last else ""
            raise EmodiffError(f"{flag} {shown(str(path))}: {which} is {size} bytes; expected at most {limit} "
                               f"(the file system's limit, {name_max}{spare})")
    return path


def _limits() -> tuple[int, int]:
    """(name limit, path limit) of the file system of the working folder."""
    try:
        return os.pathconf(".", "PC_NAME_MAX"), os.pathconf(".", "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or the folder is gone
        return NAME_MAX, PATH_MAX


def shown(text: str) -> str:
    """``text`` short enough for a one-line message: its start and end around the number of characters."""
    return text if len(text) <= 80 else f"{text[:40]}...{text[-24:]} ({len(text)} characters)"
