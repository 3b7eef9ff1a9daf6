"""The one exception type of emodiff.

Library code raises :class:`EmodiffError` with a message that names the file (or store group)
and what was expected. Only the CLI (``emodiff.cli``) turns it into a one-line message and a non-zero exit.
:func:`no_space` tells a full disk among the OS's and HDF5's errors, which every writer turns into one.
"""

import errno


class EmodiffError(Exception):
    """A user-facing failure: bad input, a missing model, a store held by another writer."""


def no_space(err: BaseException) -> bool:
    """Whether ``err`` says the disk is full (ENOSPC or a quota), from the OS or from HDF5 via h5py."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return "No space left on device" in text or "errno = 28," in text
