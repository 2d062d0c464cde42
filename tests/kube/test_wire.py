"""The fake API server checked against the responses recorded from a real kube-apiserver.

The recording session (tests/data/k8s-wire/cases.json) is replayed in order on one fake server,
with the same raw HTTP/1.1 requests (same header order, ``Connection: close``), and each answer is
compared with the recorded one: status line, header names in order, Content-Length vs chunked,
and the body's shape (keys in order, kind, reason, code, details, message). Per-run values —
Audit-Id, Date, the Pf UIDs, uids, resourceVersions, timestamps, event names — are ignored.

Adjustments to the replay (all needed because the fake's objects are not the recorded ones):
request bodies get our pod's uid and resourceVersion; case 20 runs with timeoutSeconds=5 instead
of 12 and makes the same four changes meanwhile; "too old" (25, 28) follows a ``compact()``.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pymultus.kube.auth import load_kubeconfig
from pymultus.kube.client import KubeClient
from tests.fakeapi import csr, dra
from tests.fakeapi.server import MAX_CONTENT_LENGTH, FakeApiServer

WIRE = Path(__file__).resolve().parents[1] / "data" / "k8s-wire"
CASES = json.loads((WIRE / "cases.json").read_text())
NOBODY = "system:serviceaccount:wire:nobody"
WIRE2_NODE = "system:serviceaccount:wire2:wire2-node"  # cases 45, 46: may approve, not create
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


@dataclass
class Reply:
    status_line: str
    header_names: list[str]
    headers: dict[str, str]
    body: bytes
    chunks: list[int] | None  # chunk sizes when chunked

    def json(self) -> dict[str, object]:
        return json.loads(self.body)  # type: ignore[no-any-return]

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.body.split(b"\n") if line.strip()]


def parse_reply(raw: bytes) -> Reply:
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    names, headers = [], {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        names.append(name)
        headers[name.lower()] = value.strip()
    chunks: list[int] | None = None
    if headers.get("transfer-encoding") == "chunked":
        chunks, body = [], b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            chunks.append(size)
            body += rest[:size]
            rest = rest[size + 2 :]
    else:
        body = rest[: int(headers.get("content-length", len(rest)))]
    return Reply(lines[0], names, headers, body, chunks)


def recorded(name: str) -> Reply:
    return parse_reply((WIRE / name).read_bytes())


def raw_request(
    server: FakeApiServer, method: str, path: str, token: str | None, ctype: str | None, body: bytes | None
) -> Reply:
    """Send the request exactly like the recording tool did, over a fresh TLS connection."""
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        "User-Agent: k8s-wire-capture/1.0",
    ]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    lines.append("Accept: application/json")
    if body is not None:
        lines.append(f"Content-Type: {ctype}")
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
    plain = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    with ctx.wrap_socket(plain, server_hostname="127.0.0.1") as sock:
        sock.sendall(data)
        chunks = []
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            chunks.append(piece)
    return parse_reply(b"".join(chunks))


def _pod_meta(server: FakeApiServer) -> dict[str, object]:
    pod = server.get_pod("wire", "wp1")
    assert pod is not None
    return pod["metadata"]  # type: ignore[return-value]


@pytest.fixture(scope="module")
def replies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Reply]:
    """Replay the whole recording session once; the tests below compare case by case."""
    server = FakeApiServer(tmp_path_factory.mktemp("wire")).start()
    server.add_token("nobody-token", NOBODY, allowed=())
    csr_rights = {("get", "certificates.k8s.io", "certificatesigningrequests"),
                  ("update", "certificates.k8s.io", "certificatesigningrequests/approval"),
                  ("get", "", "pods/status"), ("patch", "", "pods/status")}  # fmt: skip
    server.add_token("wire2-node-token", WIRE2_NODE, allowed=csr_rights)
    client = KubeClient(
        load_kubeconfig(str(server.write_kubeconfig(tmp_path_factory.mktemp("kc") / "kubeconfig")))
    )
    out: dict[str, Reply] = {}
    try:
        # The recording's set-up: NADs in default and wire, pod wp1 bound to node1.
        for nad in ("mka-bridge2", "mka-macvlan", "mka-ptp"):
            server.create_nad(
                "default",
                nad,
                {"cniVersion": "1.0.0", "name": nad, "type": "bridge", "bridge": "mka-br1",
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.251.3.0/24"}]]}},
                annotations={"kubectl.kubernetes.io/last-applied-configuration": "x" * 600},
            )  # fmt: skip
        server.create_nad(
            "wire",
            "macvlan-a",
            '{"cniVersion":"1.0.0","name":"macvlan-a","type":"macvlan","master":"mka-par0","mode":"bridge",'
            '"ipam":{"type":"host-local","ranges":[[{"subnet":"10.253.0.0/24"}]]}}',
        )
        server.create_pod("wire", "wp1", annotations={"k8s.v1.cni.cncf.io/networks": "macvlan-a"})
        stale_rv = ""
        for case in CASES:
            name = case["file"]
            method, path, body = case["method"], case["path"], case["body"]
            token: str | None = server.token
            if case["token"].startswith("invalid"):
                token = "not-a-valid-token"
            elif case["token"].startswith("none"):
                token = None
            elif case["token"].startswith("ServiceAccount"):
                token = "wire2-node-token" if name >= "40" else "nobody-token"
            if name.startswith("43-"):
                continue  # sent during case 42's watch, as recorded
            if name.startswith(("42-", "46-")):
                method, path, body = _csr_setup(server, client, case, out)
            if name.startswith("11-"):
                # The pod as read now, then bumped by another writer: a stale RV.
                stale_rv = str(_pod_meta(server)["resourceVersion"])
                client.request("PATCH", "/api/v1/namespaces/wire/pods/wp1",
                               body=b'{"metadata":{"annotations":{"wire-test/bump":"1"}}}',
                               content_type="application/merge-patch+json")  # fmt: skip
            if body is not None and name.startswith(("11-", "12-")):
                meta = _pod_meta(server)
                rv = stale_rv if name.startswith("11-") else str(meta["resourceVersion"])
                doc = json.loads(body)
                doc["metadata"]["uid"] = meta["uid"]
                doc["metadata"]["resourceVersion"] = rv
                body = json.dumps(doc, separators=(",", ":"))
            if name.startswith("17-"):
                doc = json.loads(body)
                doc["involvedObject"]["uid"] = _pod_meta(server)["uid"]
                body = json.dumps(doc, separators=(",", ":"))
            if name.startswith(("18-", "19-", "20-")) and "resourceVersion=281" in path:
                _items, rv = client.list("/api/v1/pods", {"fieldSelector": "spec.nodeName=node1"})
                path = path.replace("resourceVersion=281", f"resourceVersion={rv}").replace(
                    "timeoutSeconds=12", "timeoutSeconds=5"
                )
                threading.Thread(target=_wp2_lifecycle, args=(client,), daemon=True).start()
            if name.startswith(("25-", "28-")):
                server.compact()
            if name.startswith("26-"):
                burst = client.request(
                    "POST", "/api/v1/namespaces/wire/pods", body=json.dumps(_burst_pod()).encode()
                )
                for i in range(3):
                    patch = {"metadata": {"annotations": {"wire-test/burst": str(i)}}}
                    client.request("PATCH", "/api/v1/namespaces/wire/pods/burst",
                                   body=json.dumps(patch).encode(),
                                   content_type="application/merge-patch+json")  # fmt: skip
                path = path.replace(
                    "resourceVersion=512", f"resourceVersion={burst['metadata']['resourceVersion']}"
                )  # type: ignore[index]
            if name.startswith("27-"):
                path = path.replace("resourceVersion=303", f"resourceVersion={server.store.rv}")
            if name.startswith(("29-", "30-", "37-")):
                _dra_setup(server, client, name)
            if name.startswith(("47-", "49-")):
                _policy_setup(server, name)
            out[name] = raw_request(
                server, method, path, token, case["content_type"], body.encode() if body else None
            )
    finally:
        client.close()
        server.stop()
    return out


def _csr_body(server: FakeApiServer, body: str, name: str) -> str:
    """A recorded approval body with our CSR's uid and resourceVersion."""
    stored = server.store.get(csr.CSRS, "", name)
    assert stored is not None
    doc = json.loads(body)
    doc["metadata"]["uid"] = stored["metadata"]["uid"]  # type: ignore[index]
    doc["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]  # type: ignore[index]
    return json.dumps(doc, separators=(",", ":"))


def _csr_setup(
    server: FakeApiServer, client: KubeClient, case: dict[str, Any], out: dict[str, Reply]
) -> tuple[str, str, str | None]:
    """Case 42 watches from case 41's RV while case 43 approves after 1 s (both recorded that way);
    case 46 needs CSR wire2-csr-b made by admin. Returns the (method, path, body) to send."""
    method, path, body = case["method"], case["path"], case["body"]
    if case["file"].startswith("42-"):
        (approval,) = [
            c for c in json.loads((WIRE / "cases.json").read_text()) if c["file"].startswith("43-")
        ]
        rv = server.store.get(csr.CSRS, "", "wire2-csr")["metadata"]["resourceVersion"]  # type: ignore[index]
        path = path.replace("resourceVersion=7599", f"resourceVersion={rv}").replace(
            "timeoutSeconds=10", "timeoutSeconds=5"
        )

        def approve() -> None:
            time.sleep(1.0)
            data = _csr_body(server, approval["body"], "wire2-csr").encode()
            out[approval["file"]] = raw_request(
                server, approval["method"], approval["path"], server.token, approval["content_type"], data
            )

        threading.Thread(target=approve, daemon=True).start()
    else:
        doc = json.loads(body)
        doc["metadata"] = {"name": "wire2-csr-b"}
        doc["status"] = {}
        for key in ("username", "uid", "groups"):
            doc["spec"].pop(key)
        client.request("POST", CSR_PATH, body=json.dumps(doc).encode())
        body = _csr_body(server, body, "wire2-csr-b")
    return method, path, body


def _policy_setup(server: FakeApiServer, name: str) -> None:
    """The recording's policy, binding and pods (README "Policy set-up"); reason Forbidden from 49."""
    if name.startswith("47-"):
        lines = (WIRE / "README.md").read_text().splitlines()
        policy, binding = (json.loads(line) for line in lines if '"kind":"ValidatingAdmissionPolicy' in line)
        server.admission_policies.append((policy, binding))
        server.create_pod("wire2", "vap-mine", node_name="wire2-node")
        server.create_pod("wire2", "vap-other", node_name="wire2-other")
    else:
        policy, _binding = server.admission_policies[0]
        policy["spec"]["validations"][0]["reason"] = "Forbidden"  # type: ignore[index]


def _dra_setup(server: FakeApiServer, client: KubeClient, name: str) -> None:
    """The DRA set-up of the recording (README "DRA set-up"), at the point it happened."""
    if name.startswith("29-"):
        dra.create_claim(server, "wire2", "net-claim", device_class="wire2-class")
    elif name.startswith("30-"):
        dra.create_slice(
            server,
            "wire2-allnodes",
            driver="net.wire2.example",
            pool="wire2-shared",
            devices=[dra.device("shared-0")],
            all_nodes=True,
        )
        dra.create_slice(
            server,
            "wire2-perdevice",
            driver="net.wire2.example",
            pool="wire2-perdev",
            devices=[dra.device("pd-0", nodeName="wire2-node")],
            per_device=True,
        )
    else:
        pod = _burst_pod()
        pod["metadata"] = {"name": "dra-pod", "namespace": "wire2"}
        spec = pod["spec"]
        assert isinstance(spec, dict)
        spec.update(nodeName="wire2-node", resourceClaims=[{"name": "net", "resourceClaimName": "net-claim"}])
        spec["containers"][0]["resources"] = {"claims": [{"name": "net"}]}
        client.request("POST", "/api/v1/namespaces/wire2/pods", body=json.dumps(pod).encode())


def _burst_pod() -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "burst", "annotations": {"k8s.v1.cni.cncf.io/networks": "macvlan-a"}},
        "spec": {"nodeName": "node1", "automountServiceAccountToken": False,
                 "containers": [{"name": "app", "image": "registry.invalid/pause:3.10"}]},
    }  # fmt: skip


