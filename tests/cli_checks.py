"""What every CLI test asks of a bad input: exit code 1, no traceback, one `error:` line with the given words."""

from __future__ import annotations

from typing import Any


def one_line_error(result: Any, *fragments: str, first: bool = False) -> str:
    """The error line of a CliRunner ``result`` (rich may fold it at the terminal width), with every ``fragment``
    in it; with ``first``, nothing came before it on stderr (no progress bar: no work began)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    errors = [i for i, ln in enumerate(lines) if ln.startswith("error: ")]
    assert len(errors) == 1, lines
    assert not first or errors[0] == 0, lines
    flat = " ".join(" ".join(lines[errors[0]:]).split())
    for fragment in fragments:
        assert fragment in flat, (fragment, flat)
    return flat
