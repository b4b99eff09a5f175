"""`senate acl ...`: Consul 1.x's `consul acl` (command/acl/*), over the HTTP API.

    senate acl bootstrap [SECRET-FILE|-]      the first management token (PUT /v1/acl/bootstrap)
    senate acl set-agent-token TYPE TOKEN     one of the agent's tokens (PUT /v1/agent/token/*)
    senate acl token  create|read|update|delete|list|clone     (agent/cli/acl_token.py)
    senate acl policy create|read|update|delete|list           (agent/cli/acl_policy.py)
    senate acl role   create|read|update|delete|list           (agent/cli/acl_role.py)

Every one takes the HTTP flags (-http-addr, -token, -token-file, TLS, -datacenter) and their
environment variables; what it prints and its exit codes are Consul's.
"""

from __future__ import annotations

import argparse

from agent.cli.acl_common import (
    ACLClient,
    CommandError,
    add_common,
    check_format,
    failing,
    info,
    load_data_source,
    load_data_source_no_raw,
    run_group,
)
from agent.cli.acl_format import (
    format_token,
)
from agent.cli.common import Parser, err, go_quote
from agent.client import ClientError, ConfigError

ACL_HELP = """Usage: senate acl <subcommand> [options] [args]

  This command has subcommands for interacting with Senate's ACLs.
  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  Bootstrap ACLs:

      $ senate acl bootstrap

  List all ACL tokens:

      $ senate acl token list

  Create a new ACL policy:

      $ senate acl policy create -name "new-policy" \\
                                 -description "This is an example policy" \\
                                 -valid-datacenter "dc1" \\
                                 -valid-datacenter "dc2" \\
                                 -rules @rules.hcl

  Set the default agent token:

      $ senate acl set-agent-token default 0bc6bc46-f25e-4262-b2d9-ffbe1d96be6f

  For more examples, ask for subcommand help or view the documentation.

Subcommands:
    bootstrap          Bootstrap Senate's ACL system
    policy             Manage Senate's ACL policies
    role               Manage Senate's ACL roles
    set-agent-token    Assign tokens for the Senate Agent's usage
    token              Manage Senate's ACL tokens
"""

# ---- bootstrap ----------------------------------------------------------------------------


def bootstrap_parser() -> Parser:
    p = Parser(
        "acl bootstrap",
        "senate acl bootstrap [options] [SECRET-FILE|-]",
        "  The bootstrap command will request Senate to generate a new token with unlimited\n"
        "  privileges to use for management purposes and output its details. This can only\n"
        "  be done once and afterwards bootstrapping will be disabled. If all tokens are lost\n"
        "  and you need to bootstrap again you can follow the bootstrap reset procedure.\n\n"
        "  The optional argument is a file holding the SecretID to give the new token (or -\n"
        "  to read it from stdin).",
    )
    add_common(p, meta=False)
    return p


def _bootstrap(args: argparse.Namespace) -> int:
    if len(args.args) > 1:
        raise CommandError("This command takes up to one argument")
    secret = ""
    if args.args:
        with failing("Error reading provided token"):
            secret = load_data_source_no_raw(args.args[0])
    secret = secret.strip()
    check_format(args)
    api = ACLClient(args)
    try:
        with failing("Failed ACL bootstrapping"):
            token = api.put("/v1/acl/bootstrap", {"BootstrapSecret": secret} if secret else None)
    finally:
        api.close()
    info(format_token(token or {}, args.format, False))
    return 0


# ---- set-agent-token ----------------------------------------------------------------------

#: the CLI's token types -> /v1/agent/token/<kind> (api.Agent().Update*ACLToken)
AGENT_TOKEN_PATHS = {
    "default": "default",
    "agent": "agent",
    "recovery": "agent_recovery",
    "replication": "replication",
    "config_file_service_registration": "config_file_service_registration",
}

SET_AGENT_TOKEN_DESCRIPTION = """\
  This command will set the corresponding token for the agent to use. If token
  persistence is not enabled, then tokens uploaded this way are not persisted
  and if the agent reloads then the tokens will need to be set again.

  Token Types:

    default                           The default token is the token that the agent will use for
                                      both internal agent operations and operations initiated by
                                      the HTTP and DNS interfaces when no specific token is provided.
                                      If not set the agent will use the anonymous token.

    agent                             The token that the agent will use for internal agent operations.
                                      If not given then the default token is used for these operations.

    recovery                          This sets the token that can be used to access the Agent APIs in
                                      the event that the ACL datacenter cannot be reached.

    replication                       This is the token that the agent will use for replication
                                      operations. This token will need to be configured with read access
                                      to whatever data is being replicated.

    config_file_service_registration  This is the token that the agent uses to register services
                                      and checks defined in config files. This token needs to
                                      be configured with permission for the service or checks
                                      being registered. If not set, the default token is used.
                                      If a service or check definition contains a 'token'
                                      field, then that token is used instead.

  Example:

    $ senate acl set-agent-token default c4d0f8df-3aba-4ab6-a7a0-35b760dc29a1"""


def set_agent_token_parser() -> Parser:
    p = Parser(
        "acl set-agent-token",
        "senate acl set-agent-token [options] TYPE TOKEN",
        SET_AGENT_TOKEN_DESCRIPTION,
    )
    add_common(p, meta=False, fmt=False)
    return p


def agent_token_args(argv: list[str]) -> tuple[str, str]:
    """dataFromArgs: TYPE and TOKEN (TOKEN may be @file or - for stdin)."""
    if not argv:
        raise CommandError("Error! Missing TYPE and TOKEN arguments")
    if len(argv) == 1:
        if argv[0] in ("default", "agent", "recovery", "replication"):
            raise CommandError("Error! Missing TOKEN argument")
        raise CommandError("Error! MISSING TYPE argument")
    if len(argv) > 2:
        raise CommandError(f"Error! Too many arguments: expected 2 got {len(argv)}")
    with failing("Error!"):
        return argv[0], load_data_source(argv[1])


def _set_agent_token(args: argparse.Namespace) -> int:
    kind, token = agent_token_args(args.args)
    try:
        api = ACLClient(args)
    except ConfigError as exc:
        err(f"Error connecting to Senate Agent: {exc}")
        return 1
    try:
        path = AGENT_TOKEN_PATHS.get(kind)
        if path is None:
            raise CommandError("Unknown token type")
        try:
            api.put(f"/v1/agent/token/{path}", {"Token": token})
        except ClientError as exc:
            raise CommandError(f"Failed to set ACL token {go_quote(kind)}: {exc}") from None
    finally:
        api.close()
    info(f"ACL token {go_quote(kind)} set successfully")
    return 0


# ---- the group ----------------------------------------------------------------------------


def _token(argv: list[str]) -> int:
    from agent.cli import acl_token

    return acl_token.run(argv)


def _policy(argv: list[str]) -> int:
    from agent.cli import acl_policy

    return acl_policy.run(argv)


def _role(argv: list[str]) -> int:
    from agent.cli import acl_role

    return acl_role.run(argv)


SUBCOMMANDS = {
    "bootstrap": (bootstrap_parser, _bootstrap),
    "policy": _policy,
    "role": _role,
    "set-agent-token": (set_agent_token_parser, _set_agent_token),
    "token": _token,
}


def run(argv: list[str]) -> int:
    return run_group(argv, ACL_HELP, "acl", SUBCOMMANDS)
