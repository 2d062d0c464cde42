"""Running the image's containers as the manifests describe them, through a private containerd's
CRI (what a kubelet does): a host-network pod sandbox, then CreateContainer/StartContainer with
the manifest's command, args, env, security context and volume mounts, host paths mapped to
temporary directories; ExecSync for probes. The specs are read from deploy/, never retyped."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from cri_api.v1 import api_pb2 as cri  # type: ignore[import-untyped]

from tests.deploy import manifests as m
from tests.support.cri import CriClient

IMAGE_PREFIX = "docker.io/library/"  # what `ctr images import` names a docker-save RepoTag
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# A volumeMount's mountPropagation -> the CRI's (what the kubelet maps it to).
PROPAGATION = {
    "None": cri.PROPAGATION_PRIVATE,
    "HostToContainer": cri.PROPAGATION_HOST_TO_CONTAINER,
    "Bidirectional": cri.PROPAGATION_BIDIRECTIONAL,
}


class Runtime(CriClient):
    """The CRI client plus the container calls a kubelet makes for a DaemonSet pod."""

    def run_host_sandbox(
        self,
        name: str,
        namespace: str = "kube-system",
        *,
        log_directory: str = "",
        privileged: bool = False,
        host_pid: bool = False,
    ) -> tuple[str, Any]:
        """A hostNetwork pod sandbox; its id and config (CreateContainer needs the config).
        With ``log_directory``, its containers' output is kept there (``<container name>.log``);
        ``privileged`` when a container of the pod is (the kubelet's rule); ``host_pid``: hostPID."""
        config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name=name, uid=str(uuid.uuid4()), namespace=namespace, attempt=0),
            log_directory=log_directory,
            labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace},
            linux=cri.LinuxPodSandboxConfig(
                security_context=cri.LinuxSandboxSecurityContext(
                    privileged=privileged,
                    namespace_options=cri.NamespaceOption(
                        network=cri.NODE, pid=cri.NODE if host_pid else cri.POD, ipc=cri.POD
                    ),
                )
            ),
        )
        answer = self._call("RunPodSandbox", cri.RunPodSandboxRequest(config=config))
        return str(answer.pod_sandbox_id), config  # type: ignore[attr-defined]

    def start_container(
        self,
        sandbox_id: str,
        sandbox_config: Any,
        image: str,
        spec: dict[str, Any],
        *,
        mounts: dict[str, str],
        env: dict[str, str],
        extra_args: tuple[str, ...] = (),
        propagation: dict[str, str] | None = None,
    ) -> str:
        """Create and start the container ``spec`` (a manifest container) in the sandbox.

        ``mounts``: container path -> host directory, for every volumeMount of the spec (the
        test's stand-ins for hostPath volumes and emptyDirs) plus any the kubelet adds (the
        service account). ``env``: what the kubelet resolves (fieldRefs, KUBERNETES_SERVICE_*).
        ``propagation``: container path -> mountPropagation for ``mounts`` the spec does not list.
        """
        context = spec.get("securityContext", {})
        capabilities = context.get("capabilities", {})
        read_only = {
            mount["mountPath"]: bool(mount.get("readOnly")) for mount in spec.get("volumeMounts", [])
        }
        propagated = {
            mount["mountPath"]: mount.get("mountPropagation", "None")
            for mount in spec.get("volumeMounts", [])
        }
        propagated.update(propagation or {})
        missing = set(read_only) - set(mounts)
        # hostPID pods' containers share the host's PID namespace (the kubelet's mapping).
        host_pid = sandbox_config.linux.security_context.namespace_options.pid == cri.NODE
        pid = cri.NODE if host_pid else cri.CONTAINER
        assert not missing, f"no stand-in directory for the mounts {sorted(missing)}"
        config = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name=spec["name"], attempt=0),
            image=cri.ImageSpec(image=IMAGE_PREFIX + image),
            command=spec.get("command", []),
            args=[*spec.get("args", []), *extra_args],
            envs=[cri.KeyValue(key=k, value=v) for k, v in env.items()],
            mounts=[
                cri.Mount(
                    container_path=path,
                    host_path=host,
                    readonly=read_only.get(path, path == SA_MOUNT),
                    propagation=PROPAGATION[propagated.get(path, "None")],
                )
                for path, host in mounts.items()
            ],
            log_path=f"{spec['name']}.log",
            linux=cri.LinuxContainerConfig(
                security_context=cri.LinuxContainerSecurityContext(
                    privileged=bool(context.get("privileged", False)),
                    run_as_user=cri.Int64Value(value=int(context["runAsUser"])),
                    readonly_rootfs=bool(context.get("readOnlyRootFilesystem", False)),
                    no_new_privs=context.get("allowPrivilegeEscalation") is False,
                    capabilities=cri.Capability(
                        drop_capabilities=capabilities.get("drop", []),
                        add_capabilities=capabilities.get("add", []),
                    ),
                    namespace_options=cri.NamespaceOption(network=cri.NODE, pid=pid, ipc=cri.POD),
                )
            ),
        )
        created = self._call(
            "CreateContainer",
            cri.CreateContainerRequest(
                pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config
            ),
        )
        container_id = str(created.container_id)  # type: ignore[attr-defined]
        self._call("StartContainer", cri.StartContainerRequest(container_id=container_id))
        return container_id

    def status_info(self) -> dict[str, str]:
        """The runtime's verbose Status info (``cniconfig``: the CNI networks it loaded)."""
        answer = self._call("Status", cri.StatusRequest(verbose=True))
        return dict(answer.info)  # type: ignore[attr-defined]

    def exec_sync(self, container_id: str, command: list[str], timeout: int = 30) -> tuple[int, str]:
        """Run a probe command in the container: (exit code, stdout + stderr)."""
        answer = self._call(
            "ExecSync", cri.ExecSyncRequest(container_id=container_id, cmd=command, timeout=timeout)
        )
        out = bytes(answer.stdout) + bytes(answer.stderr)  # type: ignore[attr-defined]
        return int(answer.exit_code), out.decode(errors="replace")  # type: ignore[attr-defined]

    def stop_container(self, container_id: str, grace: int = 30) -> None:
        """StopContainer: SIGTERM, then SIGKILL after ``grace`` seconds (the pod's grace period)."""
        self._call(
            "StopContainer",
            cri.StopContainerRequest(container_id=container_id, timeout=grace),
            timeout=grace + 30,
        )

    def container_state(self, container_id: str) -> tuple[int, int]:
        """(state, exit code): state is cri.CONTAINER_RUNNING, cri.CONTAINER_EXITED, ..."""
        answer = self._call("ContainerStatus", cri.ContainerStatusRequest(container_id=container_id))
        status = answer.status  # type: ignore[attr-defined]
        return int(status.state), int(status.exit_code)

    def wait_exited(self, container_id: str, timeout: float = 120.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            state, code = self.container_state(container_id)
            if state == cri.CONTAINER_EXITED:
                return code
            assert time.monotonic() < deadline, f"container {container_id} still running after {timeout} s"
            time.sleep(0.1)


def host_mounts(overlay: str, container: str, stand_ins: dict[str, Path], scratch: Path) -> dict[str, str]:
    """Container path -> stand-in host dir for every volumeMount of a manifest container:
    hostPath volumes by their host path (``stand_ins``), everything else a fresh dir."""
    volumes = {v["name"]: v for v in m.pod_spec(overlay)["volumes"]}
    mapped: dict[str, str] = {}
    for mount in m.container(overlay, container).get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "hostPath" in volume:
            mapped[mount["mountPath"]] = str(stand_ins[volume["hostPath"]["path"]])
        else:
            path = scratch / f"{container}-{mount['name']}"
            path.mkdir(parents=True, exist_ok=True)
            mapped[mount["mountPath"]] = str(path)
    return mapped
