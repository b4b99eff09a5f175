"""`senate acl role create|read|update|delete|list`: Consul 1.x's command/acl/role/*.

A role is named by -id (its ID or a unique prefix of it) or -name. `update` adds the policies
and identities its flags give to what the role has (a service identity given again replaces
the one of that service), and changes the name and description when given; -no-merge writes
exactly what the flags say.
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
    role_id_by_name,
    role_id_from_partial,
    run_group,
)
from agent.cli.acl_format import (
    format_role,
    format_role_list,
)
from agent.cli.common import Parser, err, go_quote

ROLE_HELP = """Usage: senate acl role <subcommand> [options] [args]

  This command has subcommands for managing Senate's ACL roles.
  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  Create a new ACL role:

      $ senate acl role create -name "new-role" \\
                               -description "This is an example role" \\
                               -policy-id 06acc965
  List all roles:

      $ senate acl role list

  Update a role:

      $ senate acl role update -id 0479e93e -name "other-role"

  Read a role:

    $ senate acl role read -id 0479e93e-091c-4475-9b06-79a004765c24

  Delete a role

    $ senate acl role delete -name "my-role"

  For more examples, ask for subcommand help or view the documentation.

Subcommands:
    create    Create an ACL role
    delete    Delete an ACL role
    list      Lists ACL roles
    read      Read an ACL role
    update    Update an ACL role
