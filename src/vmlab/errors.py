"""User-facing input errors: one line, `FILE:LINE:COL: error: ...`, exit status 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad input from a user (a scenario, a trace, an option); never a model bug."""

    def __init__(self, message: str, path: str = "", line: int = 0, col: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.col = col

    def __str__(self) -> str:
        where = self.path
        if self.line:
            where += f":{self.line}"
            if self.col:
                where += f":{self.col}"
        return f"{where}: error: {self.message}" if where else f"error: {self.message}"
