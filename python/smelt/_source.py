"""Rules and problems given as text or as paths."""

import os
from pathlib import Path


def _is_path(given):
    """A path: an ``os.PathLike``, or a one-line string naming an existing file."""
    return isinstance(given, os.PathLike) or (
        isinstance(given, str) and "\n" not in given and given.strip() and os.path.isfile(given)
    )


def read(given):
    """``(text, name)`` of a rule or problem: a path (see ``_is_path``) is read; any other
    string is the source itself."""
    if _is_path(given):
        path = Path(given)
        return path.read_text(encoding="utf-8"), str(path)
    if not isinstance(given, str):
        raise TypeError(f"expected the rule's text or a path, not {type(given).__name__}")
    return given, "<string>"


def directory(given):
    """The directory a problem's data files are relative to: the file's, or the current
    one for a problem given as text."""
    return str(Path(given).resolve().parent) if _is_path(given) else os.getcwd()