def _wp2_lifecycle(client: KubeClient) -> None:
    """What happened during the recorded watch (case 20): create, patch, delete, delete now."""
    time.sleep(0.3)
    pod = _burst_pod()
    pod["metadata"] = {"name": "wp2", "annotations": {"k8s.v1.cni.cncf.io/networks": "macvlan-a"}}
    client.request("POST", "/api/v1/namespaces/wire/pods", body=json.dumps(pod).encode())
    time.sleep(0.2)
    client.request("PATCH", "/api/v1/namespaces/wire/pods/wp2",
                   body=b'{"metadata":{"annotations":{"wire-test/step":"modified"}}}',
                   content_type="application/merge-patch+json")  # fmt: skip
    time.sleep(0.2)
    client.request("DELETE", "/api/v1/namespaces/wire/pods/wp2")
    time.sleep(0.2)
    client.request("DELETE", "/api/v1/namespaces/wire/pods/wp2", params={"gracePeriodSeconds": 0})


def _digits(text: str) -> str:
    return re.sub(r"\d+", "N", text)


def _assert_object_shape(ours: dict[str, object], real: dict[str, object], where: str) -> None:
    assert list(ours) == list(real), f"{where}: top-level keys"
    if isinstance(real.get("metadata"), dict):
        ours_meta, real_meta = ours["metadata"], real["metadata"]
        assert isinstance(ours_meta, dict)
        assert list(ours_meta) == list(real_meta), f"{where}: metadata keys"  # type: ignore[arg-type]
        if isinstance(real_meta.get("resourceVersion"), str):  # type: ignore[union-attr]
            assert isinstance(ours_meta["resourceVersion"], str), f"{where}: resourceVersion is a string"
    for key in ("spec", "status"):
        if isinstance(real.get(key), dict) and real.get("kind") == "Pod":
            assert list(ours[key]) == list(real[key]), f"{where}: {key} keys"  # type: ignore[arg-type]


