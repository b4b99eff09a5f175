"""Where configuration comes from: JSON and HCL files, directories of them, and `-hcl`
fragments, read in Consul's order (the files and directories in the order the flags name
them, a directory's files in lexical order, then the `-hcl` fragments).

A file's format is its extension (`.json`, `.hcl`) unless `-config-format` names one. In a
directory, a file with another extension is not read and is named in a warning, as Consul
1.x does; a file named explicitly with `-config-file` and no known extension is an error
unless `-config-format` says how to read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hcl.parser import HclParser  # type: ignore[import-untyped]

from agent.config.document import Acc, apply_document
from agent.errors import ConfigError

FORMATS = ("json", "hcl")


class _ConsulHclParser(HclParser):  # type: ignore[misc]
    """pyhcl with HCL 1's handling of repeated blocks, as Consul's decoder sees them.

    pyhcl 0.4.5 merges a repeated block into the first one key by key and loses keys on the
    way (`service { name = "a" port = 1 }` twice gives `[{name, port}, {port}]`). HCL 1 keeps
    each block whole: the key's value becomes the list of the blocks. A repeated plain
    value is replaced at the top of a document and collected into a list inside a block, as
    pyhcl already does.
    """

    def objectlist_flat(self, lt: list[tuple[str, Any]], replace: bool) -> dict[str, Any]:
        d: dict[str, Any] = {}
        blocks: set[str] = set()  # keys whose value is a list of repeated blocks
        for k, v in lt:
            if k not in d:
                d[k] = v
            elif isinstance(v, dict) and (isinstance(d[k], dict) or k in blocks):
                d[k] = [*d[k], v] if k in blocks else [d[k], v]
                blocks.add(k)
            elif replace:
                d[k] = v
            elif isinstance(d[k], list) and k in blocks:
                d[k].append(v)
            else:
                d[k] = [d[k], v]
                blocks.add(k)
        return d


_hcl_parser: _ConsulHclParser | None = None


def _parse_hcl(text: str) -> Any:
    global _hcl_parser
    if _hcl_parser is None:
        _hcl_parser = _ConsulHclParser()
    return _hcl_parser.parse(text)


def parse_text(text: str, fmt: str, source: str) -> Any:
    """A document's text -> plain data; ConfigError with the parser's position on bad input."""
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"Error decoding '{source}': invalid JSON at line {exc.lineno} column "
                f"{exc.colno}: {exc.msg}"
            ) from None
    try:
        return _parse_hcl(text)
    except ValueError as exc:  # pyhcl's syntax errors are ValueErrors with line and column
        raise ConfigError(f"Error decoding '{source}': invalid HCL: {exc}") from None
    except RecursionError:
        raise ConfigError(f"Error decoding '{source}': invalid HCL: nested too deeply") from None
    except Exception as exc:
        raise ConfigError(f"Error decoding '{source}': invalid HCL: {exc}") from None


def _format_of(path: Path, forced: str) -> str | None:
    if forced:
        return forced
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else None


def read_file(path: Path, fmt: str, acc: Acc) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Error reading '{path}': {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Error decoding '{path}': not UTF-8 text") from None
    apply_document(parse_text(text, fmt, str(path)), str(path), acc)
    acc["config_files"] = [*acc.get("config_files", []), str(path)]


def read_config_path(
    path: str | Path, acc: Acc, *, is_dir: bool | None = None, config_format: str = ""
) -> None:
    """Read a config file, or every .json and .hcl file of a directory in lexical order."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"Error reading '{p}': no such file or directory")
    if p.is_dir():
        if is_dir is False:
            raise ConfigError(f"Error reading '{p}': is a directory, expected a file")
        for child in sorted(p.iterdir()):
            if not child.is_file():
                continue
            fmt = _format_of(child, config_format)
            if fmt is None:
                acc.setdefault("skipped", []).append(str(child))
                continue
            read_file(child, fmt, acc)
        return
    if is_dir is True:
        raise ConfigError(f"Error reading '{p}': is not a directory")
    fmt = _format_of(p, config_format)
    if fmt is None:
        raise ConfigError(
            f"Error reading '{p}': extension must be .json or .hcl, "
            "or the format given with -config-format"
        )
    read_file(p, fmt, acc)


def read_fragment(text: str, n: int, acc: Acc) -> None:
    """One `-hcl` flag's value."""
    source = f"-hcl #{n}"
    apply_document(parse_text(text, "hcl", source), source, acc)
