"""Which networks a pod gets: configuration + pod + NADs → the ordered list of attachments.

Order and naming follow Go Multus (reference §2.2, §3, §4.1, §7, §8): the cluster network first
(``eth0``, possibly replaced by the ``v1.multus-cni.io/default-network`` annotation), then
``defaultNetworks`` (not for pods in ``systemNamespaces``), then the networks of the
``k8s.v1.cni.cncf.io/networks`` annotation, then the auxiliary chain. Without an explicit
interface name, attachment ``idx`` is called ``net<idx>``.
"""

from __future__ import annotations

import posix

from pymultus import errors, jsonio, paths
from pymultus.attach.model import Attachment, PodRef
from pymultus.cni import netconf
from pymultus.errors import MultusError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from pymultus.attach.ports import KubeObject, PodSource
    from pymultus.config.multus import MultusConf
    from pymultus.kube.annotations import NetworkSelection

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NETWORK_ANNOTATION = "v1.multus-cni.io/default-network"
RESOURCE_NAME_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"

# Per-attachment requests of the annotation → (runtimeConfig capability name, attribute).
CAPABILITY_REQUESTS = (
    ("ips", "ips"),
    ("mac", "mac"),
    ("infinibandGUID", "infiniband_guid"),
    ("portMappings", "port_mappings"),
    ("bandwidth", "bandwidth"),
)


class Resolution:
    """The attachments of one pod, in order."""

    __slots__ = ("attachments",)

    def __init__(self) -> None:
        self.attachments: list[Attachment] = []


def resolve(
    conf: MultusConf,
    *,
    pod: KubeObject | None,
    pod_ref: PodRef,
    runtime_ifname: str,
    source: PodSource | None,
    on_missing_network: Callable[[str, str], None] | None = None,
) -> Resolution:
    """Build the ordered attachment list; raises :class:`InvalidConfig` subclasses (code 7)."""
    resolution = Resolution()
    pod_annotations = _annotations(pod)
    networks: list[Attachment] = []

    # 1. The cluster network (master): default-network annotation > clusterNetwork > delegates[0].
    default_override = pod_annotations.get(DEFAULT_NETWORK_ANNOTATION, "").strip()
    if conf.cluster_network or default_override:
        if default_override:
            from pymultus.kube import annotations as grammar  # only pods with annotations need it

            selection = grammar.parse_default_network(
                default_override, default_namespace=conf.multus_namespace
            )
            master = _from_nad(selection, conf, source, pod, on_missing_network)
        else:
            master = _network_by_reference(conf.cluster_network, conf, source, pod, on_missing_network)
        master.is_master = True
        networks.append(master)
        if not conf.cluster_network:
            networks.extend(_inline_delegates(conf)[1:])
    else:
        inline = _inline_delegates(conf)
        inline[0].is_master = True
        networks.extend(inline)

    # 2. defaultNetworks, except for pods in systemNamespaces.
    if conf.cluster_network and pod_ref.namespace not in conf.system_namespaces:
        for reference in conf.default_networks:
            networks.append(_network_by_reference(reference, conf, source, pod, on_missing_network))

    # 3. The pod's own networks.
    requested = pod_annotations.get(NETWORKS_ANNOTATION, "").strip()
    if requested:
        from pymultus.kube import annotations as grammar

        selections = grammar.parse_networks(requested, pod_namespace=pod_ref.namespace)
        for selection in selections:
            _check_isolation(selection, conf, pod_ref)
        for selection in selections:
            attachment = _from_nad(selection, conf, source, pod, on_missing_network)
            _apply_selection(attachment, selection)
            networks.append(attachment)

    # 4. The auxiliary chain (passthru + <dir(clusterNetwork)>/<name>/*.conf).
    if conf.auxiliary_cni_chain_name:
        aux = _auxiliary_chain(conf)
        if aux is not None:
            networks.append(aux)

    _assign_interface_names(networks, runtime_ifname)
    _decide_default_routes(networks)
    resolution.attachments = networks
    return resolution


