"""What a hot-plug reconcile must do (``pymultus.attach.hotplug``): desired against saved.

*Desired* is what the pod resolves to now (the resolver of ADD, with its namespace isolation
and validation); *saved* is the container's delegate list. The cluster network (the master,
``eth0``) is never touched; ``defaultNetworks`` and the auxiliary chain are matched by name and
left alone. An annotation network matches a saved attachment of the same network: by interface
name when the annotation names one, else the first saved attachment of that network (entries
with explicit names are matched first). A match whose per-pod parameters changed is refused
(:class:`ParametersChanged`): a running interface is never re-created behind the application's
back. Saved attachments nothing matches are detached; unmatched desired networks are attached,
named as requested or ``net<N>`` with the smallest N no attachment or interface of the pod uses.

Every problem raises before anything is done (all or nothing, as for ADD).
"""

from __future__ import annotations

from pymultus import errors
from pymultus.attach.context import EventKind
from pymultus.attach.model import Attachment
from pymultus.attach.runtime import check_capabilities

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pymultus.attach.context import Call
    from pymultus.attach.ports import KubeObject

# Per-pod requests of the annotation that must not change under a running attachment.
_PARAMETERS = ("cniArgs", "capabilityArgs", "defaultRoute")


class ParametersChanged(errors.InvalidConfig):
    """A network of the annotation asks for other parameters than its running attachment."""


def plan(
    call: Call, items: list[dict[str, object]], pod: KubeObject
) -> tuple[list[Attachment], list[Attachment]]:
    """(to attach, to detach) for the container of ``call`` whose saved list is ``items``."""
    from pymultus.attach.resolve import NETWORKS_ANNOTATION, resolve

    desired = resolve(
        call.conf,
        pod=pod,
        pod_ref=call.pod_ref,
        runtime_ifname=call.request.ifname,
        source=call.deps.pods,
    ).attachments
    explicit = _explicit_names(pod, NETWORKS_ANNOTATION, call.pod_ref.namespace)
    aux = call.conf.auxiliary_cni_chain_name
    tail = 1 if aux and desired and desired[-1].name == aux else 0
    # resolve() orders: master, defaultNetworks, the annotation's networks, the auxiliary chain.
    requested = desired[len(desired) - len(explicit) - tail :][: len(explicit)]
    fixed = {a.name for a in desired if not any(a is r for r in requested)}
    actual = [(item, Attachment.from_record(item)) for item in items]
    free = [(item, a) for item, a in actual if not a.is_master and a.name not in fixed]
    matched: dict[int, dict[str, object]] = {}
    for index in sorted(range(len(requested)), key=lambda i: not explicit[i]):
        want = requested[index]
        for item, have in free:
            taken = any(item is m for m in matched.values())
            if taken or have.name != want.name or (explicit[index] and have.ifname != want.ifname):
                continue
            matched[index] = item
            _refuse_changes(want, item)
            want.ifname = have.ifname
            break
    to_remove = [a for item, a in free if not any(item is m for m in matched.values())]
    to_add = [(want, bool(explicit[i])) for i, want in enumerate(requested) if i not in matched]
    kept = {a.ifname for _, a in actual} - {a.ifname for a in to_remove}
    _name(call, to_add, kept)
    for attachment, _ in to_add:
        if attachment.resource_name or attachment.device_id:
            raise errors.InvalidConfig(
                f"network {attachment.name} needs a device (resourceName/deviceID): devices are "
                "allocated when the pod starts and cannot be hot-plugged",
                details=f"pod {call.pod_ref}",
            )
        warning = check_capabilities(call.conf, attachment)  # raises under strictCapabilities
        if warning:
            call.event(EventKind.WARNING, "CapabilityNotDeclared", warning)
    return [attachment for attachment, _ in to_add], to_remove


def _name(call: Call, to_add: list[tuple[Attachment, bool]], kept: set[str]) -> None:
    """Check the requested names; give the others the smallest free ``net<N>``."""
    used = set(kept) | {a.ifname for a, named in to_add if named}
    for attachment, named in to_add:
        if named:
            if attachment.ifname in kept:
                raise errors.InterfaceExists(
                    f'interface "{attachment.ifname}" asked for network {attachment.name} '
                    "is already used by another attachment of the pod",
                    details=f"pod {call.pod_ref}",
                )
            continue
        index = 1
        while f"net{index}" in used or call.deps.netns.interface_exists(call.request.netns, f"net{index}"):
            index += 1
        attachment.ifname = f"net{index}"
        used.add(attachment.ifname)


def _explicit_names(pod: KubeObject, annotation: str, namespace: str) -> list[str]:
    """The interface name each entry of the networks annotation asks for ("" for none)."""
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    value = annotations.get(annotation) if isinstance(annotations, dict) else None
    if not isinstance(value, str) or not value.strip():
        return []
    from pymultus.kube import annotations as grammar

    selections = grammar.parse_networks(value.strip(), pod_namespace=namespace)
    return [selection.interface or "" for selection in selections]


def _refuse_changes(want: Attachment, have: dict[str, object]) -> None:
    if any(have.get(key) for key in ("deviceID", "resourceName", "deviceInfoFile")):
        return  # device assignment rewrote its args at ADD: not comparable, and never hot-plugged
    wanted = want.to_record()
    changed = [key for key in _PARAMETERS if (wanted.get(key) or None) != (have.get(key) or None)]
    if _conf_args(wanted.get("conf")) != _conf_args(have.get("conf")):
        changed.append("cni-args")  # merged into the conf's args (resolve._with_cni_args)
    if changed:
        raise ParametersChanged(
            f"network {want.name} ({have.get('ifname')}) is attached with other {', '.join(changed)} "
            "than the annotation now asks for; a running attachment is not changed: remove it from the "
            "annotation, then add it again",
            details="hot-plug never re-creates an interface behind the application's back",
        )


def _conf_args(conf: object) -> list[object]:
    """The ``args`` of a conf or of each plugin of a conflist (where ``cni-args`` go)."""
    if not isinstance(conf, dict):
        return []
    plugins = conf.get("plugins")
    targets = plugins if isinstance(plugins, list) else [conf]
    return [target.get("args") or None for target in targets if isinstance(target, dict)]