@pytest.mark.parametrize("case", CASES, ids=[c["file"].split("-")[0] for c in CASES])
def test_fake_matches_recording(case: dict[str, object], replies: dict[str, Reply]) -> None:
    name = str(case["file"])
    real = recorded(name)
    ours = replies[name]
    assert ours.status_line == real.status_line
    if name.startswith("48-") and len(ours.body) > MAX_CONTENT_LENGTH >= len(real.body):
        # The recorded pod is 2038 bytes, 10 under the chunking threshold; the fake's managedFields
        # (shape only: it records every field, kube-apiserver only the written ones) push it over.
        assert ours.header_names == [n for n in real.header_names if n != "Content-Length"] + [
            "Transfer-Encoding"
        ]
    else:
        assert ours.header_names == real.header_names, "header names and order"
        assert (ours.chunks is not None) == (real.chunks is not None), "Content-Length vs chunked"
    assert ours.headers["content-type"] == real.headers["content-type"] == "application/json"
    assert ours.headers["cache-control"] == real.headers["cache-control"]
    assert ours.body.endswith(b"\n")
    if "watch=true" in str(case["path"]):
        _compare_watch(name, ours, real)
        return
    mine, theirs = ours.json(), real.json()
    if theirs.get("kind") == "Status":
        assert list(mine) == list(theirs)
        for key in ("kind", "apiVersion", "metadata", "status", "reason", "code", "details"):
            assert mine.get(key) == theirs.get(key), key
        assert _digits(str(mine["message"])) == _digits(str(theirs["message"]))
        return
    _assert_object_shape(mine, theirs, name)
    if str(theirs.get("kind")).startswith(("ResourceSlice", "ResourceClaim")):
        # Same inputs, same objects: spec and status equal to the byte, Go key order included.
        for key in ("spec", "status"):
            assert json.dumps(mine.get(key)) == json.dumps(theirs.get(key)), key
        for key in ("metadata", "items"):
            assert _names(mine.get(key)) == _names(theirs.get(key)), key
        assert [json.dumps(i.get("spec")) for i in mine.get("items", [])] == [  # type: ignore[attr-defined]
            json.dumps(i.get("spec"))
            for i in theirs.get("items", [])  # type: ignore[attr-defined]
        ]
    if theirs.get("kind") == "CertificateSigningRequest":
        # The requester's identity filled in, Go key order; conditions equal but for their times.
        assert json.dumps(mine["spec"]) == json.dumps(theirs["spec"])
        assert _digits(json.dumps(mine["status"])) == _digits(json.dumps(theirs["status"]))
    items = theirs.get("items")
    if isinstance(items, list):
        mine_items = mine["items"]
        if not items:
            assert mine_items == []
            return
        assert isinstance(mine_items, list) and len(mine_items) >= 1
        _assert_object_shape(mine_items[0], items[0], f"{name} item")
        if theirs["kind"] == "NetworkAttachmentDefinitionList":
            assert json.dumps(mine, sort_keys=True) == json.dumps(mine), (
                "CRD objects come back with sorted keys"
            )
    if real.chunks and len(real.chunks) > 1:
        assert ours.chunks is not None and all(size == 0x800 for size in ours.chunks[:-1])


