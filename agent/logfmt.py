"""Consul's log line format: `    2017/02/14 15:27:58 [INFO] raft: Election won. Tally: 1`,
and with -log-json hclog's JSON, one object a line: @level, @message, @module, @timestamp.

Loggers are named after Consul's subsystems ("raft", "serf", "memberlist", "consul",
"agent", "agent.rpc", "dns", "http"); messages carry neither level nor subsystem.
"""

from __future__ import annotations

import json
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


#: hclog's level names in JSON
JSON_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error"}


def format_json(record: logging.LogRecord) -> str:
    """hclog's JSON line: `{"@level":"info","@message":"...","@module":"agent.raft",
    "@timestamp":"2021-03-10T10:51:12.345678+00:00"}` (the timestamp to the microsecond,
    with the local zone's offset, as hclog's "2006-01-02T15:04:05.000000Z07:00")."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
    offset = time.strftime("%z", time.localtime(record.created))
    zone = "Z" if offset in ("+0000", "-0000") else f"{offset[:3]}:{offset[3:]}"
    micros = int(record.msecs * 1000)
    fields = {
        "@level": JSON_LEVELS.get(record.levelname, "error"),
        "@message": record.getMessage(),
        "@module": record.name,
        "@timestamp": f"{stamp}.{micros:06d}{zone}",
    }
    if record.exc_info:
        fields["error"] = logging.Formatter().formatException(record.exc_info)
    return json.dumps(fields, separators=(",", ":"))


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return format_json(record)


def formatter(log_json: bool) -> logging.Formatter:
    return JSONFormatter() if log_json else ConsulFormatter()
