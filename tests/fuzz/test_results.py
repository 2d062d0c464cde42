"""Fuzz: CNI results across the spec versions.

Converting a result from one version to another and back loses nothing that both versions can
hold: ``project`` below states what each generation keeps (libcni's rules, see
``pymultus.cni.result``). Any decoded object (a delegate's stdout) is a Result or a code 1/6 error.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pymultus import errors
from pymultus.cni.result import DNS, Interface, IPConfig, Result, Route
from tests.fuzz import strategies as fs
from tests.fuzz.invariants import outcome

VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
LEGACY, GEN_04, GEN_1X = 0, 1, 2
GENERATION = {"0.1.0": 0, "0.2.0": 0, "0.3.0": 1, "0.3.1": 1, "0.4.0": 1, "1.0.0": 2, "1.1.0": 2}
CODES = {errors.INCOMPATIBLE_CNI_VERSION, errors.DECODING_FAILURE}

words = st.text("abcdef0123456789-", min_size=1, max_size=12)
maybe = st.one_of(st.just(""), words)
small = st.integers(0, 2**31 - 1)
cidr4 = st.builds(lambda ip, n: f"{ip}/{n}", st.ip_addresses(v=4), st.integers(0, 32))
cidr6 = st.builds(lambda ip, n: f"{ip}/{n}", st.ip_addresses(v=6), st.integers(0, 128))
interfaces = st.builds(Interface, words, maybe, mtu=small, sandbox=maybe, socket_path=maybe, pci_id=maybe)
ip_configs = st.builds(
    IPConfig,
    st.one_of(cidr4, cidr6),
    st.one_of(st.none(), st.ip_addresses().map(str)),
    st.one_of(st.none(), st.integers(0, 4)),
)
routes = st.builds(
    Route,
    st.one_of(cidr4, cidr6),
    st.one_of(st.none(), st.ip_addresses().map(str)),
    mtu=small,
    advmss=small,
    priority=small,
    table=st.one_of(st.none(), small),
    scope=st.one_of(st.none(), st.integers(0, 255)),
)
dns = st.builds(
    DNS,
    st.lists(st.ip_addresses().map(str), max_size=2),
    maybe,
    st.lists(words, max_size=2),
    st.lists(words, max_size=2),
)
results = st.builds(
    Result,
    st.lists(interfaces, max_size=3),
    st.lists(ip_configs, max_size=4),
    st.lists(routes, max_size=4),
    dns,
)


def _is_v4(cidr: str) -> bool:
    return ":" not in cidr


def project(result: Result, generation: int) -> Result:
    """What a result of ``generation`` can hold of ``result``."""
    out = result.copy()
    if generation < GEN_1X:
        for iface in out.interfaces:
            iface.mtu, iface.socket_path, iface.pci_id = 0, "", ""
        for route in out.routes:
            route.mtu, route.advmss, route.priority, route.table, route.scope = 0, 0, 0, None, None
    if generation == LEGACY:
        first4 = next((ip for ip in out.ips if _is_v4(ip.address)), None)
        first6 = next((ip for ip in out.ips if not _is_v4(ip.address)), None)
        out.ips = [IPConfig(ip.address, ip.gateway) for ip in (first4, first6) if ip is not None]
        out.interfaces = []
        # Routes live under the block of their family, IPv4 first.
        out.routes = [r for r in out.routes if _is_v4(r.dst) and first4] + [
            r for r in out.routes if not _is_v4(r.dst) and first6
        ]
    return out


@given(results, st.sampled_from(VERSIONS), st.sampled_from(VERSIONS))
def test_conversion_keeps_what_both_versions_hold(result: Result, first: str, second: str) -> None:
    emitted = outcome(lambda: result.to_version(first), CODES)
    if isinstance(emitted, errors.MultusError):
        assert GENERATION[first] == LEGACY and not result.ips  # no address: nothing to express
        return
    there = Result.parse(emitted)
    assert there == project(result, GENERATION[first])
    converted = outcome(lambda: there.to_version(second), CODES)
    if isinstance(converted, errors.MultusError):
        return
    back = Result.parse(Result.parse(converted).to_version(first))
    assert back == project(result, min(GENERATION[first], GENERATION[second]))


RESULT_KEYS = ["cniVersion", "interfaces", "ips", "routes", "dns", "ip4", "ip6", "code", "msg"]


def _emitted(pair: tuple[Result, str]) -> dict[str, object]:
    result, version = pair
    try:
        return result.to_version(version)
    except errors.IncompatibleVersion:
        return {"cniVersion": version}


emitted_results = st.tuples(results, st.sampled_from(VERSIONS)).map(_emitted)


@given(fs.mutated_documents(emitted_results, RESULT_KEYS), st.sampled_from([None, *VERSIONS]))
def test_any_result_object(doc: dict[str, object], assume: str | None) -> None:
    got = outcome(lambda: Result.parse(doc, assume), CODES)
    if isinstance(got, Result):
        for version in VERSIONS:
            outcome(lambda version=version: got.to_version(version), CODES)