def _annotations(pod: KubeObject | None) -> dict[str, str]:
    if not pod:
        return {}
    metadata = pod.get("metadata")
    if not isinstance(metadata, dict):
        return {}
    found = metadata.get("annotations")
    if not isinstance(found, dict):
        return {}
    return {str(key): value for key, value in found.items() if isinstance(value, str)}


def _inline_delegates(conf: MultusConf) -> list[Attachment]:
    attachments = []
    for index, delegate in enumerate(conf.delegates):
        try:
            network = netconf.load_bytes(jsonio.dumpb(delegate))
        except MultusError as exc:
            raise errors.InvalidConfig(
                f"delegate {index} of the multus configuration is invalid: {exc.msg}"
            ) from exc
        attachments.append(Attachment(name=network.name, network=network))
    return attachments


def _network_by_reference(
    reference: str,
    conf: MultusConf,
    source: PodSource | None,
    pod: KubeObject | None,
    on_missing_network: Callable[[str, str], None] | None,
) -> Attachment:
    """``clusterNetwork``/``defaultNetworks`` value: a NAD name, a conf name, a directory or a file."""
    if "/" not in reference:
        if source is not None:
            nad = source.get_network_attachment(conf.multus_namespace, reference)
            if nad is not None:
                network = nad_network(nad, conf.multus_namespace, reference, conf.conf_dir)
                attachment = Attachment(name=f"{conf.multus_namespace}/{reference}", network=network)
                _apply_resource_name(attachment, nad)
                return attachment
        found = _find_in_dir(conf.conf_dir, reference)
        if found is None:
            raise errors.NetworkNotFound(
                f'network "{reference}" is neither a NetworkAttachmentDefinition in namespace '
                f'"{conf.multus_namespace}" nor a configuration named so in {conf.conf_dir}'
            )
        return Attachment(name=found.name, network=found)
    if paths.isdir(reference):
        files = netconf.conf_files(reference)
        files = [path for path in files if not path.endswith(".json")]
        if not files:
            raise errors.NetworkNotFound(f'network directory "{reference}" holds no .conf or .conflist file')
        network = netconf.load_file(files[0])
        return Attachment(name=network.name, network=network)
    if not paths.exists(reference):
        raise errors.NetworkNotFound(f'network configuration file "{reference}" does not exist')
    network = netconf.load_file(reference)
    return Attachment(name=network.name, network=network)


def _find_in_dir(directory: str, name: str) -> netconf.NetworkConfig | None:
    """NPWG §3.4.1: a ``.conflist`` with that name first, then a ``.conf``/``.json``."""
    if not paths.isdir(directory):
        return None
    files = netconf.conf_files(directory)
    ordered = [p for p in files if p.endswith(".conflist")] + [
        p for p in files if not p.endswith(".conflist")
    ]
    for path in ordered:
        try:
            network = netconf.load_file(path)
        except MultusError:
            continue  # an unrelated broken file must not hide the one we want
        if network.name == name:
            return network
    return None


def _from_nad(
    selection: NetworkSelection,
    conf: MultusConf,
    source: PodSource | None,
    pod: KubeObject | None,
    on_missing_network: Callable[[str, str], None] | None,
) -> Attachment:
    namespace = selection.namespace or conf.multus_namespace
    if source is None:
        raise errors.NetworkNotFound(
            f'network "{namespace}/{selection.name}" cannot be looked up: '
            "no Kubernetes API and no manifests directory is configured"
        )
    nad = source.get_network_attachment(namespace, selection.name)
    if nad is None:
        message = f"cannot find a network-attachment-definition ({selection.name}) in namespace ({namespace})"
        if on_missing_network is not None:
            on_missing_network("NoNetworkFound", message)
        raise errors.NetworkNotFound(message, details=f"network {namespace}/{selection.name}")
    network = nad_network(nad, namespace, selection.name, conf.conf_dir)
    attachment = Attachment(name=f"{namespace}/{selection.name}", network=network)
    _apply_resource_name(attachment, nad)
    return attachment


