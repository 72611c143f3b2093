"""The daemon's ``--log-file``: a log that survives a full disk.

Python's file handler prints a traceback on stderr for every line it cannot write; on a
full disk that is every line.  Here a line that finds no room is dropped and counted,
stderr gets one note, and the first line written once there is room again says how
many were lost."""

from __future__ import annotations

import contextlib
import errno
import logging
import logging.handlers
import sys


class LogFile(logging.handlers.WatchedFileHandler):
    def __init__(self, filename: str) -> None:
        super().__init__(filename, encoding="utf-8")
        #: lines dropped since the last one written
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        n = self.dropped
        if n:
            note = logging.LogRecord("rill.node", logging.WARNING, __file__, 0,
                                     "%d log line(s) were dropped: the disk holding the log "
                                     "was full", (n,), None)
            super().emit(note)
            if self.dropped != n:  # no room yet: this line is dropped too
                self.dropped = n + 1
                return
            self.dropped = 0
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            if self.dropped == 0:
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.write(f"rill: the disk holding {self.baseFilename} is full: "
                                     "log lines are dropped until there is room\n")
            self.dropped += 1
            return
        super().handleError(record)
