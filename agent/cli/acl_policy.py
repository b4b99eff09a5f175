"""`senate acl policy create|read|update|delete|list`: Consul 1.x's command/acl/policy/*.

A policy is named by -id (its ID, a unique prefix of it, or `global-management`) or -name.
-rules is the rules' text, `@file` to read them from a file, or `-` for stdin. `update` merges
what its flags give into the policy as it is (a flag not given keeps its value) unless
-no-merge, which writes exactly what the flags say.
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
    load_data_source,
    policy_by_name,
    policy_id_by_name,
    policy_id_from_partial,
    repeated,
    run_group,
)
from agent.cli.acl_format import (
    format_policy,
    format_policy_list,
)
from agent.cli.common import Parser, err, go_quote

POLICY_HELP = """Usage: senate acl policy <subcommand> [options] [args]

  This command has subcommands for managing Senate's ACL policies.
  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  Create a new ACL policy:

      $ senate acl policy create -name "new-policy" \\
                                 -description "This is an example policy" \\
                                 -valid-datacenter "dc1" \\
                                 -valid-datacenter "dc2" \\
                                 -rules @rules.hcl
  List all policies:

      $ senate acl policy list

  Update a policy:

      $ senate acl policy update -name "other-policy" -valid-datacenter "dc1"

  Read a policy:

    $ senate acl policy read -id 0479e93e-091c-4475-9b06-79a004765c24

  Delete a policy

    $ senate acl policy delete -name "my-policy"

  For more examples, ask for subcommand help or view the documentation.

Subcommands:
    create    Create an ACL policy
    delete    Delete an ACL policy
    list      Lists ACL policies
    read      Read an ACL policy
    update    Update an ACL policy