def nad_network(nad: KubeObject, namespace: str, name: str, conf_dir: str) -> netconf.NetworkConfig:
    spec = nad.get("spec")
    config = spec.get("config") if isinstance(spec, dict) else None
    if isinstance(config, str) and config.strip():
        try:
            document = jsonio.loads_object(
                config, what=f"spec.config of NetworkAttachmentDefinition {namespace}/{name}"
            )
        except MultusError as exc:
            raise errors.InvalidConfig(exc.msg, details=f"network {namespace}/{name}") from exc
        if not document.get("name"):
            document["name"] = name  # NPWG §3.4.2: inject the NAD name
        try:
            return netconf.load_bytes(jsonio.dumpb(document), source=f"nad:{namespace}/{name}")
        except MultusError as exc:
            raise errors.InvalidConfig(
                f"NetworkAttachmentDefinition {namespace}/{name} has an invalid spec.config: {exc.msg}",
                details=exc.details,
            ) from exc
    found = _find_in_dir(conf_dir, name)
    if found is None:
        raise errors.NetworkNotFound(
            f"NetworkAttachmentDefinition {namespace}/{name} has no spec.config and {conf_dir} "
            f'holds no configuration named "{name}"'
        )
    return found


def _apply_resource_name(attachment: Attachment, nad: KubeObject) -> None:
    metadata = nad.get("metadata")
    found = metadata.get("annotations") if isinstance(metadata, dict) else None
    if isinstance(found, dict):
        resource = found.get(RESOURCE_NAME_ANNOTATION)
        if isinstance(resource, str) and resource:
            attachment.resource_name = resource


def _check_isolation(selection: NetworkSelection, conf: MultusConf, pod_ref: PodRef) -> None:
    namespace = selection.namespace or pod_ref.namespace
    if not conf.namespace_isolation or namespace == pod_ref.namespace:
        return
    if namespace in conf.global_namespaces:
        return
    raise errors.NetworkForbidden(
        f"namespace isolation is enabled: pod {pod_ref} may not use network {namespace}/{selection.name} "
        f"from namespace {namespace}",
        details=f"allowed namespaces: {pod_ref.namespace}, {', '.join(conf.global_namespaces)}",
    )


def _apply_selection(attachment: Attachment, selection: NetworkSelection) -> None:
    """Per-attachment requests of the JSON annotation: runtime capability args and conf edits."""
    if selection.interface:
        attachment.ifname = selection.interface
    for capability, attribute in CAPABILITY_REQUESTS:
        value = getattr(selection, attribute)
        if value:
            attachment.capability_args[capability] = value
            attachment.requested_capabilities.append(capability)
    # Go Multus also passes ips/mac as CNI_ARGS IP=/MAC=: host-local and static read those.
    if selection.ips:
        attachment.cni_args.append(("IP", ",".join(selection.ips)))
    if selection.mac:
        attachment.cni_args.append(("MAC", selection.mac))
    if selection.device_id and not attachment.device_id:
        attachment.device_id = selection.device_id
    if selection.default_route is not None:
        attachment.default_route = list(selection.default_route)
    if selection.ipam_claim_reference:
        attachment.capability_args["ipam-claim-reference"] = selection.ipam_claim_reference
    if selection.cni_args:
        attachment.network = _with_cni_args(attachment.network, selection.cni_args)


def _with_cni_args(network: netconf.NetworkConfig, cni_args: dict[str, object]) -> netconf.NetworkConfig:
    """Merge the annotation's ``cni-args`` into ``args.cni`` (of every plugin of a list)."""
    raw = _deep_copy(network.raw)

    def merge(target: dict[str, object]) -> None:
        args = target.get("args")
        args = dict(args) if isinstance(args, dict) else {}
        cni = args.get("cni")
        cni = dict(cni) if isinstance(cni, dict) else {}
        cni.update(cni_args)  # the annotation wins over the NAD's own args.cni (NPWG §4.1.2.1.6)
        args["cni"] = cni
        target["args"] = args

    plugins = raw.get("plugins")
    if isinstance(plugins, list):
        for plugin in plugins:
            if isinstance(plugin, dict):
                merge(plugin)
    else:
        merge(raw)
    return netconf.load_bytes(jsonio.dumpb(raw), source=network.source)


