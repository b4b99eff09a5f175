"""Consul 1.x's ACL policy language and authorizer (hashicorp/consul acl/).

The model, as Consul's:

* Rules (HCL or JSON text) are parsed into a `Policy` by `parse_rules`. A rule is a
  resource, an optional label (the segment: node name, key, service name, ...) and a
  disposition: `deny`, `read`, `write`, and for keys also `list`. Labelled resources
  come in an exact form (`key "foo/bar"`: only that key) and a prefix form (`key_prefix
  "foo/"`: every key starting with it, `""` meaning all). `acl`, `keyring`, `operator`,
  `mesh` and `peering` take a disposition and no label. Invalid rules raise `PolicyError`
  with Consul's message.

* A token's policies (with those of its roles and identities) are merged into one
  (`merge_policies`): for the same resource, form and label, deny beats write beats list
  beats read; unrelated rules all stay. A token with `key_prefix "" {policy = "read"}`
  from one policy and `key "a" {policy = "deny"}` from another may read everything but "a".

* `PolicyAuthorizer(policies)` compiles the merge. Each check (`key_read(key)`,
  `service_write(name)`, `operator_read()`, ...) returns a `Decision`: ALLOW or DENY
  when a rule applies, DEFAULT when none does. For a labelled resource the exact rule for
  the name wins; otherwise the longest matching prefix rule; write allows read and list,
  list allows read, read allows only read, deny denies everything. `key_write_prefix`
  (recursive delete) also needs every rule under the prefix to grant write. `mesh` and
  `peering` fall back to `operator` when the policy has no rule of their own.

* DEFAULT is resolved by chaining: `chain(policy_authorizer, allow_all())` (default
  policy allow) or `chain(policy_authorizer, deny_all())` (deny) takes the first answer
  that is not DEFAULT. `allow_all()` allows everything except ACL management and
  snapshots; `manage_all()` allows everything (the management token); a chain whose
  members all abstain denies.

* `acl.enable_key_list_policy` (false by default, as in Consul) is the chain's
  `enable_key_list_policy`: when false, `key_list` is ALLOW and listings are filtered by
  `key_read` entry by entry, so read implies list; when true, listing a prefix needs a
  `list` (or `write`) rule on it.
"""

from agent.acl.authorizer import (
    Authorizer,
    ChainedAuthorizer,
    Decision,
    Resource,
    StaticAuthorizer,
    allow_all,
    chain,
    deny_all,
    enforce,
    enforce_level,
    manage_all,
    root_authorizer,
)
from agent.acl.errors import ANONYMOUS_TOKEN_ID, PermissionDeniedError, permission_denied
from agent.acl.policy import (
    AccessLevel,
    Policy,
    PolicyError,
    Rule,
    merge_policies,
    parse_rules,
    validate,
)
from agent.acl.policy_authorizer import PolicyAuthorizer, RuleTree

__all__ = [
    "ANONYMOUS_TOKEN_ID",
    "AccessLevel",
    "Authorizer",
    "ChainedAuthorizer",
    "Decision",
    "PermissionDeniedError",
    "Policy",
    "PolicyAuthorizer",
    "PolicyError",
    "Resource",
    "Rule",
    "RuleTree",
    "StaticAuthorizer",
    "allow_all",
    "chain",
    "deny_all",
    "enforce",
    "enforce_level",
    "manage_all",
    "merge_policies",
    "parse_rules",
    "permission_denied",
    "root_authorizer",
    "validate",
]