"""

_ID_HELP = (
    "The ID of the role to {}. It may be specified as a unique ID prefix but will error if "
    "the prefix matches multiple role IDs"
)


def _link_flags(p: Parser) -> None:
    repeated(p, "policy-id", "ID of a policy to use for this role. May be specified multiple times")
    repeated(
        p, "policy-name", "Name of a policy to use for this role. May be specified multiple times"
    )
    repeated(
        p,
        "service-identity",
        "Name of a service identity to use for this role. May be specified multiple times. "
        "Format is the SERVICENAME or SERVICENAME:DATACENTER1,DATACENTER2,...",
    )
    repeated(
        p,
        "node-identity",
        "Name of a node identity to use for this role. May be specified multiple times. "
        "Format is NODENAME:DATACENTER",
    )


def _policy_links(api: ACLClient, args: argparse.Namespace) -> list[dict[str, str]]:
    links = [{"Name": name} for name in args.policy_name or []]
    for partial in args.policy_id or []:
        with failing(f"Error resolving policy ID {partial}"):
            links.append({"ID": policy_id_from_partial(api, partial)})
    return links


# ---- create -------------------------------------------------------------------------------


def create_parser() -> Parser:
    p = Parser(
        "acl role create",
        "senate acl role create -name NAME [options]",
        "    Create a new role:\n\n"
        '        $ senate acl role create -name "new-role" \\\n'
        '                                 -description "This is an example role" \\\n'
        "                                 -policy-id b52fc3de-5 \\\n"
        '                                 -policy-name "acl-replication" \\\n'
        '                                 -service-identity "web" \\\n'
        '                                 -service-identity "db:east,west"',
    )
    add_common(p, what="role")
    p.flag("name", default="", metavar="string", help="The new role's name. This flag is required.")
    p.flag("description", default="", metavar="string", help="A description of the role")
    _link_flags(p)
    return p


def _create(args: argparse.Namespace) -> int:
    if not args.name:
        err("Missing require '-name' flag")
        err(create_parser().format_help().rstrip())
        return 1
    if not (args.policy_name or args.policy_id or args.service_identity or args.node_identity):
        raise CommandError(
            "Cannot create a role without specifying -policy-name, -policy-id, "
            "-service-identity, or -node-identity at least once"
        )
    check_format(args)
    api = ACLClient(args)
    try:
        role: dict[str, Any] = {"Name": args.name, "Description": args.description}
        role["Policies"] = _policy_links(api, args)
        role["ServiceIdentities"] = parse_service_identities(args.service_identity)
        role["NodeIdentities"] = parse_node_identities(args.node_identity)
        with failing("Failed to create new role"):
            created = api.put("/v1/acl/role", role)
    finally:
        api.close()
    info(format_role(created or {}, args.format, args.meta))
    return 0


# ---- read ---------------------------------------------------------------------------------


def read_parser() -> Parser:
    p = Parser(
        "acl role read",
        "senate acl role read [options] ROLE",
        "    This command will retrieve and print out the details\n"
        "    of a single role.\n\n"
        "    Read:\n\n"
        "        $ senate acl role read -id fdabbcb5-9de5-4b1a-961f-77214ae88cba\n\n"
        "    Read by name:\n\n"
        "        $ senate acl role read -name my-role",
    )
    add_common(p, what="role")
    p.flag("id", default="", metavar="string", help=_ID_HELP.format("read"))
    p.flag("name", default="", metavar="string", help="The name of the role to read.")
    return p


def _read(args: argparse.Namespace) -> int:
    if not args.id and not args.name:
        raise CommandError("Must specify either the -id or -name parameters")
    check_format(args)
    api = ACLClient(args)
    try:
        if args.id:
            with failing("Error determining role ID"):
                role_id = role_id_from_partial(api, args.id)
            with failing(f"Error reading role {go_quote(role_id)}"):
                role = api.read_or_none(f"/v1/acl/role/{role_id}")
            if role is None:
                raise CommandError(f"Role not found with ID {go_quote(role_id)}")
        else:
            with failing(f"Error reading role {go_quote(args.name)}"):
                role = api.read_or_none(f"/v1/acl/role/name/{args.name}")
            if role is None:
                raise CommandError(f"Role not found with name {go_quote(args.name)}")
    finally:
        api.close()
    info(format_role(role, args.format, args.meta))
    return 0


# ---- update -------------------------------------------------------------------------------


def update_parser() -> Parser:
    p = Parser(
        "acl role update",
        "senate acl role update [options]",
        "  Updates a role. By default it will merge the role information with its\n"
        "  current state so that you do not have to provide all parameters. This\n"
        "  behavior can be disabled by passing -no-merge.\n\n"
        "  Rename the role:\n\n"
        '          $ senate acl role update -id abcd -name "better-name"\n\n'
        "  Update all editable fields of the role:\n\n"
        "          $ senate acl role update -id abcd \\\n"
        '                                   -name "better-name" \\\n'
        '                                   -description "replication" \\\n'
        '                                   -policy-name "token-replication" \\\n'
        '                                   -service-identity "web"',
    )
    add_common(p, what="role")
    p.flag("id", default="", metavar="string", help=_ID_HELP.format("update"))
    p.flag("name", default="", metavar="string", help="The role name.")
    p.flag("description", default="", metavar="string", help="A description of the role")
    _link_flags(p)
    p.flag(
        "no-merge",
        action="store_true",
        help="Do not merge the current role information with what is provided to the "
        "command. Instead overwrite all fields with the exception of the role ID which is "
        "immutable.",
    )
    return p


def _merged(
    current: dict[str, Any],
    args: argparse.Namespace,
    policies: list[dict[str, str]],
    services: list[dict[str, Any]],
    nodes: list[dict[str, Any]],
) -> dict[str, Any]:
    role = dict(current)
    if args.name:
        role["Name"] = args.name
    if args.description:
        role["Description"] = args.description
    links = list(role.get("Policies") or [])
    for link in policies:
        key = "ID" if "ID" in link else "Name"
        if not any(x.get(key) == link[key] for x in links):
            links.append(link)
    role["Policies"] = links
    role["ServiceIdentities"] = merge_service_identities(role.get("ServiceIdentities"), services)
    role["NodeIdentities"] = merge_node_identities(role.get("NodeIdentities"), nodes)
    return role


def _update(args: argparse.Namespace) -> int:
    if not args.id:
        raise CommandError("Cannot update a role without specifying the -id parameter")
    check_format(args)
    api = ACLClient(args)
    try:
        with failing("Error determining role ID"):
            role_id = role_id_from_partial(api, args.id)
        services = parse_service_identities(args.service_identity)
        nodes = parse_node_identities(args.node_identity)
        with failing("Error when retrieving current role"):
            current = api.read_or_none(f"/v1/acl/role/{role_id}")
        if current is None:
            raise CommandError(f"Role not found with ID {go_quote(role_id)}")
        policies = _policy_links(api, args)
        if args.no_merge:
            role: dict[str, Any] = {
                "ID": role_id,
                "Name": args.name,
                "Description": args.description,
                "Policies": policies,
                "ServiceIdentities": services,
                "NodeIdentities": nodes,
            }
        else:
            role = _merged(current, args, policies, services, nodes)
        with failing(f"Error updating role {go_quote(role_id)}"):
            updated = api.put(f"/v1/acl/role/{role_id}", role)
    finally:
        api.close()
    info(format_role(updated or {}, args.format, args.meta))
    return 0


# ---- delete -------------------------------------------------------------------------------


def delete_parser() -> Parser:
    p = Parser(
        "acl role delete",
        "senate acl role delete [options] -id ROLE",
        "    Deletes an ACL role by providing the ID or a unique ID prefix.\n\n"
        "    Delete by prefix:\n\n"
        "        $ senate acl role delete -id b6b85\n\n"
        "    Delete by full ID:\n\n"
        "        $ senate acl role delete -id b6b856da-5193-4e78-845a-7d61ca8371ba",
    )
    add_common(p, meta=False, fmt=False)
    p.flag("id", default="", metavar="string", help=_ID_HELP.format("delete"))
    p.flag("name", default="", metavar="string", help="The name of the role to delete.")
    return p


def _delete(args: argparse.Namespace) -> int:
    if not args.id and not args.name:
        raise CommandError("Must specify the -id or -name parameters")
    api = ACLClient(args)
    try:
        with failing("Error determining role ID"):
            if args.id:
                role_id = role_id_from_partial(api, args.id)
            else:
                role_id = role_id_by_name(api, args.name)
        with failing(f"Error deleting role {go_quote(role_id)}"):
            api.delete(f"/v1/acl/role/{role_id}")
    finally:
        api.close()
    info(f"Role {go_quote(role_id)} deleted successfully")
    return 0


# ---- list ---------------------------------------------------------------------------------


def list_parser() -> Parser:
    p = Parser(
        "acl role list",
        "senate acl role list [options]",
        "    Lists all the ACL roles.\n\n    Example:\n\n        $ senate acl role list",
    )
    add_common(p, what="role")
    return p


def _list(args: argparse.Namespace) -> int:
    check_format(args)
    api = ACLClient(args)
    try:
        with failing("Failed to retrieve the role list"):
            roles = api.get_json("/v1/acl/roles") or []
    finally:
        api.close()
    info(format_role_list(roles, args.format, args.meta))
    return 0


SUBCOMMANDS = {
    "create": (create_parser, _create),
    "delete": (delete_parser, _delete),
    "list": (list_parser, _list),
    "read": (read_parser, _read),
    "update": (update_parser, _update),
}


def run(argv: list[str]) -> int:
    return run_group(argv, ROLE_HELP, "acl role", SUBCOMMANDS)
