"""The engine's log lines at ``verbose`` and ``debug``, and the failure line at ``error``.

Imported only when a line is about to be written (callers ask ``Call.logs(level)`` first), so a
plugin at ``error`` neither imports nor formats any of this on success. Every line carries the
pod, short container ID and command (``Call.log``); see ``pymultus.logfmt`` for the format and
docs/troubleshooting.md for examples.

* ``verbose``: ``networks resolved`` (each interface, its network and where it came from:
  ``clusterNetwork``, ``default-network`` annotation, ``delegates``, ``defaultNetworks``,
  ``annotation``, ``auxiliaryCNIChain``); ``attachment added|deleted`` per network with plugin,
  IPs, result and milliseconds; ``<COMMAND> done`` with the whole command's milliseconds.
* ``debug``: ``delegate conf sent`` and ``delegate result received`` per network, with secrets
  redacted (``logfmt.redact``).
* ``error``: ``<COMMAND> failed``: one line per failed command, with the network and interface
  being attached or detached when the failure is theirs, the CNI code and the message.
"""

from __future__ import annotations

import time

from pymultus import jsonio, logfmt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from pymultus.attach.context import Call
    from pymultus.attach.model import Attachment
    from pymultus.attach.ports import KubeObject
    from pymultus.cni.chain import RuntimeConf
    from pymultus.cni.result import Result


def now() -> float:
    return time.monotonic()


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.1f}"


def command_done(call: Call, started: float) -> None:
    call.log("verbose", f"{call.request.command} done", result="ok", ms=_ms(started))


def command_failed(call: Call, exc: BaseException, started: float) -> None:
    code = getattr(exc, "code", 999)
    message = getattr(exc, "msg", None) or f"{type(exc).__name__}: {exc}"
    step = call.step
    plugin = ",".join(step.network.plugin_types()) if step is not None else ""
    call.log(
        "error",
        f"{call.request.command} failed",
        plugin=plugin,
        code=code,
        error=message,
        details=getattr(exc, "details", ""),
        ms=_ms(started) if started else "",
    )


def resolution(call: Call, pod: KubeObject | None, attachments: Sequence[Attachment]) -> None:
    sources = _sources(call, pod, attachments)
    networks = " ".join(
        f"{a.ifname}={a.name}({source})" for a, source in zip(attachments, sources, strict=True)
    )
    call.log("verbose", "networks resolved", networks=networks)


def _sources(call: Call, pod: KubeObject | None, attachments: Sequence[Attachment]) -> list[str]:
    """Where each attachment came from, by position (``resolve`` builds them in this order)."""
    from pymultus.attach.resolve import DEFAULT_NETWORK_ANNOTATION

    conf = call.conf
    metadata = pod.get("metadata") if pod is not None else None
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    overridden = isinstance(annotations, dict) and bool(annotations.get(DEFAULT_NETWORK_ANNOTATION))
    order: list[str] = []
    if overridden:
        order.append("default-network")
    elif conf.cluster_network:
        order.append("clusterNetwork")
    if not conf.cluster_network:
        order.extend(["delegates"] * (len(conf.delegates) - (1 if overridden else 0)))
    elif call.pod_ref.namespace not in conf.system_namespaces:
        order.extend(["defaultNetworks"] * len(conf.default_networks))
    sources = []
    for index in range(len(attachments)):
        if index < len(order):
            sources.append(order[index])
        elif conf.auxiliary_cni_chain_name and index == len(attachments) - 1:
            sources.append("auxiliaryCNIChain")
        else:
            sources.append("annotation")
    return sources


def attachment_done(
    call: Call,
    attachment: Attachment,
    started: float,
    *,
    action: str,
    result: Result | None = None,
    error: BaseException | None = None,
) -> None:
    ips = ",".join(ip.address for ip in result.ips) if result is not None else ""
    call.log(
        "verbose",
        f"attachment {action}" if error is None else f"attachment not {action}",
        network=attachment.name,
        ifname=attachment.ifname,
        plugin=",".join(attachment.network.plugin_types()),
        ips=ips,
        result="ok" if error is None else "error",
        code=getattr(error, "code", "") if error is not None else "",
        error=(getattr(error, "msg", None) or str(error)) if error is not None else "",
        ms=_ms(started),
    )


def delegate_sent(call: Call, attachment: Attachment, rt: RuntimeConf) -> None:
    call.log(
        "debug",
        "delegate conf sent",
        network=attachment.name,
        ifname=attachment.ifname,
        conf=jsonio.dumps(logfmt.redact(attachment.network.raw)),
        cniArgs=";".join(f"{key}={value}" for key, value in rt.args),
        capabilityArgs=jsonio.dumps(logfmt.redact(rt.capability_args)) if rt.capability_args else "",
    )


def delegate_result(call: Call, attachment: Attachment, result: Result) -> None:
    call.log(
        "debug",
        "delegate result received",
        network=attachment.name,
        ifname=attachment.ifname,
        result=jsonio.dumps(logfmt.redact(result.to_version("1.1.0"))),
    )
