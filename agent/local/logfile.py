"""`log_file`: the agent's log lines also to a file, rotated as Consul's logging/logfile.go.

The current file always has the configured name (`consul.log` when log_file names a
directory). It rotates when it has `log_rotate_bytes` (0: no limit) or is
`log_rotate_duration` old (default 24h): it is renamed `<name>-<unix nanoseconds><ext>` and a
new one opened; then of the renamed files only the newest `log_rotate_max_files` are kept
(0 keeps every one, -1 none). Writes are a buffered append and a flush, as the stdout
writer's; a file that cannot be written is reported once on stderr, the agent goes on.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TextIO

#: Consul's defaults
DEFAULT_ROTATE_DURATION = 24 * 3600.0
DEFAULT_FILE_NAME = "consul.log"


def log_path(log_file: str) -> Path:
    """The current file's path: log_file itself, or consul.log in it when it is a directory."""
    if log_file.endswith("/") or Path(log_file).is_dir():
        return Path(log_file) / DEFAULT_FILE_NAME
    return Path(log_file)


class LogFile(logging.Handler):
    def __init__(
        self,
        log_file: str,
        *,
        max_bytes: int = 0,
        duration: float = DEFAULT_ROTATE_DURATION,
        max_files: int = 0,
        level: int = logging.INFO,
    ) -> None:
        super().__init__(level=level)
        self.path = log_path(log_file)
        self.max_bytes = max_bytes
        self.duration = duration if duration > 0 else DEFAULT_ROTATE_DURATION
        self.max_files = max_files
        self._file: TextIO | None = None
        self._written = 0
        self._created = 0.0
        self._failed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)  # OSError: the caller reports it
        self._open()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o640)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._written = self._file.tell()
        self._created = time.time()

    def _pattern(self) -> tuple[str, str]:
        ext = self.path.suffix or ".log"
        stem = self.path.name.removesuffix(self.path.suffix) if self.path.suffix else self.path.name
        return stem + "-", ext

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        head, ext = self._pattern()
        self.path.rename(self.path.with_name(f"{head}{time.time_ns()}{ext}"))
        self._open()
        self._prune()

    def _prune(self) -> None:
        if self.max_files == 0:
            return
        head, ext = self._pattern()
        old = sorted(
            p
            for p in self.path.parent.glob(f"{head}*{ext}")
            if p.name[len(head) : -len(ext)].isdigit()
        )
        keep = max(self.max_files, 0)
        for p in old[: len(old) - keep] if keep else old:
            p.unlink(missing_ok=True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            if self._file is None:
                return
            too_big = self.max_bytes > 0 and self._written >= self.max_bytes
            if too_big or time.time() - self._created >= self.duration:
                self._rotate()
            assert self._file is not None
            self._file.write(line)
            self._file.flush()
            self._written += len(line.encode())
        except OSError as exc:
            if not self._failed:
                self._failed = True
                sys.stderr.write(f"==> Error writing log file {self.path}: {exc}\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()
