"""The one exception smelt raises for bad input or a derivation it refuses."""


class SmeltError(Exception):
    """A diagnostic of smelt: ``text`` is what the CLI prints (file, line, column, the
    source line with a caret, and the hint); ``message``, ``file``, ``line``,
    ``column``, ``code`` and ``hint`` are its parts (``None`` where no place in a file
    explains the error)."""

    def __init__(self, message, text, file=None, line=None, column=None, code=None, hint=None):
        super().__init__(text.rstrip("\n") if text else message)
        self.message = message
        self.text = text
        self.file = file
        self.line = line
        self.column = column
        self.code = code
        self.hint = hint
