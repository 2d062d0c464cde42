"""Devices for attachments: device-plugin IDs for NADs with a ``resourceName``, and device-info files.

Like Go Multus (reference §15): the pod's allocated devices are looked up once per ADD, the first
time a NAD with ``k8s.v1.cni.cncf.io/resourceName`` is seen; each such attachment takes the next
sorted ID of its resource, which wins over an annotation ``deviceID``. An attachment with a device
gets ``deviceID``/``pciBusID`` in its conf, ``runtimeConfig.deviceID``, and a CNI device-info file
(copied from the device plugin's file when there is one) passed as ``CNIDeviceInfoFile``. A pod
with no device (left) of the resource gets none, with a warning: some NADs carry a resourceName
only to steer scheduling, as in Multus.

Devices allocated through DRA ResourceClaims (``pymultus.kube.dra``) are used the same way when the
pod has claims; each claim or device that gives nothing (not allocated, no ``k8s.cni.cncf.io``
attributes) is logged and becomes a pod Warning event, and ADD goes on.
"""

from __future__ import annotations

from pymultus.attach.context import EventKind
from pymultus.attach.resolve import with_device_id
from pymultus.store import deviceinfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pymultus.attach.context import Call
    from pymultus.attach.model import Attachment


def assign_devices(call: Call, attachments: list[Attachment]) -> None:
    allocator = None
    for attachment in attachments:
        if attachment.resource_name and call.pod_ref.known:
            if allocator is None:
                allocator = call.deps.device_allocator(call.pod_ref)
                pod = call.load_pod()
                if pod is not None:
                    allocator.use_claims(pod)
            device = allocator.next_device(attachment.resource_name)
            for reason, message in allocator.take_warnings():
                call.log("warning", message)
                call.event(EventKind.WARNING, reason, message)
            if device:
                attachment.device_id = device
            elif not attachment.device_id:
                message = (
                    f"network {attachment.name} names resource {attachment.resource_name}, but pod "
                    f"{call.pod_ref} has no device of it left; attaching without a device ID"
                )
                call.log("warning", message)
                call.event(EventKind.WARNING, "NoDeviceAllocated", message)
        if attachment.device_id:
            _give_device(call, attachment)


def _give_device(call: Call, attachment: Attachment) -> None:
    base = call.deps.device_info_dir
    attachment.network = with_device_id(attachment.network, attachment.device_id)
    attachment.capability_args["deviceID"] = attachment.device_id
    path = deviceinfo.cni_file_path(base, attachment.name, call.request.container_id, attachment.ifname)
    attachment.device_info_file = path
    attachment.capability_args["CNIDeviceInfoFile"] = path
    if attachment.resource_name:
        deviceinfo.copy_from_device_plugin(base, attachment.resource_name, attachment.device_id, path)


def device_info(attachment: Attachment) -> dict[str, object] | None:
    """The attachment's device-info for network-status (written by the device plugin or the CNI)."""
    if not attachment.device_info_file:
        return None
    try:
        return deviceinfo.load(attachment.device_info_file)
    except deviceinfo.DeviceInfoError:
        return None


def remove_device_info(attachment: Attachment) -> None:
    if attachment.device_info_file:
        try:
            deviceinfo.remove(attachment.device_info_file)
        except deviceinfo.DeviceInfoError:
            pass  # Multus only logs this; DEL must not fail on it
