"""The error every bad sweep or cluster profile ends as: file, field path and line named."""

from __future__ import annotations

from pathlib import Path


class SpecError(ValueError):
    """A bad sweep or profile: names the file, the field path and, when known, the line."""

    def __init__(self, message: str, *, file: str | Path | None = None, path: str = "", line: int | None = None):
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.path = path
        self.line = line

    def __str__(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.path + ': ' if self.path else ''}{self.message}"
