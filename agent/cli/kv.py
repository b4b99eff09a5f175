"""`senate kv put|get|delete`: the key-value store through the HTTP API, output as Consul's."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from typing import Any

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

KV_HELP = """Usage: senate kv <subcommand> [options] [args]

  This command has subcommands for interacting with Senate's key-value
  store. Here are some simple examples, and more detailed examples are
  available in the subcommands or the documentation.

  Create or update the key named "redis/config/connections" with the value "5":

      $ senate kv put redis/config/connections 5

  Read this value back:

      $ senate kv get redis/config/connections

  Or get detailed key information:

      $ senate kv get -detailed redis/config/connections

  Finally, delete the key:

      $ senate kv delete redis/config/connections

Subcommands:
    delete    Removes data from the KV store
    export    Exports a tree from the KV store as JSON
    get       Retrieves or lists data from the KV store
    import    Imports a tree stored as JSON to the KV store
    put       Sets or updates data in the KV store
"""


def _decode(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def pretty_pair(pair: dict[str, Any], base64_value: bool = False) -> str:
    """The -detailed block of `kv get`, aligned as Go's tabwriter (padding 6) does."""
    value = _decode(pair.get("Value"))
    shown = base64.b64encode(value).decode() if base64_value else value.decode(errors="replace")
    rows = [
        ("CreateIndex", str(pair.get("CreateIndex", 0))),
        ("Flags", str(pair.get("Flags", 0))),
        ("Key", str(pair.get("Key", ""))),
        ("LockIndex", str(pair.get("LockIndex", 0))),
        ("ModifyIndex", str(pair.get("ModifyIndex", 0))),
        ("Session", str(pair.get("Session") or "-")),
        ("Value", shown),
    ]
    return tabwriter(rows)


def get_parser() -> Parser:
    p = Parser(
        "kv get",
        "senate kv get [options] [KEY_OR_PREFIX]",
        "Retrieves the value from Senate's key-value store at the given key name. If no\n"
        "key exists with that name, an error is returned. If a key exists with that\n"
        "name but has no data, nothing is returned.",
    )
    add_http_flags(p)
    p.flag("base64", action="store_true", help="Base64 encode the value")
    p.flag("detailed", action="store_true", help="Provide additional metadata about the key")
    p.flag("keys", action="store_true", help="List keys which start with the given prefix")
    p.flag("recurse", action="store_true", help="Recursively look at all keys under the prefix")
    p.flag("separator", default="/", help="String to use as a separator between keys")
    p.add_argument("key", nargs="*", help=argparse.SUPPRESS)
    return p


def _get(args: argparse.Namespace) -> int:
    if len(args.key) > 1:
        err(f"Too many arguments (expected 1, got {len(args.key)})")
        return 1
    key = args.key[0] if args.key else ""
    if not (args.keys or args.recurse) and not key:
        err("Error! Missing KEY argument")
        return 1
    client = http_client(args)
    params = dc_params(args)
    try:
        if args.keys:
            params["keys"] = True
            params["separator"] = args.separator
            resp = client.request("GET", f"/v1/kv/{key}", params, ok=(200, 404))
            for k in (resp.json() or []) if resp.status == 200 else []:
                out(k)
            return 0
        if args.recurse:
            params["recurse"] = True
            resp = client.request("GET", f"/v1/kv/{key}", params, ok=(200, 404))
            pairs = (resp.json() or []) if resp.status == 200 else []
            for i, pair in enumerate(pairs):
                if args.detailed:
                    out(pretty_pair(pair, args.base64))
                    if i < len(pairs) - 1:
                        out("")
                else:
                    value = _decode(pair.get("Value"))
                    shown = (
                        base64.b64encode(value).decode()
                        if args.base64
                        else value.decode(errors="replace")
                    )
                    out(f"{pair.get('Key', '')}:{shown}")
            return 0
        resp = client.request("GET", f"/v1/kv/{key}", params, ok=(200, 404))
    except ClientError as exc:
        err(f'Error querying "{key}": {exc}')
        return 1
    finally:
        client.close()
    pairs = (resp.json() or []) if resp.status == 200 else []
    if not pairs:
        err(f"Error! No key exists at: {key}")
        return 1
    if args.detailed:
        out(pretty_pair(pairs[0], args.base64))
    else:
        value = _decode(pairs[0].get("Value"))
        if args.base64:
            out(base64.b64encode(value).decode())
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(value + b"\n")
    return 0


def put_parser() -> Parser:
    p = Parser(
        "kv put",
        "senate kv put [options] KEY [DATA]",
        "Writes the data to the given path in the key-value store. The data can be of\n"
        "any type. If DATA begins with @, it is read from that file; if DATA is -,\n"
        "it is read from stdin.",
    )
    add_http_flags(p)
    p.flag("acquire", action="store_true", help="Obtain a lock on the key (requires -session)")
    p.flag("base64", action="store_true", help="Treat the data as base 64 encoded")
    p.flag(
        "cas", action="store_true", help="Perform a Check-And-Set operation (needs -modify-index)"
    )
    p.flag("flags", type=_uint, default=0, help="Unsigned integer value to assign to this KV pair")
    p.flag("modify-index", type=_uint, default=0, help="Unsigned integer for -cas")
    p.flag("release", action="store_true", help="Forfeit the lock on the key (requires -session)")
    p.flag("session", default="", help="User-defined identifer for this session as a string")
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    return p