def with_device_id(network: netconf.NetworkConfig, device_id: str) -> netconf.NetworkConfig:
    """Inject ``deviceID`` and ``pciBusID`` at the top of the conf or of every plugin (Multus)."""
    raw = _deep_copy(network.raw)
    plugins = raw.get("plugins")
    targets = [p for p in plugins if isinstance(p, dict)] if isinstance(plugins, list) else [raw]
    for target in targets:
        target["deviceID"] = device_id
        target["pciBusID"] = device_id
    return netconf.load_bytes(jsonio.dumpb(raw), source=network.source)


def _auxiliary_chain(conf: MultusConf) -> Attachment | None:
    base = conf.cluster_network if paths.isdir(conf.cluster_network) else paths.dirname(conf.cluster_network)
    directory = paths.join(base, conf.auxiliary_cni_chain_name)
    plugins: list[object] = [{"type": "passthru", "name": "passthru-cni"}]
    if paths.isdir(directory):
        for entry in sorted(posix.listdir(directory)):
            if entry.endswith(".conf"):
                data = netconf.read_file(paths.join(directory, entry))
                plugins.append(jsonio.loads_object(data, what=f"auxiliary plugin {entry}"))
    if len(plugins) < 2:
        return None
    document = {"cniVersion": conf.cni_version, "name": conf.auxiliary_cni_chain_name, "plugins": plugins}
    network = netconf.load_bytes(jsonio.dumpb(document), source=directory)
    return Attachment(name=conf.auxiliary_cni_chain_name, network=network)


def _assign_interface_names(networks: list[Attachment], runtime_ifname: str) -> None:
    owners: dict[str, str] = {}
    for index, attachment in enumerate(networks):
        if not attachment.ifname:
            attachment.ifname = runtime_ifname if attachment.is_master else f"net{index}"
        previous = owners.get(attachment.ifname)
        if previous is not None:
            raise errors.InvalidConfig(
                f'interface name "{attachment.ifname}" is requested twice, '
                f"by {previous} and by {attachment.name}",
                details="give each attachment its own interface name",
            )
        owners[attachment.ifname] = attachment.name


def _decide_default_routes(networks: list[Attachment]) -> None:
    """Go Multus's CheckGatewayConfig: at most one gateway per IP family; who loses its route."""
    if not any(attachment.default_route is not None for attachment in networks):
        return
    import ipaddress

    gateways = {4: [], 6: []}  # type: dict[int, list[str]]
    for attachment in networks:
        for gateway in attachment.default_route or ():
            gateways[ipaddress.ip_address(gateway).version].append(f"{gateway} ({attachment.name})")
    for family, found in gateways.items():
        if len(found) > 1:
            raise errors.InvalidConfig(
                f"default-route asks for {len(found)} IPv{family} default gateways ({', '.join(found)}); "
                "at most one per IP family is supported (no ECMP)"
            )
    for attachment in networks:
        if attachment.default_route is None:
            # Attachments without a request lose the families someone else claims.
            attachment.filter_v4 = bool(gateways[4])
            attachment.filter_v6 = bool(gateways[6])
        else:
            families = {ipaddress.ip_address(gw).version for gw in attachment.default_route}
            # A request replaces this attachment's own default route of that family.
            attachment.filter_v4 = 4 in families
            attachment.filter_v6 = 6 in families


def _deep_copy(value: dict[str, object]) -> dict[str, object]:
    copied = jsonio.loads_object(jsonio.dumps(value))
    return copied
