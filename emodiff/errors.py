"""The one exception type of emodiff.

Library code raises :class:`EmodiffError` with a message that names the file (or store group)
and what was expected. Only the CLI (``emodiff.cli``) turns it into a one-line message and a non-zero exit.
"""


class EmodiffError(Exception):
    """A user-facing failure: bad input, a missing model, a store held by another writer."""
