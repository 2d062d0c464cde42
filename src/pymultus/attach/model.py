"""Value types of the attach layer: the pod a request is for, and one attachment (delegate)."""

from __future__ import annotations

from pymultus import errors
from pymultus.cni import netconf

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pymultus.cni.request import CniRequest

# CNI_ARGS keys the Kubernetes runtimes pass (CNI spec conventions).
POD_NAMESPACE = "K8S_POD_NAMESPACE"
POD_NAME = "K8S_POD_NAME"
POD_UID = "K8S_POD_UID"
POD_INFRA_CONTAINER_ID = "K8S_POD_INFRA_CONTAINER_ID"


class PodRef:
    """The pod named by the request's ``CNI_ARGS``; empty namespace/name when none is given."""

    __slots__ = ("infra_container_id", "name", "namespace", "uid")

    def __init__(self, namespace: str, name: str, uid: str = "", infra_container_id: str = "") -> None:
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.infra_container_id = infra_container_id

    @classmethod
    def from_request(cls, request: CniRequest) -> PodRef:
        namespace = request.arg(POD_NAMESPACE) or ""
        name = request.arg(POD_NAME) or ""
        if bool(namespace) != bool(name):
            missing = POD_NAME if namespace else POD_NAMESPACE
            raise errors.InvalidEnvironment(
                f"CNI_ARGS has no {missing} although it names the pod's other half"
            )
        return cls(namespace, name, request.arg(POD_UID) or "", request.arg(POD_INFRA_CONTAINER_ID) or "")

    @property
    def known(self) -> bool:
        return bool(self.name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.known else "(no pod)"


class Attachment:
    """One delegate network of a pod, with everything needed to ADD it and later DEL it.

    ``capability_args`` and ``cni_args`` are stored in the delegate cache too (Go Multus drops
    portMappings/bandwidth there, so its DEL runs without them: reference §17.4).
    """

    __slots__ = (
        "capability_args",
        "cni_args",
        "default_route",
        "device_id",
        "device_info_file",
        "filter_v4",
        "filter_v6",
        "ifname",
        "is_master",
        "name",
        "network",
        "requested_capabilities",
        "resource_name",
    )

    def __init__(
        self,
        *,
        name: str,
        network: netconf.NetworkConfig,
        ifname: str = "",
        is_master: bool = False,
    ) -> None:
        self.name = name
        self.network = network
        self.ifname = ifname
        self.is_master = is_master
        self.cni_args: list[tuple[str, str]] = []
        self.capability_args: dict[str, object] = {}
        # Capabilities asked for by the pod's annotation (checked against the plugins' ones).
        self.requested_capabilities: list[str] = []
        # None: no default-route request; []: keep this attachment's own default route.
        self.default_route: list[str] | None = None
        self.filter_v4 = False
        self.filter_v6 = False
        self.device_id = ""
        self.resource_name = ""
        self.device_info_file = ""

    def to_record(self) -> dict[str, object]:
        record: dict[str, object] = {
            "name": self.name,
            "ifname": self.ifname,
            "master": self.is_master,
            "conf": self.network.raw,
            "cniArgs": [[key, value] for key, value in self.cni_args],
            "capabilityArgs": self.capability_args,
            "filterV4Gateway": self.filter_v4,
            "filterV6Gateway": self.filter_v6,
        }
        if self.default_route is not None:
            record["defaultRoute"] = self.default_route
        if self.device_id:
            record["deviceID"] = self.device_id
        if self.resource_name:
            record["resourceName"] = self.resource_name
        if self.device_info_file:
            record["deviceInfoFile"] = self.device_info_file
        return record

    @classmethod
    def from_record(cls, record: dict[str, object]) -> Attachment:
        conf = record["conf"]
        assert isinstance(conf, dict)
        network = netconf.load_bytes(_dump(conf))
        attachment = cls(
            name=str(record["name"]),
            network=network,
            ifname=str(record.get("ifname") or ""),
            is_master=bool(record.get("master")),
        )
        cni_args = record.get("cniArgs")
        if isinstance(cni_args, list):
            attachment.cni_args = [
                (str(pair[0]), str(pair[1])) for pair in cni_args if isinstance(pair, list) and len(pair) == 2
            ]
        capability_args = record.get("capabilityArgs")
        if isinstance(capability_args, dict):
            attachment.capability_args = dict(capability_args)
        default_route = record.get("defaultRoute")
        if isinstance(default_route, list):
            attachment.default_route = [str(gw) for gw in default_route]
        attachment.filter_v4 = bool(record.get("filterV4Gateway"))
        attachment.filter_v6 = bool(record.get("filterV6Gateway"))
        attachment.device_id = str(record.get("deviceID") or "")
        attachment.resource_name = str(record.get("resourceName") or "")
        attachment.device_info_file = str(record.get("deviceInfoFile") or "")
        return attachment

    def __repr__(self) -> str:
        return f"Attachment({self.name!r} as {self.ifname!r}{' master' if self.is_master else ''})"


def _dump(conf: dict[str, object]) -> bytes:
    from pymultus import jsonio

    return jsonio.dumpb(conf)
