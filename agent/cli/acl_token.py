"""`senate acl token create|read|update|delete|list|clone`: Consul 1.x's command/acl/token/*.

A token is named by its AccessorID, or a unique prefix of it (every token is listed to find
it), or `anonymous`. Policies and roles are linked by name (the server resolves them) or by
ID (a unique prefix, resolved here). `update` reads the token and changes what its flags say:
-policy-*/-role-* replace the links (the -append-* variants, or the deprecated -merge-*,
add to them), -service-identity/-node-identity replace the identities (given or not, as
Consul's does), -description only when given.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli.acl_common import (
    ACLClient,
    CommandError,
    add_common,
    check_format,
    failing,
    info,
    merge_node_identities,
    merge_service_identities,
    parse_node_identities,
    parse_service_identities,
    policy_id_from_partial,
    repeated,
    role_id_from_partial,
    run_group,
    token_accessor_from_partial,
    warn,
)
from agent.cli.acl_format import (
    format_token,
    format_token_list,
)
from agent.cli.common import Parser, go_quote
from agent.durations import DurationError, parse_duration

TOKEN_HELP = """Usage: senate acl token <subcommand> [options] [args]

  This command has subcommands for managing Senate ACL tokens.
  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  Create a new ACL token:

      $ senate acl token create \\
                                 -description "This is an example token" \\
                                 -policy-id 06acc965
  List all tokens:

      $ senate acl token list

  Update a token:

      $ senate acl token update -accessor-id 986193 -description "WonderToken"

  Read a token with an accessor ID:

    $ senate acl token read -accessor-id 986193

  Delete a token

    $ senate acl token delete -accessor-id 986193

  For more examples, ask for subcommand help or view the documentation.

Subcommands:
    clone     Clone an ACL token
    create    Create an ACL token
    delete    Delete an ACL token
    list      List ACL tokens
    read      Read an ACL token
    update    Update an ACL token