"""

_ID_HELP = (
    "The ID of the policy to {}. It may be specified as a unique ID prefix but will error if "
    "the prefix matches multiple policy IDs"
)
_RULES_HELP = (
    "The policy rules. May be prefixed with '@' to indicate that the value is a file path to "
    "load the rules from. '-' may also be given to indicate that the rules are available on "
    "stdin"
)
_DC_HELP = (
    "Datacenter that the policy should be valid within. This flag may be specified multiple times"
)


def _missing_id_or_name(args: argparse.Namespace, name: str | None) -> None:
    if not args.id and not name:
        raise CommandError("Must specify either the -id or -name parameters")


# ---- create -------------------------------------------------------------------------------


def create_parser() -> Parser:
    p = Parser(
        "acl policy create",
        "senate acl policy create -name NAME [options]",
        "    The -rules option values allows loading the value from stdin, a file\n"
        "    or the raw value. To use stdin pass '-' as the value. To load the value\n"
        "    from a file prefix the value with an '@'. Any other values will be used\n"
        "    directly.\n\n"
        "    Create a new policy:\n\n"
        '        $ senate acl policy create -name "new-policy" \\\n'
        '                                   -description "This is an example policy" \\\n'
        '                                   -valid-datacenter "dc1" \\\n'
        '                                   -valid-datacenter "dc2" \\\n'
        "                                   -rules @rules.hcl",
    )
    add_common(p, what="policy")
    p.flag(
        "name",
        default="",
        metavar="string",
        help="The new policy's name. This flag is required.",
    )
    p.flag("description", default="", metavar="string", help="A description of the policy")
    repeated(p, "valid-datacenter", _DC_HELP)
    p.flag("rules", default="", metavar="string", help=_RULES_HELP)
    return p


def _create(args: argparse.Namespace) -> int:
    if not args.name:
        err("Missing require '-name' flag")
        err(create_parser().format_help().rstrip())
        return 1
    check_format(args)
    api = ACLClient(args)
    try:
        with failing("Error loading rules"):
            rules = load_data_source(args.rules)
        policy = {
            "Name": args.name,
            "Description": args.description,
            "Datacenters": args.valid_datacenter,
            "Rules": rules,
        }
        with failing("Failed to create new policy"):
            created = api.put("/v1/acl/policy", policy)
    finally:
        api.close()
    info(format_policy(created or {}, args.format, args.meta))
    return 0


# ---- read ---------------------------------------------------------------------------------


def read_parser() -> Parser:
    p = Parser(
        "acl policy read",
        "senate acl policy read [options] POLICY",
        "    This command will retrieve and print out the details\n"
        "    of a single policy.\n\n"
        "    Read:\n\n"
        "        $ senate acl policy read -id fdabbcb5-9de5-4b1a-961f-77214ae88cba\n\n"
        "    Read by name:\n\n"
        "        $ senate acl policy read -name my-policy",
    )
    add_common(p, what="policy")
    p.flag("id", default="", metavar="string", help=_ID_HELP.format("read"))
    p.flag("name", default="", metavar="string", help="The name of the policy to read.")
    return p


def _read(args: argparse.Namespace) -> int:
    _missing_id_or_name(args, args.name)
    check_format(args)
    api = ACLClient(args)
    try:
        if args.id:
            with failing("Error determining policy ID"):
                policy_id = policy_id_from_partial(api, args.id)
            with failing(f"Error reading policy {go_quote('id:' + policy_id)}"):
                policy = api.get_json(f"/v1/acl/policy/{policy_id}")
        else:
            with failing(f"Error reading policy {go_quote('name:' + args.name)}"):
                policy = policy_by_name(api, args.name)
    finally:
        api.close()
    if policy is None:
        raise CommandError(f"Error policy not found: {args.name}")
    info(format_policy(policy, args.format, args.meta))
    return 0


# ---- update -------------------------------------------------------------------------------


def update_parser() -> Parser:
    p = Parser(
        "acl policy update",
        "senate acl policy update [options]",
        "  Updates a policy. By default it will merge the policy information with its\n"
        "  current state so that you do not have to provide all parameters. This\n"
        "  behavior can be disabled by passing -no-merge.\n\n"
        "  Rename the policy:\n\n"
        '          $ senate acl policy update -id abcd -name "better-name"\n\n'
        "  Override all policy attributes:\n\n"
        "          # this will remove any datacenter scope if provided and will remove\n"
        "          # the description\n"
        '          $ senate acl policy update -id abcd -name "better-name" -rules @rules.hcl',
    )
    add_common(p, what="policy")
    p.flag("id", default="", metavar="string", help=_ID_HELP.format("update"))
    # None: not given (Consul's flags.Visit), so the policy keeps what it has
    p.flag("name", default=None, metavar="string", help="The policies name.")
    p.flag("description", default=None, metavar="string", help="A description of the policy")
    repeated(p, "valid-datacenter", _DC_HELP)
    p.flag("rules", default=None, metavar="string", help=_RULES_HELP)
    p.flag(
        "no-merge",
        action="store_true",
        help="Do not merge the current policy information with what is provided to the "
        "command. Instead overwrite all fields with the exception of the policy ID which is "
        "immutable.",
    )
    return p


def _update(args: argparse.Namespace) -> int:
    _missing_id_or_name(args, args.name)
    check_format(args)
    api = ACLClient(args)
    try:
        with failing("Error determining policy ID"):
            if args.id:
                policy_id = policy_id_from_partial(api, args.id)
            else:
                policy_id = policy_id_by_name(api, args.name)
        with failing("Error loading data source"):
            rules = load_data_source(args.rules or "")
        updated: dict[str, Any]
        if args.no_merge:
            updated = {
                "ID": policy_id,
                "Name": args.name or "",
                "Description": args.description or "",
                "Datacenters": args.valid_datacenter,
                "Rules": rules,
            }
        else:
            with failing(f"Error reading policy {go_quote(policy_id)}"):
                current = api.get_json(f"/v1/acl/policy/{policy_id}") or {}
            updated = {
                "ID": policy_id,
                "Name": current.get("Name", ""),
                "Description": current.get("Description", ""),
                "Datacenters": current.get("Datacenters"),
                "Rules": current.get("Rules", ""),
            }
            if args.name is not None:
                updated["Name"] = args.name
            if args.description is not None:
                updated["Description"] = args.description
            if args.rules is not None:
                updated["Rules"] = rules
            if args.valid_datacenter is not None:
                updated["Datacenters"] = args.valid_datacenter
        with failing(f"Error updating policy {go_quote(policy_id)}"):
            result = api.put(f"/v1/acl/policy/{policy_id}", updated)
    finally:
        api.close()
    info(format_policy(result or {}, args.format, args.meta))
    return 0


# ---- delete -------------------------------------------------------------------------------


def delete_parser() -> Parser:
    p = Parser(
        "acl policy delete",
        "senate acl policy delete [options] -id POLICY",
        "    Deletes an ACL policy by providing either the ID or a unique ID prefix.\n\n"
        "    Delete by prefix:\n\n"
        "        $ senate acl policy delete -id b6b85\n\n"
        "    Delete by full ID:\n\n"
        "        $ senate acl policy delete -id b6b856da-5193-4e78-845a-7d61ca8371ba",
    )
    add_common(p, meta=False, fmt=False)
    p.flag("id", default="", metavar="string", help=_ID_HELP.format("delete"))
    p.flag("name", default="", metavar="string", help="The name of the policy to delete.")
    return p


def _delete(args: argparse.Namespace) -> int:
    _missing_id_or_name(args, args.name)
    api = ACLClient(args)
    try:
        with failing("Error determining policy ID"):
            if args.id:
                policy_id = policy_id_from_partial(api, args.id)
            else:
                policy_id = policy_id_by_name(api, args.name)
        with failing(f"Error deleting policy {go_quote(policy_id)}"):
            api.delete(f"/v1/acl/policy/{policy_id}")
    finally:
        api.close()
    info(f"Policy {go_quote(policy_id)} deleted successfully")
    return 0


# ---- list ---------------------------------------------------------------------------------


def list_parser() -> Parser:
    p = Parser(
        "acl policy list",
        "senate acl policy list [options]",
        "    Lists all the ACL policies\n\n    Example:\n\n        $ senate acl policy list",
    )
    add_common(p, what="policy")
    return p


def _list(args: argparse.Namespace) -> int:
    check_format(args)
    api = ACLClient(args)
    try:
        with failing("Failed to retrieve the policy list"):
            policies = api.get_json("/v1/acl/policies") or []
    finally:
        api.close()
    info(format_policy_list(policies, args.format, args.meta))
    return 0


SUBCOMMANDS = {
    "create": (create_parser, _create),
    "delete": (delete_parser, _delete),
    "list": (list_parser, _list),
    "read": (read_parser, _read),
    "update": (update_parser, _update),
}


def run(argv: list[str]) -> int:
    return run_group(argv, POLICY_HELP, "acl policy", SUBCOMMANDS)
