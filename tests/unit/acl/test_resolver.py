"""agent/acl/resolver.py: a token's secret to its Access, cached as Consul's ACLResolver
caches (by the ACL tables' index on the primary's servers, token_ttl elsewhere), with the
down policy deciding when the servers cannot be asked."""

from __future__ import annotations

import pytest

from agent.acl.errors import ERR_NOT_FOUND
from agent.acl.resolver import DISABLED, ACLResolver, Identity
from agent.errors import RPCError

APP = 'key_prefix "app/" { policy = "write" }'


class Backend:
    def __init__(self) -> None:
        self.tokens = {"s-app": Identity("a-app", (APP,))}
        self.calls = 0
        self.down: Exception | None = None
        self.version = 1

    async def fetch(self, secret: str) -> Identity:
        self.calls += 1
        if self.down is not None:
            raise self.down
        if secret not in self.tokens:
            raise RPCError(ERR_NOT_FOUND)
        return self.tokens[secret]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_rules_on_top_of_the_default_policy() -> None:
    b = Backend()
    for default, other in (("deny", False), ("allow", True)):
        acc = await ACLResolver(b.fetch, default_policy=default).resolve("s-app")
        assert acc.accessor_id == "a-app"
        assert acc.can("key", "write", "app/x")
        assert acc.can("key", "write", "other/x") is other
        assert acc.can("acl", "write") is False  # allow-all never manages ACLs


async def test_need_raises_consuls_permission_denied() -> None:
    acc = await ACLResolver(Backend().fetch, default_policy="deny").resolve("s-app")
    with pytest.raises(RPCError) as err:
        acc.need("key", "write", "other/x")
    assert str(err.value) == (
        "Permission denied: token with AccessorID 'a-app' lacks permission 'key:write' "
        'on "other/x"'
    )
    with pytest.raises(RPCError, match=r"lacks permission 'key:write'$"):  # the whole tree
        acc.need("key", "write-prefix", "")


async def test_filter_says_whether_it_dropped_anything() -> None:
    acc = await ACLResolver(Backend().fetch, default_policy="deny").resolve("s-app")
    kept, dropped = acc.filter(["app/a", "b", "app/c"], "key", str)
    assert (kept, dropped) == (["app/a", "app/c"], True)
    assert acc.filter(["app/a"], "key", str) == (["app/a"], False)
    assert DISABLED.filter(["x"], "key", str) == (["x"], False)


async def test_unknown_secret_is_acl_not_found_and_never_cached() -> None:
    b = Backend()
    r = ACLResolver(b.fetch, default_policy="deny")
    for _ in range(2):
        with pytest.raises(RPCError, match=r"^ACL not found$"):
            await r.resolve("nope")
    assert b.calls == 2


async def test_ttl_cache_then_refetch() -> None:
    b, clock = Backend(), Clock()
    r = ACLResolver(b.fetch, default_policy="deny", token_ttl=30.0, clock=clock)
    await r.resolve("s-app")
    clock.now += 29
    await r.resolve("s-app")
    assert b.calls == 1
    clock.now += 2
    b.tokens["s-app"] = Identity("a-app", ())
    acc = await r.resolve("s-app")
    assert b.calls == 2 and not acc.can("key", "write", "app/x")


async def test_version_cache_follows_the_acl_tables_index() -> None:
    b = Backend()
    r = ACLResolver(b.fetch, default_policy="deny", version=lambda: b.version)
    await r.resolve("s-app")
    await r.resolve("s-app")
    assert b.calls == 1
    b.version = 2
    del b.tokens["s-app"]
    with pytest.raises(RPCError, match="ACL not found"):
        await r.resolve("s-app")


@pytest.mark.parametrize(
    ("down_policy", "cached_first", "app_write", "other_write"),
    [
        ("extend-cache", True, True, False),  # the cached identity goes on being used
        ("async-cache", True, True, False),
        ("extend-cache", False, False, False),  # nothing cached: deny
        ("allow", True, True, True),  # the static policy, cache or not
        ("deny", True, False, False),
    ],
)
async def test_down_policy(
    down_policy: str, cached_first: bool, app_write: bool, other_write: bool
) -> None:
    b, clock = Backend(), Clock()
    r = ACLResolver(
        b.fetch, default_policy="deny", down_policy=down_policy, token_ttl=1.0, clock=clock
    )
    if cached_first:
        await r.resolve("s-app")
    clock.now += 5
    b.down = RPCError("No cluster leader")
    acc = await r.resolve("s-app")
    assert acc.can("key", "write", "app/x") is app_write
    assert acc.can("key", "write", "other/x") is other_write
    b.down = ConnectionRefusedError()
    assert (await r.resolve("s-app")).can("key", "write", "app/x") is app_write


async def test_a_stored_policy_that_no_longer_parses_grants_nothing() -> None:
    b = Backend()
    b.tokens["bad"] = Identity("a-bad", ("key_prefix {",))
    acc = await ACLResolver(b.fetch, default_policy="deny").resolve("bad")
    assert not acc.can("key", "read", "x")
