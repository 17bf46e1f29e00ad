"""The CLI in this process, as a user meets it: the exit status and what reached stdout and stderr."""
from __future__ import annotations

import pytest

from bench import cli


def rooflab(capsys, *args):
    """Run ``rooflab ARGS`` (paths allowed among them); (exit status, stdout, stderr) of this call alone."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return e.value.code, out, err


def one_line_error(code: int, err: str, needle: str = "") -> None:
    """A user's mistake: exit 2 and one line on stderr that names it, no traceback, no "internal error"."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rooflab: error: "), err
    assert "internal error" not in err and "Traceback" not in err and needle in lines[0], err
