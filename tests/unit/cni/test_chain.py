"""libcni-style chain execution, driven through the recording test-double plugin (no root)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pymultus.cni import cache, netconf
from pymultus.cni.chain import CNIConfig, RuntimeConf, build_plugin_config
from pymultus.cni.invoke import PluginExecutor
from pymultus.cni.result import Result
from pymultus.errors import (
    DelegateFailed,
    IncompatibleVersion,
    InvalidEnvironment,
    MultusError,
    PluginNotFound,
)

PLUGINS = str(Path(__file__).resolve().parents[2] / "support" / "plugins")
RESULT_A = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0"}],
    "ips": [{"interface": 0, "address": "10.7.0.2/24"}],
}


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.log = tmp_path / "calls.jsonl"
        self.cache_dir = str(tmp_path / "cache")
        self.cni = CNIConfig(
            search_path=["/nonexistent", PLUGINS],
            executor=PluginExecutor(base_env={"PATH": "/usr/bin:/bin"}, timeout=20),
            cache_dir=self.cache_dir,
        )

    def net(
        self, *behaviours: dict[str, object], version: str = "1.0.0", **top: object
    ) -> netconf.NetworkConfig:
        plugins = [
            {"type": "pmtest", "id": index, "pmtest": {"record": str(self.log), **behaviour}}
            for index, behaviour in enumerate(behaviours)
        ]
        return netconf.load_bytes(
            json.dumps({"cniVersion": version, "name": "tnet", "plugins": plugins, **top}).encode()
        )

    def calls(self) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def summary(self) -> list[tuple[object, object]]:
        return [(c["env"]["CNI_COMMAND"], c["conf"].get("id")) for c in self.calls()]  # type: ignore[index,union-attr]


def _rt(container_id: str = "ctr1", **kw: object) -> RuntimeConf:
    values: dict[str, object] = {"container_id": container_id, "netns": "/var/run/netns/t", "ifname": "eth0"}
    values.update(kw)
    return RuntimeConf(**values)  # type: ignore[arg-type]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


# ---------------------------------------------------------------- per-plugin configuration


def test_plugin_config_injects_name_version_and_only_declared_capabilities() -> None:
    net = netconf.load_bytes(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "net1",
                "plugins": [
                    {
                        "type": "portmap",
                        "name": "ignored",
                        "cniVersion": "0.1.0",
                        "capabilities": {"portMappings": True, "bandwidth": False, "ips": True},
                        "extra": {"kept": True},
                    }
                ],
            }
        ).encode()
    )
    rt = _rt(
        capability_args={"portMappings": [{"hostPort": 80}], "bandwidth": {"ingressRate": 1}, "mac": "x"},
        plugin_args={"cni": {"labels": [{"key": "app", "value": "web"}]}},
    )
    prev = Result.parse({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24"}]})
    conf = build_plugin_config(net, net.plugins[0], prev, rt)
    assert conf == {
        "type": "portmap",
        "name": "net1",
        "cniVersion": "1.0.0",
        "extra": {"kept": True},
        "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}], "dns": {}},
        "runtimeConfig": {"portMappings": [{"hostPort": 80}]},
        "args": {"cni": {"labels": [{"key": "app", "value": "web"}]}},
    }
    assert "capabilities" in net.plugins[0]  # the stored configuration is untouched


@pytest.mark.parametrize(
    ("capabilities", "capability_args", "expected"),
    [
        (None, {"portMappings": []}, None),
        ({"portMappings": False}, {"portMappings": []}, None),
        ({"portMappings": True}, {}, None),
        ({"portMappings": True}, {"bandwidth": {}}, None),
        (
            {"portMappings": True, "bandwidth": True},
            {"bandwidth": {"egressRate": 1}},
            {"bandwidth": {"egressRate": 1}},
        ),
        ({"ips": "true"}, {"ips": ["10.0.0.9/24"]}, None),  # only a JSON true declares a capability
    ],
)
def test_capability_filtering(
    capabilities: dict[str, object] | None,
    capability_args: dict[str, object],
    expected: dict[str, object] | None,
) -> None:
    plugin: dict[str, object] = {"type": "x", "runtimeConfig": {"static": 1}}
    if capabilities is not None:
        plugin["capabilities"] = capabilities
    net = netconf.load_bytes(json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [plugin]}).encode())
    conf = build_plugin_config(net, net.plugins[0], None, _rt(capability_args=capability_args))
    assert conf["runtimeConfig"] == (expected if expected is not None else {"static": 1})
    assert "capabilities" not in conf and "prevResult" not in conf


# ---------------------------------------------------------------- ADD / DEL / CHECK


def test_add_threads_prev_result_in_order_and_caches_the_final_result(h: Harness) -> None:
    net = h.net({"ADD": {"result": RESULT_A}}, {}, {})
    rt = _rt(args=[("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web")], capability_args={"mac": "aa"})
    result = h.cni.add_network_list(net, rt)
    assert h.summary() == [("ADD", 0), ("ADD", 1), ("ADD", 2)]
    calls = h.calls()
    assert "prevResult" not in calls[0]["conf"]  # type: ignore[operator]
    assert calls[1]["conf"]["prevResult"] == {**RESULT_A, "dns": {}}  # type: ignore[index]
    assert calls[2]["conf"]["prevResult"] == {**RESULT_A, "dns": {}}  # type: ignore[index]
    assert calls[0]["env"] == {  # type: ignore[comparison-overlap]
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "ctr1",
        "CNI_NETNS": "/var/run/netns/t",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web",
        "CNI_PATH": f"/nonexistent:{PLUGINS}",
    }
    assert result.ips[0].address == "10.7.0.2/24"
    entry = cache.read(h.cache_dir, "tnet", "ctr1", "eth0")
    assert entry is not None and entry.result == {**RESULT_A, "dns": {}}
    assert entry.cni_args == rt.args and entry.capability_args == {"mac": "aa"}
    assert json.loads(entry.config) == json.loads(net.to_bytes())
    assert h.cni.get_cached_result(net, rt) == result


def test_del_runs_in_reverse_with_the_cached_result_then_removes_it(h: Harness) -> None:
    net = h.net({"ADD": {"result": RESULT_A}}, {}, {})
    h.cni.add_network_list(net, _rt())
    h.log.unlink()
    h.cni.del_network_list(net, _rt(netns=""))
    assert h.summary() == [("DEL", 2), ("DEL", 1), ("DEL", 0)]
    assert all(c["conf"]["prevResult"] == {**RESULT_A, "dns": {}} for c in h.calls())  # type: ignore[index]
    assert all(c["env"]["CNI_NETNS"] == "" for c in h.calls())  # type: ignore[index]
    assert cache.read(h.cache_dir, "tnet", "ctr1", "eth0") is None
    h.log.unlink()
    h.cni.del_network_list(net, _rt())  # a second DEL: no cache, no prevResult, still fine
    assert h.summary() == [("DEL", 2), ("DEL", 1), ("DEL", 0)]
    assert all("prevResult" not in c["conf"] for c in h.calls())  # type: ignore[operator]


def test_del_below_0_4_0_sends_no_prev_result(h: Harness) -> None:
    net = h.net(
        {"ADD": {"result": {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.0.0.3/24"}]}}},
        version="0.3.1",
    )
    h.cni.add_network_list(net, _rt())
    h.cni.del_network_list(net, _rt())
    assert [("prevResult" in c["conf"]) for c in h.calls()] == [False, False]  # type: ignore[operator]


def test_a_corrupt_cache_entry_does_not_stop_del(h: Harness) -> None:
    net = h.net({})
    path = Path(cache.result_path(h.cache_dir, "tnet", "ctr1", "eth0"))
    path.parent.mkdir(parents=True)
    path.write_text(
        '{"kind":"cniCacheV1","containerId":"ctr1","ifName":"eth0","networkName":"tnet","result":{"ips":[{"add'
    )
    h.cni.del_network_list(net, _rt())
    assert h.summary() == [("DEL", 0)] and not path.exists()
    path.write_text(
        json.dumps(
            {
                "kind": "cniCacheV1",
                "containerId": "ctr1",
                "ifName": "eth0",
                "networkName": "tnet",
                "result": {"cniVersion": "7.0.0"},
            }
        )
    )
    h.cni.del_network_list(net, _rt())  # an unusable cached result: dropped, DEL goes on
    assert h.summary() == [("DEL", 0), ("DEL", 0)] and not path.exists()


def test_a_failing_del_keeps_the_cache_for_the_retry(h: Harness) -> None:
    net = h.net({"DEL": {"error": {"code": 11, "msg": "busy"}}}, {})
    h.cni.add_network_list(net, _rt())
    with pytest.raises(DelegateFailed) as info:
        h.cni.del_network_list(net, _rt())
    assert info.value.code == 11 and "tnet" in info.value.details
    assert cache.read(h.cache_dir, "tnet", "ctr1", "eth0") is not None


def test_check_uses_the_cached_result_in_order(h: Harness) -> None:
    net = h.net({"ADD": {"result": RESULT_A}}, {})
    h.cni.add_network_list(net, _rt())
    h.log.unlink()
    h.cni.check_network_list(net, _rt())
    assert h.summary() == [("CHECK", 0), ("CHECK", 1)]
    assert all(c["conf"]["prevResult"] == {**RESULT_A, "dns": {}} for c in h.calls())  # type: ignore[index]


def test_check_is_refused_below_0_4_0_and_skipped_when_disabled(h: Harness) -> None:
    with pytest.raises(IncompatibleVersion, match="CHECK") as info:
        h.cni.check_network_list(h.net({}, version="0.3.1"), _rt())
    assert info.value.code == 1
    h.cni.check_network_list(h.net({}, disableCheck="true"), _rt())
    assert h.calls() == []


def test_a_failing_plugin_stops_add_with_its_own_code_and_caches_nothing(h: Harness) -> None:
    net = h.net({}, {"ADD": {"error": {"code": 142, "msg": "vlan id out of range"}, "stderr": "dbg"}}, {})
    with pytest.raises(DelegateFailed) as info:
        h.cni.add_network_list(net, _rt())
    assert info.value.code == 142 and info.value.msg == "vlan id out of range"
    assert "stderr: dbg" in info.value.details and "'tnet'" in info.value.details
    assert h.summary() == [("ADD", 0), ("ADD", 1)]
    assert cache.read(h.cache_dir, "tnet", "ctr1", "eth0") is None


def test_an_invalid_plugin_result_is_a_decoding_error(h: Harness) -> None:
    with pytest.raises(MultusError) as info:
        h.cni.add_network_list(h.net({"ADD": {"print": "not json"}}), _rt())
    assert info.value.code == 6
    with pytest.raises(MultusError) as info:
        h.cni.add_network_list(h.net({"ADD": {"result": {"cniVersion": "1.0.0", "ips": [{}]}}}), _rt())
    assert info.value.code == 6 and "ips[0].address" in info.value.msg


def test_a_missing_plugin_binary_fails_before_anything_runs(h: Harness) -> None:
    net = h.net({}, {})
    net.plugins.append({"type": "no-such-plugin"})
    with pytest.raises(PluginNotFound) as info:
        h.cni.add_network_list(net, _rt())
    assert info.value.code == 7 and "no-such-plugin" in info.value.msg
    assert h.calls() == []


@pytest.mark.parametrize(
    ("rt", "code"),
    [(_rt(container_id="../x"), 4), (_rt(ifname="a/b"), 4), (_rt(netns=""), 4), (_rt(ifname=""), 4)],
)
def test_invalid_runtime_values_fail_before_anything_runs(h: Harness, rt: RuntimeConf, code: int) -> None:
    with pytest.raises(MultusError) as info:
        h.cni.add_network_list(h.net({}), rt)
    assert info.value.code == code and h.calls() == []
    assert not Path(h.cache_dir).exists()


def test_a_network_without_name_is_refused(h: Harness) -> None:
    net = netconf.load_bytes(b'{"cniVersion":"1.0.0","type":"pmtest"}')
    with pytest.raises(MultusError) as info:
        h.cni.add_network_list(net, _rt())
    assert info.value.code == 7


def test_rewrite_cached_result(h: Harness) -> None:
    net = h.net({"ADD": {"result": RESULT_A}})
    h.cni.add_network_list(net, _rt(args=[("A", "1")]))
    changed = Result.parse({"cniVersion": "1.0.0", "ips": [{"address": "10.9.9.9/24"}]})
    h.cni.rewrite_cached_result(net, _rt(), changed)
    entry = cache.read(h.cache_dir, "tnet", "ctr1", "eth0")
    assert entry is not None and entry.cni_args == [("A", "1")]
    assert h.cni.get_cached_result(net, _rt()) == changed


# ---------------------------------------------------------------- GC / STATUS


def test_gc_deletes_stale_attachments_then_sends_gc_with_the_valid_list(h: Harness) -> None:
    net = h.net({}, {}, version="1.1.0")
    h.cni.add_network_list(net, _rt("keep"))
    h.cni.add_network_list(net, _rt("stale", args=[("K", "v")], capability_args={"mac": "m"}))
    other = h.net({}, version="1.1.0")
    other.name = "othernet"
    h.cni.add_network_list(other, _rt("stale"))
    h.log.unlink()
    valid = [{"containerID": "keep", "ifname": "eth0"}]
    h.cni.gc_network_list(net, valid)
    calls = h.calls()
    assert h.summary() == [("DEL", 1), ("DEL", 0), ("GC", 0), ("GC", 1)]
    assert calls[0]["env"]["CNI_CONTAINERID"] == "stale" and calls[0]["env"]["CNI_ARGS"] == "K=v"  # type: ignore[index]
    gc_conf = calls[2]["conf"]
    assert gc_conf["cni.dev/valid-attachments"] == valid and gc_conf["cni.dev/attachments"] == valid  # type: ignore[index]
    assert calls[2]["env"]["CNI_CONTAINERID"] == "" and calls[2]["env"]["CNI_PATH"]  # type: ignore[index]
    assert [e.container_id for e in cache.list_attachments(h.cache_dir, "tnet")] == ["keep"]
    assert [e.container_id for e in cache.list_attachments(h.cache_dir, "othernet")] == ["stale"]


def test_gc_continues_on_errors_and_reports_them_all(h: Harness) -> None:
    net = h.net(
        {
            "DEL": {"error": {"code": 120, "msg": "del failed"}},
            "GC": {"error": {"code": 121, "msg": "gc failed"}},
        },
        {},
        version="1.1.0",
    )
    h.cni.add_network_list(net, _rt("a"))
    h.log.unlink()
    with pytest.raises(MultusError) as info:
        h.cni.gc_network_list(net, [])
    assert h.summary() == [("DEL", 1), ("DEL", 0), ("GC", 0), ("GC", 1)]
    assert info.value.code == 120 and "2 errors" in info.value.msg and "gc failed" in info.value.details


def test_gc_below_1_1_only_deletes_and_disable_gc_does_nothing(h: Harness) -> None:
    net = h.net({}, version="1.0.0")
    h.cni.add_network_list(net, _rt("a"))
    h.log.unlink()
    h.cni.gc_network_list(net, [])
    assert h.summary() == [("DEL", 0)]
    h.cni.add_network_list(net, _rt("b"))
    h.log.unlink()
    h.cni.gc_network_list(h.net({}, version="1.1.0", disableGC=True), [])
    assert h.calls() == []


def test_status_asks_each_plugin_and_passes_codes_through(h: Harness) -> None:
    h.cni.get_status_network_list(h.net({}, {}, version="1.1.0"))
    assert h.summary() == [("STATUS", 0), ("STATUS", 1)]
    with pytest.raises(DelegateFailed) as info:
        h.cni.get_status_network_list(
            h.net({"STATUS": {"error": {"code": 50, "msg": "no IPs left"}}}, {}, version="1.1.0")
        )
    assert info.value.code == 50
    h.log.unlink()
    h.cni.get_status_network_list(h.net({}, version="1.0.0"))
    assert h.calls() == []


def test_missing_netns_is_refused_for_add_not_for_del(h: Harness) -> None:
    with pytest.raises(InvalidEnvironment, match="CNI_NETNS"):
        h.cni.add_network_list(h.net({}), _rt(netns=""))
    h.cni.del_network_list(h.net({}), _rt(netns=""))


def test_del_without_capability_args_reuses_the_cached_ones(h: Harness) -> None:
    net = h.net({}, version="1.0.0")
    net.plugins[0]["capabilities"] = {"portMappings": True}
    mappings = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    h.cni.add_network_list(net, _rt(capability_args=mappings))
    h.cni.del_network_list(net, _rt())
    h.cni.del_network_list(net, _rt())  # nothing cached any more: nothing to reuse
    assert [c["conf"].get("runtimeConfig") for c in h.calls()] == [mappings, mappings, None]  # type: ignore[union-attr]
