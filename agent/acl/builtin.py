"""Consul's built-in policies and the rules it synthesizes for identities
(agent/structs/acl.go, acl_ce.go), as rule text for `parse_rules`."""

from __future__ import annotations

GLOBAL_MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"
GLOBAL_MANAGEMENT_NAME = "global-management"
GLOBAL_MANAGEMENT_DESCRIPTION = "Builtin Policy that grants unlimited access"
GLOBAL_MANAGEMENT_RULES = """
acl = "write"
agent_prefix "" {
	policy = "write"
}
event_prefix "" {
	policy = "write"
}
key_prefix "" {
	policy = "write"
}
keyring = "write"
node_prefix "" {
	policy = "write"
}
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" {
	policy = "write"
}
service_prefix "" {
	policy = "write"
	intentions = "write"
}
session_prefix "" {
	policy = "write"
}"""

GLOBAL_READ_ONLY_ID = "00000000-0000-0000-0000-000000000002"
GLOBAL_READ_ONLY_NAME = "builtin/global-read-only"
GLOBAL_READ_ONLY_DESCRIPTION = (
    "Builtin Policy that grants unlimited read-only access to all components"
)
GLOBAL_READ_ONLY_RULES = """
acl = "read"
agent_prefix "" {
	policy = "read"
}
event_prefix "" {
	policy = "read"
}
key_prefix "" {
	policy = "read"
}
keyring = "read"
node_prefix "" {
	policy = "read"
}
operator = "read"
mesh = "read"
peering = "read"
query_prefix "" {
	policy = "read"
}
service_prefix "" {
	policy = "read"
	intentions = "read"
}
session_prefix "" {
	policy = "read"
}"""

# Reserved IDs of built-in objects start with this (ACLReservedIDPrefix).
RESERVED_ID_PREFIX = "00000000-0000-0000-0000-0000000000"


def service_identity_rules(service: str) -> str:
    """aclPolicyTemplateServiceIdentity: write on the service and its sidecar proxy, read
    on every service and node."""
    return f"""
service "{service}" {{
	policy = "write"
}}
service "{service}-sidecar-proxy" {{
	policy = "write"
}}
service_prefix "" {{
	policy = "read"
}}
node_prefix "" {{
	policy = "read"
}}"""


def node_identity_rules(node: str) -> str:
    """aclPolicyTemplateNodeIdentity: write on the node, read on every service."""
    return f"""
node "{node}" {{
	policy = "write"
}}
service_prefix "" {{
	policy = "read"
}}"""


def dns_rules() -> str:
    """builtin/dns: read of every node, service and prepared query, as DNS needs."""
    return """
node_prefix "" {
	policy = "read"
}
service_prefix "" {
	policy = "read"
}
query_prefix "" {
	policy = "read"
}"""


#: Consul's templated policies: name -> (the variables they take, their rules, description)
TEMPLATED_POLICIES: dict[str, tuple[tuple[str, ...], str]] = {
    "builtin/service": (
        ("name",),
        "Gives the token or role permissions to register a service and discover services "
        "in the Consul catalog. It also gives the specified service's sidecar proxy the "
        "permission to discover and route traffic to other services.",
    ),
    "builtin/node": (
        ("name",),
        "Gives the token or role permissions for a register an agent/node into the catalog. "
        "A node is typically a consul agent but can also be a physical server, cloud "
        "instance or a container.",
    ),
    "builtin/dns": (
        (),
        "Gives the token or role permissions for the Consul DNS to query services in the network.",
    ),
}


def templated_rules(name: str, variables: dict[str, str]) -> str:
    """The rules a templated policy stands for; KeyError for one Consul does not have."""
    if name == "builtin/service":
        return service_identity_rules(variables.get("name", ""))
    if name == "builtin/node":
        return node_identity_rules(variables.get("name", ""))
    if name == "builtin/dns":
        return dns_rules()
    raise KeyError(name)
