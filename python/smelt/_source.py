"""Rules and problems given as text or as paths."""

import os
from pathlib import Path


def read(given):
    """``(text, name)`` of a rule or problem: a path (``os.PathLike``, or a one-line
    string naming an existing file) is read; any other string is the source itself."""
    if isinstance(given, os.PathLike) or (
        isinstance(given, str) and "\n" not in given and given.strip() and os.path.isfile(given)
    ):
        path = Path(given)
        return path.read_text(encoding="utf-8"), str(path)
    if not isinstance(given, str):
        raise TypeError(f"expected the rule's text or a path, not {type(given).__name__}")
    return given, "<string>"


def directory(given):
    """The directory a problem's data files are relative to."""
    if isinstance(given, os.PathLike) or (
        isinstance(given, str) and "\n" not in given and os.path.isfile(given)
    ):
        return str(Path(given).resolve().parent)
    return os.getcwd()
