"""`senate snapshot save|restore|inspect`: point-in-time archives of the servers' state."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.cli.common import (
    Parser,
    add_http_flags,
    dc_params,
    err,
    http_client,
    out,
    run_guarded,
    tabwriter,
)
from agent.client import ClientError
from agent.fsutil import write_atomic
from agent.http.archive import ArchiveError, SnapshotMeta, read_archive

SNAPSHOT_HELP = """Usage: senate snapshot <subcommand> [options] [args]

  This command has subcommands for saving, restoring, and inspecting the state
  of the Senate servers for disaster recovery. These are atomic, point-in-time
  snapshots which include key/value entries, service catalog, sessions and more.

  Create a snapshot:

      $ senate snapshot save backup.snap

  Restore a snapshot:

      $ senate snapshot restore backup.snap

  Inspect a snapshot:

      $ senate snapshot inspect backup.snap

Subcommands:
    inspect    Displays information about a Senate snapshot file
    restore    Restores snapshot of Senate server state
    save       Saves snapshot of Senate server state
"""


def _one_file(args: argparse.Namespace) -> str | None:
    if not args.file:
        err("Missing FILE argument")
        return None
    if len(args.file) > 1:
        err(f"Too many arguments (expected 1, got {len(args.file)})")
        return None
    return str(args.file[0])


def _parser(name: str, usage: str, text: str, http: bool = True) -> Parser:
    p = Parser(f"snapshot {name}", usage, text)
    if http:
        add_http_flags(p)
    p.add_argument("file", nargs="*", help=argparse.SUPPRESS)
    return p


def format_meta(meta: SnapshotMeta) -> str:
    return tabwriter(
        [
            ("ID", meta.id),
            ("Size", str(meta.size)),
            ("Index", str(meta.index)),
            ("Term", str(meta.term)),
            ("Version", str(meta.version)),
        ]
    )


def _save(args: argparse.Namespace) -> int:
    path = _one_file(args)
    if path is None:
        return 1
    client = http_client(args)
    try:
        data = client.request("GET", "/v1/snapshot", dc_params(args)).body
    except ClientError as exc:
        err(f"Error saving snapshot: {exc}")
        return 1
    finally:
        client.close()
    try:
        meta, _ = read_archive(data)
    except ArchiveError as exc:
        err(f"Error verifying snapshot file: {exc}")
        return 1
    try:
        write_atomic(Path(path), data, mode=0o666)  # as Consul's os.Create: the umask decides
    except OSError as exc:
        err(f"Error writing snapshot file: {exc}")
        return 1
    out(f"Saved and verified snapshot to index {meta.index}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    path = _one_file(args)
    if path is None:
        return 1
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        err(f"Error opening snapshot file: {exc}")
        return 1
    client = http_client(args)
    params = dc_params(args)
    params.pop("stale", None)
    try:
        client.request("PUT", "/v1/snapshot", params, body=data)
    except ClientError as exc:
        err(f"Error restoring snapshot: {exc}")
        return 1
    finally:
        client.close()
    out("Restored snapshot")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    path = _one_file(args)
    if path is None:
        return 1
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        err(f"Error opening snapshot file: {exc}")
        return 1
    try:
        meta, _ = read_archive(data)
    except ArchiveError as exc:
        err(f"Error extracting snapshot data: {exc}")
        return 1
    out(format_meta(meta))
    return 0


def run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "-help", "--help"):
        sys.stderr.write(SNAPSHOT_HELP)
        return 0 if argv else 1
    subs = {
        "save": (
            _parser("save", "senate snapshot save [options] FILE", "Saves a snapshot to FILE."),
            _save,
        ),
        "restore": (
            _parser(
                "restore",
                "senate snapshot restore [options] FILE",
                "Restores the servers' state from the snapshot in FILE.",
            ),
            _restore,
        ),
        "inspect": (
            _parser(
                "inspect",
                "senate snapshot inspect [options] FILE",
                "Displays information about a snapshot file on disk.",
                http=False,
            ),
            _inspect,
        ),
    }
    if argv[0] not in subs:
        err(f"senate snapshot: unknown subcommand {argv[0]!r}")
        sys.stderr.write(SNAPSHOT_HELP)
        return 1
    parser, body = subs[argv[0]]
    return run_guarded(parser, argv[1:], body)
