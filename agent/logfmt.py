"""Consul's log line format: `    2017/02/14 15:27:58 [INFO] raft: Election won. Tally: 1`.

Loggers are named after Consul's subsystems ("raft", "serf", "memberlist", "consul",
"agent", "agent.rpc", "dns", "http"); messages carry neither level nor subsystem.
"""

from __future__ import annotations

import logging
import time

LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARN", "ERROR": "ERR", "CRITICAL": "ERR"}
#: -log-level names as Consul accepts them -> Python levels.
LEVEL_BY_NAME = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "err": logging.ERROR,
    "error": logging.ERROR,
}


def format_record(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(record.created))
    level = LEVELS.get(record.levelname, record.levelname)
    return f"    {stamp} [{level}] {record.name}: {record.getMessage()}"


class ConsulFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = format_record(record)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line
