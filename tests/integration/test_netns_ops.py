"""pymultus.netns.ops in real network namespaces (veth pairs inside a throw-away netns only)."""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pymultus.errors import INVALID_NETWORK_CONFIG, IO_FAILURE, InvalidConfig, IOFailure
from pymultus.netns.ops import Netns, netns_exists
from tests.support import netns as support
from tests.support.isolated import run_isolated
from tests.support.netns import ip, netns

pytestmark = pytest.mark.netns

OPS = Netns()


@contextmanager
def two_links() -> Iterator[support.Netns]:
    """A netns with veth ends ``a0`` (10.61.1.2/24, fd00:61:1::2/64) and ``b0`` (10.61.2.2/24,
    fd00:61:2::2/64), each with a v4 and a v6 default route."""
    with netns("pmo") as ns:
        n = ns.name
        ns.exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0")
        ns.exec("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=0")
        ip("link", "add", "a0", "type", "veth", "peer", "name", "b0", netns=n)
        for link in ("a0", "b0"):
            ip("link", "set", link, "up", netns=n)
        ip("addr", "add", "10.61.1.2/24", "dev", "a0", netns=n)
        ip("addr", "add", "10.61.2.2/24", "dev", "b0", netns=n)
        ip("-6", "addr", "add", "fd00:61:1::2/64", "dev", "a0", "nodad", netns=n)
        ip("-6", "addr", "add", "fd00:61:2::2/64", "dev", "b0", "nodad", netns=n)
        ip("route", "add", "default", "via", "10.61.1.1", "dev", "a0", netns=n)
        ip("route", "add", "default", "via", "10.61.2.1", "dev", "b0", "metric", "100", netns=n)
        ip("-6", "route", "add", "default", "via", "fd00:61:1::1", "dev", "a0", netns=n)
        ip("-6", "route", "add", "default", "via", "fd00:61:2::1", "dev", "b0", "metric", "100", netns=n)
        yield ns


def defaults(ns: support.Netns, family: str) -> set[tuple[str, str]]:
    """{(dev, gateway)} of the main-table default routes."""
    return {
        (str(r["dev"]), str(r.get("gateway", ""))) for r in ns.routes(family) if r.get("dst") == "default"
    }


ALL_V4 = {("a0", "10.61.1.1"), ("b0", "10.61.2.1")}
ALL_V6 = {("a0", "fd00:61:1::1"), ("b0", "fd00:61:2::1")}


def test_interface_exists() -> None:
    with two_links() as ns:
        assert OPS.interface_exists(ns.path, "a0")
        assert OPS.interface_exists(ns.path, "lo")
        assert not OPS.interface_exists(ns.path, "eth0")
        assert not OPS.interface_exists(ns.path, "x" * 16)
        assert not OPS.interface_exists(ns.path, "")
        # The host's own interfaces are not visible: the check really ran inside the netns.
        host_links = os.listdir("/sys/class/net")
        hidden = [name for name in host_links if name not in ("lo", "a0", "b0")]
        if hidden:
            assert not OPS.interface_exists(ns.path, hidden[0])


def test_interface_lookup_enters_nothing_and_loads_no_ctypes() -> None:
    """The check asks from the caller's namespace (namespace ID + RTM_GETLINK): no thread joins
    the pod's namespace and libc's setns (``_ctypes``, ~1 ms to load) is not needed."""
    with two_links() as ns:
        code = (
            f"import sys; sys.path[:0] = {sys.path!r}\n"
            "from pymultus.netns.ops import Netns\n"
            f"print(Netns().interface_exists({ns.path!r}, 'a0'), '_ctypes' in sys.modules)\n"
        )
        assert run_isolated(code).split() == ["True", "False"]


def test_a_kernel_without_namespace_ids_gets_the_lookup_from_inside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pymultus.netns import rtnetlink

    def refused(self: rtnetlink.Rtnetlink, fd: int) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(rtnetlink.Rtnetlink, "peer_nsid", refused)
    with two_links() as ns:
        assert OPS.interface_exists(ns.path, "a0")
        assert not OPS.interface_exists(ns.path, "eth0")


def test_caller_thread_stays_in_its_namespace() -> None:
    before = os.readlink("/proc/thread-self/ns/net")
    with two_links() as ns:
        OPS.interface_exists(ns.path, "a0")
        OPS.replace_default_routes(ns.path, "a0", remove_families=[4], gateways=[])
    assert os.readlink("/proc/thread-self/ns/net") == before