"""

_ACCESSOR_HELP = (
    "The Accessor ID of the token to {}. It may be specified as a unique ID prefix but will "
    "error if the prefix matches multiple token Accessor IDs"
)


def _accessor_flags(p: Parser, verb: str) -> None:
    p.flag("accessor-id", default="", metavar="string", help=_ACCESSOR_HELP.format(verb))
    p.flag("id", default="", metavar="string", help="DEPRECATED. Use -accessor-id instead.")


def _accessor(args: argparse.Namespace, missing: str, deprecated: str) -> str:
    """-accessor-id, or the deprecated -id (with Consul's warning)."""
    if args.accessor_id:
        return str(args.accessor_id)
    if not args.id:
        raise CommandError(missing)
    warn(deprecated)
    return str(args.id)


def _links_by_name(names: list[str] | None) -> list[dict[str, str]]:
    return [{"Name": name} for name in names or []]


def _links_by_id(api: ACLClient, ids: list[str] | None, what: str) -> list[dict[str, str]]:
    resolve = policy_id_from_partial if what == "policy" else role_id_from_partial
    out = []
    for partial in ids or []:
        with failing(f"Error resolving {what} ID {partial}"):
            out.append({"ID": resolve(api, partial)})
    return out


# ---- create -------------------------------------------------------------------------------


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except DurationError:
        raise argparse.ArgumentTypeError(
            f'invalid value "{text}" for flag -expires-ttl: parse error'
        ) from None


def create_parser() -> Parser:
    p = Parser(
        "acl token create",
        "senate acl token create [options]",
        "  When creating a new token policies may be linked using either the -policy-id\n"
        "  or the -policy-name options. When specifying policies by IDs you may use a\n"
        "  unique prefix of the UUID as a shortcut for specifying the entire UUID.\n\n"
        "  Create a new token:\n\n"
        '          $ senate acl token create -description "Replication token" \\\n'
        "                                    -policy-id b52fc3de-5 \\\n"
        '                                    -policy-name "acl-replication" \\\n'
        "                                    -role-id c630d4ef-6 \\\n"
        '                                    -role-name "db-updater" \\\n'
        '                                    -service-identity "web" \\\n'
        '                                    -service-identity "db:east,west"',
    )
    add_common(p)
    p.flag(
        "accessor",
        default="",
        metavar="string",
        help="Create the token with this Accessor ID. It must be a UUID. If not specified one "
        "will be auto-generated",
    )
    p.flag(
        "secret",
        default="",
        metavar="string",
        help="Create the token with this Secret ID. It must be a UUID. If not specified one "
        "will be auto-generated",
    )
    p.flag("local", action="store_true", help="Create this as a datacenter local token")
    p.flag("description", default="", metavar="string", help="A description of the token")
    _identity_flags(p)
    p.flag(
        "expires-ttl",
        type=_duration,
        default=0,
        metavar="duration",
        help="Duration of time this token should be valid for",
    )
    return p


def _identity_flags(p: Parser, append: bool = False) -> None:
    for kind, kinds in (("policy", "policies"), ("role", "roles")):
        for by in ("id", "name"):
            what = "ID" if by == "id" else "Name"
            extra = f" Overwrites existing {kinds}." if append else ""
            repeated(
                p,
                f"{kind}-{by}",
                f"{what} of a {kind} to use for this token.{extra} May be specified multiple times",
            )
            if append:
                repeated(
                    p,
                    f"append-{kind}-{by}",
                    f"{what} of a {kind} to add to this token. The token retains existing "
                    f"{kinds}. May be specified multiple times",
                )
    repeated(
        p,
        "service-identity",
        "Name of a service identity to use for this token. May be specified multiple times. "
        "Format is the SERVICENAME or SERVICENAME:DATACENTER1,DATACENTER2,...",
    )
    repeated(
        p,
        "node-identity",
        "Name of a node identity to use for this token. May be specified multiple times. "
        "Format is NODENAME:DATACENTER",
    )
    if append:
        repeated(
            p,
            "append-service-identity",
            "Name of a service identity to use for this token. This token retains existing "
            "service identities. May be specified multiple times. Format is the SERVICENAME "
            "or SERVICENAME:DATACENTER1,DATACENTER2,...",
        )
        repeated(
            p,
            "append-node-identity",
            "Name of a node identity to use for this token. This token retains existing node "
            "identities. May be specified multiple times. Format is NODENAME:DATACENTER",
        )


def _create(args: argparse.Namespace) -> int:
    if not (
        args.policy_name
        or args.policy_id
        or args.role_name
        or args.role_id
        or args.service_identity
        or args.node_identity
    ):
        raise CommandError(
            "Cannot create a token without specifying -policy-name, -policy-id, -role-name, "
            "-role-id, -service-identity, or -node-identity at least once"
        )
    check_format(args)
    api = ACLClient(args)
    try:
        token: dict[str, Any] = {
            "Description": args.description,
            "Local": bool(args.local),
            "AccessorID": args.accessor,
            "SecretID": args.secret,
        }
        if args.expires_ttl > 0:
            token["ExpirationTTL"] = args.expires_ttl  # a Go time.Duration: nanoseconds
        token["ServiceIdentities"] = parse_service_identities(args.service_identity)
        token["NodeIdentities"] = parse_node_identities(args.node_identity)
        token["Policies"] = _links_by_name(args.policy_name) + _links_by_id(
            api, args.policy_id, "policy"
        )
        token["Roles"] = _links_by_name(args.role_name) + _links_by_id(api, args.role_id, "role")
        with failing("Failed to create new token"):
            created = api.put("/v1/acl/token", token)
    finally:
        api.close()
    info(format_token(created or {}, args.format, args.meta))
    return 0


# ---- read ---------------------------------------------------------------------------------


def read_parser() -> Parser:
    p = Parser(
        "acl token read",
        "senate acl token read [options] -accessor-id TOKENID",
        "  This command will retrieve and print out the details of\n"
        "  a single token.\n\n"
        "  Using a partial ID:\n\n"
        "          $ senate acl token read -accessor-id 4be56c77-82\n\n"
        "  Using the full ID:\n\n"
        "          $ senate acl token read -accessor-id 4be56c77-8244-4c7d-b08c-667b8c71baed",
    )
    add_common(p)
    p.flag(
        "self",
        action="store_true",
        help="Indicates that the current HTTP token should be read by secret ID instead of "
        "expecting a -accessor-id option",
    )
    _accessor_flags(p, "read")
    return p


def _read(args: argparse.Namespace) -> int:
    check_format(args)
    api = ACLClient(args)
    try:
        if args.self:
            with failing("Error reading token"):
                token = api.get_json("/v1/acl/token/self")
        else:
            given = _accessor(
                args,
                "Must specify the -accessor-id parameter",
                "Use the -accessor-id parameter to specify token by Accessor ID",
            )
            with failing("Error determining token ID"):
                accessor = token_accessor_from_partial(api, given)
            with failing(f"Error reading token {go_quote(accessor)}"):
                token = api.get_json(f"/v1/acl/token/{accessor}")
    finally:
        api.close()
    info(format_token(token or {}, args.format, args.meta))
    return 0


# ---- update -------------------------------------------------------------------------------


def update_parser() -> Parser:
    p = Parser(
        "acl token update",
        "senate acl token update [options]",
        "    This command will update a token. Some parts such as marking the token local\n"
        "    cannot be changed.\n\n"
        "    Update a token description and take the policies from the existing token:\n\n"
        '        $ senate acl token update -accessor-id abcd -description "replication" '
        "-merge-policies\n\n"
        "    Update all editable fields of the token:\n\n"
        "        $ senate acl token update -accessor-id abcd \\\n"
        '                                  -description "replication" \\\n'
        '                                  -policy-name "token-replication" \\\n'
        '                                  -role-name "db-updater"',
    )
    add_common(p)
    _accessor_flags(p, "update")
    p.flag("description", default="", metavar="string", help="A description of the token")
    _identity_flags(p, append=True)
    for name, instead in (
        ("merge-policies", "-append-policy-id or -append-policy-name"),
        ("merge-roles", "-append-role-id or -append-role-name"),
        ("merge-service-identities", "-append-service-identity"),
        ("merge-node-identities", "-append-node-identity"),
    ):
        p.flag(name, action="store_true", help=f"DEPRECATED. Use {instead} instead.")
    return p


def _merge_links(
    api: ACLClient,
    current: list[dict[str, str]],
    names: list[str] | None,
    ids: list[str] | None,
    what: str,
) -> list[dict[str, str]]:
    """The deprecated -merge-*: the named ones not linked yet, then the IDs not linked yet."""
    links = list(current)
    for name in names or []:
        if not any(link.get("Name") == name for link in links):
            links.append({"Name": name})
    for link in _links_by_id(api, ids, what):
        if not any(x.get("ID") == link["ID"] for x in links):
            links.append(link)
    return links


def _set_links(
    api: ACLClient, args: argparse.Namespace, token: dict[str, Any], what: str, key: str
) -> None:
    names, ids = getattr(args, f"{what}_name"), getattr(args, f"{what}_id")
    whats = "policies" if what == "policy" else "roles"
    if getattr(args, f"merge_{whats}"):
        warn(
            f"merge-{whats} is deprecated and will be removed in a future version. "
            f"Use `append-{what}-name` or `append-{what}-id` instead."
        )
        token[key] = _merge_links(api, token.get(key) or [], names, ids, what)
        return
    add_names, add_ids = getattr(args, f"append_{what}_name"), getattr(args, f"append_{what}_id")
    if (names or ids) and (add_names or add_ids):
        raise CommandError(
            f"Cannot combine the use of {what}-id/{what}-name flags with append- variants. "
            f"To set or overwrite existing {whats}, use -{what}-id or -{what}-name. "
            f"To append to existing {whats}, use -append-{what}-id or -append-{what}-name."
        )
    if names or ids:
        token[key] = []
    else:
        names, ids = add_names, add_ids
    links = list(token.get(key) or [])
    links += _links_by_name(names)
    links += _links_by_id(api, ids, what)
    token[key] = links


def _update(args: argparse.Namespace) -> int:
    given = _accessor(
        args,
        "Cannot update a token without specifying the -accessor-id parameter",
        "Use the -accessor-id parameter to specify token by Accessor ID",
    )
    check_format(args)
    api = ACLClient(args)
    try:
        with failing("Error determining token ID"):
            accessor = token_accessor_from_partial(api, given)
        with failing("Error when retrieving current token"):
            token: dict[str, Any] = dict(api.get_json(f"/v1/acl/token/{accessor}") or {})
        if args.description:
            token["Description"] = args.description
        if args.append_service_identity and args.service_identity:
            raise CommandError(
                "Cannot combine the use of service-identity flag with append-service-identity. "
                "To set or overwrite existing service identities, use -service-identity. "
                "To append to existing service identities, use -append-service-identity."
            )
        services = parse_service_identities(args.append_service_identity or args.service_identity)
        if args.append_node_identity and args.node_identity:
            raise CommandError(
                "Cannot combine the use of node-identity flag with append-node-identity. "
                "To set or overwrite existing node identities, use -node-identity. "
                "To append to existing node identities, use -append-node-identity."
            )
        nodes = parse_node_identities(args.append_node_identity or args.node_identity)
        _set_links(api, args, token, "policy", "Policies")
        _set_links(api, args, token, "role", "Roles")
        if args.merge_service_identities or args.append_service_identity:
            services = merge_service_identities(token.get("ServiceIdentities"), services)
        token["ServiceIdentities"] = services
        if args.merge_node_identities or args.append_node_identity:
            nodes = merge_node_identities(token.get("NodeIdentities"), nodes)
        token["NodeIdentities"] = nodes
        with failing(f"Failed to update token {accessor}"):
            updated = api.put(f"/v1/acl/token/{accessor}", token)
    finally:
        api.close()
    info(format_token(updated or {}, args.format, args.meta))
    return 0


# ---- delete -------------------------------------------------------------------------------


def delete_parser() -> Parser:
    p = Parser(
        "acl token delete",
        "senate acl token delete [options] -accessor-id TOKEN",
        "  Deletes an ACL token by providing either the ID or a unique ID prefix.\n\n"
        "      Delete by prefix:\n\n"
        "          $ senate acl token delete -accessor-id b6b85\n\n"
        "      Delete by full ID:\n\n"
        "          $ senate acl token delete -accessor-id b6b856da-5193-4e78-845a-7d61ca8371ba",
    )
    add_common(p, meta=False, fmt=False)
    _accessor_flags(p, "delete")
    return p


def _delete(args: argparse.Namespace) -> int:
    given = _accessor(
        args,
        "Must specify the -accessor-id parameter",
        "Use the -accessor-id parameter to specify token by Accessor ID.",
    )
    api = ACLClient(args)
    try:
        with failing("Error determining token ID"):
            accessor = token_accessor_from_partial(api, given)
        with failing(f"Error deleting token {go_quote(accessor)}"):
            api.delete(f"/v1/acl/token/{accessor}")
    finally:
        api.close()
    info(f"Token {go_quote(accessor)} deleted successfully")
    return 0


# ---- list ---------------------------------------------------------------------------------


def list_parser() -> Parser:
    p = Parser(
        "acl token list",
        "senate acl token list [options]",
        "  List all the ACL tokens\n\n          $ senate acl token list",
    )
    add_common(p)
    return p


def _list(args: argparse.Namespace) -> int:
    check_format(args)
    api = ACLClient(args)
    try:
        with failing("Failed to retrieve the token list"):
            tokens = api.get_json("/v1/acl/tokens") or []
    finally:
        api.close()
    info(format_token_list(tokens, args.format, args.meta))
    return 0


# ---- clone --------------------------------------------------------------------------------


def clone_parser() -> Parser:
    p = Parser(
        "acl token clone",
        "senate acl token clone [options]",
        "    This command will clone a token. When cloning an alternate description may be "
        "given\n    for use with the new token.\n\n"
        "    Example:\n\n"
        '        $ senate acl token clone -accessor-id abcd -description "replication"',
    )
    add_common(p, meta=False)
    p.flag(
        "accessor-id",
        default="",
        metavar="string",
        help=_ACCESSOR_HELP.format("clone")
        + ". The special value of 'anonymous' may be provided instead of the anonymous tokens "
        "accessor ID",
    )
    p.flag("id", default="", metavar="string", help="DEPRECATED. Use -accessor-id instead.")
    p.flag(
        "description", default="", metavar="string", help="A description of the new cloned token"
    )
    return p


def _clone(args: argparse.Namespace) -> int:
    given = _accessor(
        args,
        "Cannot update a token without specifying the -accessor-id parameter",
        "The -id parameter is deprecated. Use the -accessor-id parameter instead.",
    )
    check_format(args)
    api = ACLClient(args)
    try:
        with failing("Error determining token Accessor ID"):
            accessor = token_accessor_from_partial(api, given)
        with failing("Error cloning token"):
            clone = api.put(f"/v1/acl/token/{accessor}/clone", {"Description": args.description})
    finally:
        api.close()
    info(format_token(clone or {}, args.format, False))
    return 0


SUBCOMMANDS = {
    "clone": (clone_parser, _clone),
    "create": (create_parser, _create),
    "delete": (delete_parser, _delete),
    "list": (list_parser, _list),
    "read": (read_parser, _read),
    "update": (update_parser, _update),
}


def run(argv: list[str]) -> int:
    return run_group(argv, TOKEN_HELP, "acl token", SUBCOMMANDS)