def _names(value: object) -> object:
    """Object names (a list's, or one object's metadata name) for comparing selections."""
    if isinstance(value, list):
        return [i.get("metadata", {}).get("name") for i in value if isinstance(i, dict)]
    return value.get("name") if isinstance(value, dict) else None


def _one_bookmark_run(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for i, e in enumerate(events) if not (i and e["type"] == "BOOKMARK" == events[i - 1]["type"])]


def _compare_watch(name: str, ours: Reply, real: Reply) -> None:
    mine, theirs = ours.events(), real.events()
    if name.startswith("42-"):
        # One or two BOOKMARKs before the deadline, both seen on the real server (wire fact 20).
        mine, theirs = _one_bookmark_run(mine), _one_bookmark_run(theirs)
    assert [e["type"] for e in mine] == [e["type"] for e in theirs]
    for a, b in zip(mine, theirs, strict=True):
        assert list(a) == ["type", "object"]
        obj_a, obj_b = a["object"], b["object"]
        assert isinstance(obj_a, dict) and isinstance(obj_b, dict)
        if b["type"] == "ERROR":
            assert {k: v for k, v in obj_a.items() if k != "message"} == {
                k: v for k, v in obj_b.items() if k != "message"
            }
            assert _digits(str(obj_a["message"])) == _digits(str(obj_b["message"]))
        elif b["type"] == "BOOKMARK":
            assert json.loads(_digits(json.dumps(obj_a))) == json.loads(_digits(json.dumps(obj_b)))
        else:
            _assert_object_shape(obj_a, obj_b, name)
    if name.startswith("26-"):
        # Queued events are flushed together: the chunk boundaries fall inside events (wire fact 3).
        assert ours.chunks is not None and len(ours.chunks) > 1
        offsets, total = [], 0
        for size in ours.chunks[:-1]:
            total += size
            offsets.append(total)
        assert any(ours.body[off - 1 : off] != b"\n" for off in offsets)


def test_every_case_is_replayed() -> None:
    assert len(CASES) == 51, "a new recording needs a look at what the fake should do with it"
