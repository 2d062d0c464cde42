"""A small CRI client (runtime.v1 RuntimeService over gRPC) for the pod-sandbox calls a kubelet
makes: RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox, ListPodSandbox.

It uses the generated stubs of the PyPI package ``container-runtime-interface-api`` with grpcio.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field

import grpc
from cri_api.v1 import api_pb2 as cri  # type: ignore[import-untyped]
from cri_api.v1.api_pb2_grpc import RuntimeServiceStub  # type: ignore[import-untyped]

RPC_TIMEOUT = 120.0  # RunPodSandbox waits for every delegate; the parallel tests queue them


@dataclass
class PodSpec:
    """What a kubelet puts in a PodSandboxConfig that matters to the CNI plugin."""

    name: str
    namespace: str = "default"
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    annotations: dict[str, str] = field(default_factory=dict)
    port_mappings: list[tuple[int, int]] = field(default_factory=list)  # (container port, host port)
    dns_servers: list[str] = field(default_factory=list)


@dataclass
class Sandbox:
    id: str
    pod: PodSpec
    netns: str  # the netns path containerd gave the CNI plugin (empty if it has none)
    ip: str
    additional_ips: list[str]

    def exec(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` on the host inside the sandbox's network namespace."""
        return subprocess.run(
            ["nsenter", f"--net={self.netns}", *cmd], capture_output=True, text=True, check=check
        )

    def links(self) -> dict[str, dict[str, object]]:
        out = self.exec("ip", "-j", "addr", "show").stdout
        return {str(link["ifname"]): link for link in json.loads(out)}

    def ipv4(self, ifname: str) -> list[str]:
        link = self.links()[ifname]
        infos = link.get("addr_info") or []
        return [
            f"{info['local']}/{info['prefixlen']}"
            for info in infos  # type: ignore[union-attr]
            if info.get("family") == "inet"
        ]

    def ping(self, address: str) -> bool:
        return self.exec("ping", "-c", "1", "-W", "5", address, check=False).returncode == 0


class CriError(RuntimeError):
    def __init__(self, call: str, error: grpc.RpcError) -> None:
        self.code = error.code()
        self.details = error.details() or ""
        super().__init__(f"{call}: {self.code.name}: {self.details}")


class CriClient:
    def __init__(self, socket_path: str) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")
        self.stub = RuntimeServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _call(self, name: str, request: object, timeout: float = RPC_TIMEOUT) -> object:
        try:
            return getattr(self.stub, name)(request, timeout=timeout)
        except grpc.RpcError as error:
            raise CriError(name, error) from None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the runtime and its network are ready (the CNI conf is loaded)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                answer = self._call("Status", cri.StatusRequest(), timeout=5)
                conditions = {c.type: c for c in answer.status.conditions}  # type: ignore[attr-defined]
                if all(c.status for c in conditions.values()) and conditions:
                    return
                last = "; ".join(
                    f"{t}: {c.reason} {c.message}" for t, c in conditions.items() if not c.status
                )
            except CriError as error:
                last = str(error)
            time.sleep(0.1)
        raise TimeoutError(f"containerd's CRI not ready within {timeout} s: {last}")

    def run_sandbox(self, pod: PodSpec) -> str:
        config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name=pod.name, uid=pod.uid, namespace=pod.namespace, attempt=0),
            hostname=pod.name[:63],
            annotations=pod.annotations,
            labels={"io.kubernetes.pod.name": pod.name, "io.kubernetes.pod.namespace": pod.namespace},
            port_mappings=[
                cri.PortMapping(protocol=cri.TCP, container_port=cport, host_port=hport)
                for cport, hport in pod.port_mappings
            ],
            dns_config=cri.DNSConfig(servers=pod.dns_servers, searches=[f"{pod.namespace}.svc"])
            if pod.dns_servers
            else None,
            linux=cri.LinuxPodSandboxConfig(
                security_context=cri.LinuxSandboxSecurityContext(
                    namespace_options=cri.NamespaceOption(network=cri.POD, pid=cri.POD, ipc=cri.POD)
                )
            ),
        )
        answer = self._call("RunPodSandbox", cri.RunPodSandboxRequest(config=config))
        return str(answer.pod_sandbox_id)  # type: ignore[attr-defined]

    def status(self, sandbox_id: str) -> tuple[object, dict[str, object]]:
        """(PodSandboxStatus, the runtime's verbose info decoded)."""
        answer = self._call(
            "PodSandboxStatus", cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True)
        )
        info_text = answer.info.get("info", "{}")  # type: ignore[attr-defined]
        return answer.status, json.loads(info_text)  # type: ignore[attr-defined]

    def sandbox(self, sandbox_id: str, pod: PodSpec) -> Sandbox:
        status, info = self.status(sandbox_id)
        netns = ""
        spec = info.get("runtimeSpec") or {}
        for ns in (spec.get("linux") or {}).get("namespaces") or []:  # type: ignore[union-attr]
            if ns.get("type") == "network":
                netns = str(ns.get("path") or "")
        network = status.network  # type: ignore[attr-defined]
        return Sandbox(
            id=sandbox_id,
            pod=pod,
            netns=netns,
            ip=network.ip,
            additional_ips=[extra.ip for extra in network.additional_ips],
        )

    def stop(self, sandbox_id: str) -> None:
        self._call("StopPodSandbox", cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))

    def remove(self, sandbox_id: str) -> None:
        self._call("RemovePodSandbox", cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))

    def list_ids(self) -> list[str]:
        answer = self._call("ListPodSandbox", cri.ListPodSandboxRequest())
        return [item.id for item in answer.items]  # type: ignore[attr-defined]

    def remove_all(self) -> list[str]:
        """Stop and remove every sandbox; the errors met (the kubelet would retry them)."""
        errors = []
        for sandbox_id in self.list_ids():
            for call in (self.stop, self.remove):
                try:
                    call(sandbox_id)
                except CriError as error:
                    errors.append(str(error))
        return errors