def test_concurrent_calls_in_different_namespaces() -> None:
    errors: list[BaseException] = []
    with netns("pmo") as first, netns("pmo") as second:
        ip("link", "add", "only1", "type", "veth", "peer", "name", "only1p", netns=first.name)
        ip("link", "add", "only2", "type", "veth", "peer", "name", "only2p", netns=second.name)

        def check(path: str, mine: str, other: str) -> None:
            try:
                for _ in range(50):
                    assert OPS.interface_exists(path, mine)
                    assert not OPS.interface_exists(path, other)
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=check, args=(first.path, "only1", "only2")),
            threading.Thread(target=check, args=(second.path, "only2", "only1")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_remove_v4_only() -> None:
    with two_links() as ns:
        OPS.replace_default_routes(ns.path, "b0", remove_families=[4], gateways=[])
        assert defaults(ns, "-4") == {("a0", "10.61.1.1")}
        assert defaults(ns, "-6") == ALL_V6


def test_remove_v6_only() -> None:
    with two_links() as ns:
        OPS.replace_default_routes(ns.path, "a0", remove_families=[6], gateways=[])
        assert defaults(ns, "-4") == ALL_V4
        assert defaults(ns, "-6") == {("b0", "fd00:61:2::1")}


def test_remove_both_families_removes_every_default_on_that_link() -> None:
    with two_links() as ns:
        # A second v4 default on a0 with another metric is removed too; other routes stay.
        ip("route", "add", "default", "via", "10.61.1.9", "dev", "a0", "metric", "50", netns=ns.name)
        ip("route", "add", "10.99.0.0/16", "via", "10.61.1.1", "dev", "a0", netns=ns.name)
        OPS.replace_default_routes(ns.path, "a0", remove_families=[4, 6], gateways=[])
        assert defaults(ns, "-4") == {("b0", "10.61.2.1")}
        assert defaults(ns, "-6") == {("b0", "fd00:61:2::1")}
        assert any(r["dst"] == "10.99.0.0/16" for r in ns.routes("-4"))


def test_remove_ignores_other_tables() -> None:
    with two_links() as ns:
        ip("route", "add", "default", "via", "10.61.1.1", "dev", "a0", "table", "100", netns=ns.name)
        OPS.replace_default_routes(ns.path, "a0", remove_families=[4], gateways=[])
        table100 = ip("route", "show", "table", "100", netns=ns.name)
        assert "default via 10.61.1.1 dev a0" in table100


def test_move_default_route_to_other_link_via_gateway() -> None:
    # What default-route does for the chosen attachment: drop its own defaults, add the requested.
    with two_links() as ns:
        OPS.replace_default_routes(ns.path, "a0", remove_families=[4, 6], gateways=[])
        OPS.replace_default_routes(
            ns.path, "b0", remove_families=[4, 6], gateways=["10.61.2.254", "fd00:61:2::fe"]
        )
        assert defaults(ns, "-4") == {("b0", "10.61.2.254")}
        assert defaults(ns, "-6") == {("b0", "fd00:61:2::fe")}


def test_add_is_idempotent() -> None:
    with two_links() as ns:
        for _ in range(2):
            OPS.replace_default_routes(ns.path, "a0", remove_families=[], gateways=["10.61.1.1"])
        assert defaults(ns, "-4") == ALL_V4
        routes = [r for r in ns.routes("-4") if r.get("dst") == "default" and r["dev"] == "a0"]
        assert len(routes) == 1


def test_nothing_to_do_still_validates_nothing_and_changes_nothing() -> None:
    with two_links() as ns:
        OPS.replace_default_routes(ns.path, "a0", remove_families=[], gateways=[])
        assert defaults(ns, "-4") == ALL_V4
        assert defaults(ns, "-6") == ALL_V6


def test_unreachable_gateway_is_a_clear_error() -> None:
    with two_links() as ns:
        with pytest.raises(IOFailure) as info:
            OPS.replace_default_routes(ns.path, "a0", remove_families=[], gateways=["10.200.0.1"])
        assert info.value.code == IO_FAILURE
        assert "10.200.0.1" in info.value.msg
        assert "ENETUNREACH" in info.value.msg
        assert defaults(ns, "-4") == ALL_V4


def test_invalid_gateway_changes_nothing() -> None:
    with two_links() as ns:
        with pytest.raises(InvalidConfig) as info:
            OPS.replace_default_routes(ns.path, "a0", remove_families=[4], gateways=["10.61.1.300"])
        assert info.value.code == INVALID_NETWORK_CONFIG
        assert "10.61.1.300" in info.value.msg
        assert defaults(ns, "-4") == ALL_V4


def test_missing_interface() -> None:
    with two_links() as ns, pytest.raises(IOFailure, match="interface nope0 not found in network namespace"):
        OPS.replace_default_routes(ns.path, "nope0", remove_families=[4], gateways=[])


def test_missing_netns_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = str(tmp_path / "gone")
    for call in (
        lambda: OPS.interface_exists(missing, "eth0"),
        lambda: OPS.replace_default_routes(missing, "eth0", remove_families=[4], gateways=[]),
    ):
        with pytest.raises(IOFailure) as info:
            call()
        assert info.value.code == IO_FAILURE
        assert info.value.msg == f"network namespace {missing} does not exist"
        assert "ENOENT" in info.value.details


def test_not_a_netns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # What remains when a runtime unmounted the namespace but left the file behind.
    leftover = tmp_path / "leftover"
    leftover.write_text("")
    with pytest.raises(IOFailure, match="is not a network namespace"):
        OPS.interface_exists(str(leftover), "eth0")
    assert not netns_exists(str(leftover))


def test_netns_exists() -> None:
    with netns("pmo") as ns:
        assert netns_exists(ns.path)
        assert OPS.netns_exists(ns.path)
        path = ns.path
    assert not netns_exists(path)
    assert not netns_exists("/proc/self/ns/mnt")  # a namespace, but not a network one
    assert netns_exists("/proc/self/ns/net")
