"""Consul's ACL errors (acl/errors.go, errors_ce.go) with their exact wording."""

from __future__ import annotations

from agent.acl.policy import AccessLevel

ANONYMOUS_TOKEN_ID = "00000000-0000-0000-0000-000000000002"

ERR_NOT_FOUND = "ACL not found"
ERR_ROOT_DENIED = "Cannot resolve root ACL"
ERR_DISABLED = "ACL support disabled"
ERR_PERMISSION_DENIED = "Permission denied"


class PermissionDeniedError(Exception):
    """PermissionDeniedError: `Permission denied: token with AccessorID '<id>' lacks
    permission 'key:write' on "foo"` (or `: anonymous token ...` with the hint Consul adds,
    or `: <cause>` when only a cause is known)."""

    def __init__(
        self,
        cause: str = "",
        *,
        accessor: str = "",
        resource: str = "",
        access_level: AccessLevel = AccessLevel.UNKNOWN,
        resource_id: str = "",
    ) -> None:
        self.cause = cause
        self.accessor = accessor
        self.resource = resource
        self.access_level = access_level
        self.resource_id = resource_id
        super().__init__(str(self))

    def __str__(self) -> str:
        msg = ERR_PERMISSION_DENIED
        if self.cause:
            return f"{msg}: {self.cause}"
        if not self.resource:
            return msg
        anonymous = self.accessor == ANONYMOUS_TOKEN_ID
        msg += ": anonymous token" if anonymous else f": token with AccessorID '{self.accessor}'"
        msg += f" lacks permission '{self.resource}:{self.access_level}'"
        if self.resource_id:
            msg += f' on "{self.resource_id}"'
        if anonymous:
            msg += (
                ". The anonymous token is used implicitly when a request does not specify a token."
            )
        return msg


def permission_denied(
    accessor: str, resource: str, access_level: AccessLevel, name: str = ""
) -> PermissionDeniedError:
    """PermissionDeniedByACL / PermissionDeniedByACLUnnamed (name empty)."""
    return PermissionDeniedError(
        accessor=accessor, resource=resource, access_level=access_level, resource_id=name
    )