def _uint(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid unsigned integer {text!r}") from None
    if value < 0 or value >= 1 << 64:
        raise argparse.ArgumentTypeError(f"invalid unsigned integer {text!r}")
    return value


def data_from_args(argv: list[str]) -> tuple[str, bytes]:
    if not argv:
        raise ValueError("Missing KEY argument")
    if len(argv) > 2:
        raise ValueError(f"Too many arguments (expected 1 or 2, got {len(argv)})")
    key = argv[0]
    if len(argv) == 1 or not argv[1]:
        return key, b""
    data = argv[1]
    if data.startswith("@"):
        try:
            with open(data[1:], "rb") as f:
                return key, f.read()
        except OSError as exc:
            raise ValueError(f"Failed to read file: {exc}") from None
    if data == "-":
        try:
            return key, sys.stdin.buffer.read()
        except OSError as exc:
            raise ValueError(f"Failed to read stdin: {exc}") from None
    return key, data.encode()


def _put(args: argparse.Namespace) -> int:
    try:
        key, data = data_from_args(args.args)
    except ValueError as exc:
        err(f"Error! {exc}")
        return 1
    if args.base64:
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            err(f"Error! Cannot base 64 decode data: {exc}")
            return 1
    if (args.release or args.acquire) and not args.session:
        err("Error! Missing -session (required with -acquire and -release)")
        return 1
    if args.cas and args.modify_index == 0:
        err("Must specify -modify-index with -cas!")
        return 1
    params = dc_params(args)
    params.pop("stale", None)
    if args.flags:
        params["flags"] = args.flags
    if args.cas:
        params["cas"] = args.modify_index
    elif args.acquire:
        params["acquire"] = args.session
    elif args.release:
        params["release"] = args.session
    client = http_client(args)
    try:
        resp = client.request("PUT", f"/v1/kv/{key}", params, body=data)
        ok = resp.json() is True
    except ClientError as exc:
        if args.cas:
            err(f"Error! Did not write to {key}: {exc}")
        elif args.release:
            err(f"Error! Failed writing data: {key}")
        else:
            err(f"Error! Failed writing data: {exc}")
        return 1
    finally:
        client.close()
    if args.cas:
        if not ok:
            err(f"Error! Did not write to {key}: CAS failed")
            return 1
        out(f"Success! Data written to: {key}")
    elif args.acquire:
        if not ok:
            err("Error! Did not acquire lock")
            return 1
        out(f"Success! Lock acquired on: {key}")
    elif args.release:
        if not ok:
            err("Error! Did not release lock")
            return 1
        out(f"Success! Lock released on: {key}")
    else:
        out(f"Success! Data written to: {key}")
    return 0


def delete_parser() -> Parser:
    p = Parser(
        "kv delete",
        "senate kv delete [options] KEY_OR_PREFIX",
        "Removes the value from Senate's key-value store at the given path. If no\n"
        "key exists at the path, no action is taken.",
    )
    add_http_flags(p)
    p.flag(
        "cas", action="store_true", help="Perform a Check-And-Set operation (needs -modify-index)"
    )
    p.flag("modify-index", type=_uint, default=0, help="Unsigned integer for -cas")
    p.flag("recurse", action="store_true", help="Recursively delete all keys with the prefix")
    p.add_argument("key", nargs="*", help=argparse.SUPPRESS)
    return p


def _delete(args: argparse.Namespace) -> int:
    if len(args.key) > 1:
        err(f"Too many arguments (expected 1, got {len(args.key)})")
        return 1
    key = args.key[0] if args.key else ""
    if not key and not args.recurse:
        err("Error! Missing KEY argument")
        return 1
    if args.cas and args.modify_index == 0:
        err("Must specify -modify-index with -cas!")
        return 1
    if args.recurse and args.cas:
        err("Cannot specify both -cas and -recurse!")
        return 1
    params = dc_params(args)
    params.pop("stale", None)
    client = http_client(args)
    try:
        if args.recurse:
            params["recurse"] = True
            try:
                client.request("DELETE", f"/v1/kv/{key}", params)
            except ClientError as exc:
                err(f"Error! Did not delete prefix {key}: {exc}")
                return 1
            out(f"Success! Deleted keys with prefix: {key}")
            return 0
        if args.cas:
            params["cas"] = args.modify_index
            try:
                ok = client.request("DELETE", f"/v1/kv/{key}", params).json() is True
            except ClientError as exc:
                err(f"Error! Did not delete key {key}: {exc}")
                return 1
            if not ok:
                err(f"Error! Did not delete key {key}: CAS failed")
                return 1
            out(f"Success! Deleted key: {key}")
            return 0
        try:
            client.request("DELETE", f"/v1/kv/{key}", params)
        except ClientError as exc:
            err(f"Error deleting key {key}: {exc}")
            return 1
        out(f"Success! Deleted key: {key}")
        return 0
    finally:
        client.close()


def export_parser() -> Parser:
    p = Parser(
        "kv export",
        "senate kv export [options] [PREFIX]",
        "Retrieves key-value pairs for the given prefix from Senate's key-value store,\n"
        "and writes a JSON representation to stdout. This can be used with the command\n"
        '"senate kv import" to move entire trees between Senate clusters.',
    )
    add_http_flags(p)
    p.add_argument("prefix", nargs="*", help=argparse.SUPPRESS)
    return p


def export_entries(pairs: list[dict[str, Any]]) -> str:
    """Consul's export format: [{"key", "flags", "value" (base64)}], tab-indented."""
    entries = [
        {"key": p.get("Key", ""), "flags": p.get("Flags", 0), "value": p.get("Value") or ""}
        for p in pairs
    ]
    return json.dumps(entries, indent="\t")


def _export(args: argparse.Namespace) -> int:
    if len(args.prefix) > 1:
        err(f"Too many arguments (expected 1, got {len(args.prefix)})")
        return 1
    prefix = args.prefix[0] if args.prefix else ""
    client = http_client(args)
    params = {**dc_params(args), "recurse": True}
    try:
        resp = client.request("GET", f"/v1/kv/{prefix}", params, ok=(200, 404))
    except ClientError as exc:
        err(f"Error querying {prefix!r}: {exc}")
        return 1
    finally:
        client.close()
    out(export_entries((resp.json() or []) if resp.status == 200 else []))
    return 0


def import_parser() -> Parser:
    p = Parser(
        "kv import",
        "senate kv import [options] [DATA]",
        "Imports key-value pairs to the key-value store from the JSON representation\n"
        'generated by the "senate kv export" command. DATA is the JSON itself, @file\n'
        "to read it from a file, or - (or nothing) to read it from stdin. With -prefix,\n"
        "every key is imported under that prefix (Consul 1.10's kv import -prefix).",
    )
    add_http_flags(p)
    p.flag(
        "prefix",
        default="",
        metavar="string",
        help="Key prefix for imported data (default: the keys as exported)",
    )
    p.add_argument("data", nargs="*", help=argparse.SUPPRESS)
    return p


def go_path_clean(path: str) -> str:
    """Go's path.Clean: one slash between elements, no `.`, `..` folded into what precedes it
    (and dropped at the root), no trailing slash; "" and what folds away are "."."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = ("/" if rooted else "") + "/".join(parts)
    return cleaned or "."


def go_path_join(*elems: str) -> str:
    """Go's path.Join: the non-empty elements joined by "/" and cleaned; "" if all are empty."""
    joined = "/".join(e for e in elems if e)
    return go_path_clean(joined) if joined else ""


def import_key(prefix: str, key: str) -> str:
    """Consul 1.x's kv import: path.Join(prefix, key), keeping the "/" of a folder key."""
    joined = go_path_join(prefix, key)
    return joined + "/" if key.endswith("/") else joined


def _read_import_data(argv: list[str]) -> bytes:
    if len(argv) > 1:
        raise ValueError(f"Too many arguments (expected 1, got {len(argv)})")
    data = argv[0] if argv else "-"
    if data == "-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            with open(data[1:], "rb") as f:
                return f.read()
        except OSError as exc:
            raise ValueError(f"Failed to read file: {exc}") from None
    return data.encode()


def _import(args: argparse.Namespace) -> int:
    try:
        raw = _read_import_data(args.data)
        entries = json.loads(raw)
        if not isinstance(entries, list):
            raise ValueError("expected a JSON list of entries")
        pairs = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                raise ValueError(f'bad entry {entry!r}: needs a string "key"')
            value = base64.b64decode(entry.get("value") or "", validate=True)
            flags = entry.get("flags", 0)
            if isinstance(flags, bool) or not isinstance(flags, int) or flags < 0:
                raise ValueError(f"bad flags {flags!r} for key {entry['key']!r}")
            pairs.append((import_key(args.prefix, entry["key"]), flags, value))
    except (ValueError, binascii.Error) as exc:
        err(f"Cannot unmarshal data: {exc}")
        return 1
    client = http_client(args)
    try:
        for key, flags, value in pairs:
            params = {**dc_params(args), "flags": flags or None}
            params.pop("stale", None)
            try:
                client.request("PUT", f"/v1/kv/{key}", params, body=value)
            except ClientError as exc:
                err(f"Error! Failed writing data for key {key}: {exc}")
                return 1
            out(f"Imported: {key}")
    finally:
        client.close()
    return 0


SUBCOMMANDS = {
    "get": (get_parser, _get),
    "put": (put_parser, _put),
    "delete": (delete_parser, _delete),
    "export": (export_parser, _export),
    "import": (import_parser, _import),
}


def run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "-help", "--help"):
        sys.stderr.write(KV_HELP)
        return 0 if argv else 1
    sub = SUBCOMMANDS.get(argv[0])
    if sub is None:
        err(f"senate kv: unknown subcommand {argv[0]!r}")
        sys.stderr.write(KV_HELP)
        return 1
    make_parser, body = sub
    return run_guarded(make_parser(), argv[1:], body)
