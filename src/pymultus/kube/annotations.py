"""The pod annotations that select networks: ``k8s.v1.cni.cncf.io/networks`` and
``v1.multus-cni.io/default-network`` (reference §3.1-§3.3, NPWG v1.3 §4).

Both take either the comma form ``[<namespace>/]<name>[@<ifname>]`` or a JSON list of selection
objects. As in Multus and the NADC helper, a value containing any of ``[``, ``{`` or ``"`` is
JSON; a single JSON object (not in a list) is an error, as it is for Go's ``json.Unmarshal`` into
a slice.

Where we follow Multus and where we are deliberately stricter (each stricter case is one Multus
also fails, only later and with a vaguer message):

* Comma form: items are trimmed, namespace/name/ifname trimmed again around ``/`` and ``@``; an
  empty namespace (``/net``) or empty ifname (``net@``) means "not given", as in Multus. An empty
  name (``a,,b``, a trailing comma) is rejected here; Multus would fail at the NAD lookup.
* Names: the namespace must be a DNS-1123 label (what Multus checks); the network name a DNS-1123
  *subdomain* — Multus checks a label in the comma form, but a NAD name may contain dots, so the
  wider rule only accepts names that can exist. The JSON form (unchecked in Multus) gets the same
  checks, because a name that cannot exist can only fail later.
* Interface names follow the CNI rules (<= 15 bytes, not ``.``/``..``, no ``/``, ``:`` or
  whitespace) in both forms; the plugin would refuse the others.
* JSON keys are matched like Go's ``encoding/json``: exactly, else case-insensitively. ``null``
  means "absent" for every optional key, as it does for Go. The legacy key ``interfaceRequest``
  (pre-3.2) is honoured when ``interface`` is absent. Unknown keys are kept in ``raw`` (NPWG lets
  implementations add reverse-DNS keys).
* ``ips`` entries must be an IP or a CIDR (Go ``ParseIP``/``ParseCIDR`` rules: no zone, decimal
  prefix); ``mac`` and ``infiniband-guid`` follow Go's ``net.ParseMAC`` (6, 8 or 20 bytes; ``:``,
  ``-`` or ``.`` separated). ``default-route`` entries must be plain IPs.
* ``ipam-claim-reference`` (NPWG v1.3 §4.1.2.1.11; Multus drops it) is kept, and combining it
  with ``ips`` is an error, as the spec requires.

Hot path: no ``re``/``json``/``typing``/``ipaddress``; addresses are checked with ``inet_pton``.
"""

from __future__ import annotations

from pymultus import errors, jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeGuard

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NETWORK_ANNOTATION = "v1.multus-cni.io/default-network"

_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_LABEL_CHARS = _LOWER_ALNUM | {"-"}
_HEX = frozenset("0123456789abcdefABCDEF")
_WHITESPACE = " \t\n\v\f\r"
# Go's strings.TrimSpace also trims these; annotations are rarely this exotic, but match it.
_TRIM = _WHITESPACE + "\x85\xa0"

# Selection keys as spelled by NPWG/Multus, in the order we read them.
SELECTION_KEYS = (
    "name",
    "namespace",
    "interface",
    "interfaceRequest",
    "ips",
    "mac",
    "infiniband-guid",
    "cni-args",
    "portMappings",
    "bandwidth",
    "default-route",
    "deviceID",
    "ipam-claim-reference",
)
_KEYS_FOLDED = {key.lower(): key for key in SELECTION_KEYS}
_BANDWIDTH_KEYS = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")


class NetworkSelection:
    """One element of a network selection annotation, validated.

    ``namespace`` is always set (the pod's namespace, or the default the caller passed, when the
    element names none). ``default_route`` is None when not requested; ``[]`` means "keep this
    attachment's own default route and strip the others". ``raw`` is the element as written: the
    comma-form item string, or the decoded JSON object with every key (unknown ones included).
    """

    __slots__ = (
        "bandwidth",
        "cni_args",
        "default_route",
        "device_id",
        "infiniband_guid",
        "interface",
        "ipam_claim_reference",
        "ips",
        "mac",
        "name",
        "namespace",
        "port_mappings",
        "raw",
    )

    def __init__(
        self,
        name: str,
        namespace: str,
        *,
        interface: str | None = None,
        ips: list[str] | None = None,
        mac: str | None = None,
        infiniband_guid: str | None = None,
        cni_args: dict[str, object] | None = None,
        port_mappings: list[dict[str, object]] | None = None,
        bandwidth: dict[str, object] | None = None,
        default_route: list[str] | None = None,
        device_id: str | None = None,
        ipam_claim_reference: str | None = None,
        raw: str | dict[str, object] | None = None,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.interface = interface
        self.ips = ips if ips is not None else []
        self.mac = mac
        self.infiniband_guid = infiniband_guid
        self.cni_args = cni_args
        self.port_mappings = port_mappings
        self.bandwidth = bandwidth
        self.default_route = default_route
        self.device_id = device_id
        self.ipam_claim_reference = ipam_claim_reference
        self.raw = raw if raw is not None else name

    def to_json(self) -> dict[str, object]:
        """The element in the NPWG JSON form with only the keys that are set (for caches/logs)."""
        out: dict[str, object] = {"name": self.name, "namespace": self.namespace}
        if self.interface is not None:
            out["interface"] = self.interface
        if self.ips:
            out["ips"] = list(self.ips)
        if self.mac is not None:
            out["mac"] = self.mac
        if self.infiniband_guid is not None:
            out["infiniband-guid"] = self.infiniband_guid
        if self.cni_args is not None:
            out["cni-args"] = self.cni_args
        if self.port_mappings is not None:
            out["portMappings"] = self.port_mappings
        if self.bandwidth is not None:
            out["bandwidth"] = self.bandwidth
        if self.default_route is not None:
            out["default-route"] = list(self.default_route)
        if self.device_id is not None:
            out["deviceID"] = self.device_id
        if self.ipam_claim_reference is not None:
            out["ipam-claim-reference"] = self.ipam_claim_reference
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetworkSelection):
            return NotImplemented
        return self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]  # mutable value object

    def __repr__(self) -> str:
        return f"NetworkSelection({self.to_json()!r})"


def parse_networks(value: str, *, pod_namespace: str) -> list[NetworkSelection]:
    """Parse ``k8s.v1.cni.cncf.io/networks``; a blank value selects no network."""
    return _parse(value, default_namespace=pod_namespace, what=NETWORKS_ANNOTATION)


def parse_default_network(value: str, *, default_namespace: str) -> NetworkSelection:
    """Parse ``v1.multus-cni.io/default-network``: exactly one network, either form.

    ``default_namespace`` is Multus's ``multusNamespace`` (not the pod's namespace, reference §3.3).
    """
    what = DEFAULT_NETWORK_ANNOTATION
    networks = _parse(value, default_namespace=default_namespace, what=what)
    if len(networks) != 1:
        got = "none" if not networks else f"{len(networks)}"
        raise errors.InvalidAnnotation(
            f"{what} must name exactly one network, got {got}", details=f"{what}={value!r}"
        )
    return networks[0]


# --------------------------------------------------------------------------------------------
# Grammar


def _parse(value: str, *, default_namespace: str, what: str) -> list[NetworkSelection]:
    if not isinstance(value, str):
        raise errors.InvalidAnnotation(f"{what} must be a string, not {type(value).__name__}")
    if not value.strip(_TRIM):
        if what == DEFAULT_NETWORK_ANNOTATION:
            raise errors.InvalidAnnotation(f"{what} is empty; it must name one network")
        return []
    if "[" in value or "{" in value or '"' in value:
        return _parse_json(value, default_namespace=default_namespace, what=what)
    return [
        _parse_item(item, position, default_namespace=default_namespace, what=what)
        for position, item in enumerate(value.split(","), start=1)
    ]


def _parse_item(item: str, position: int, *, default_namespace: str, what: str) -> NetworkSelection:
    text = item.strip(_TRIM)

    def fail(reason: str) -> errors.InvalidAnnotation:
        return errors.InvalidAnnotation(
            f'network {position} of {what} ("{_clip(text)}"): {reason}', details=f"{what}={item!r}"
        )

    if not text:
        raise fail("empty network name (stray comma?)")
    if text.count("/") > 1:
        raise fail('more than one "/"')
    namespace = ""
    rest = text
    if "/" in text:
        namespace, rest = text.split("/")
        namespace = namespace.strip(_TRIM)
    if rest.count("@") > 1:
        raise fail('more than one "@"')
    ifname = ""
    name = rest
    if "@" in rest:
        name, ifname = rest.split("@")
        ifname = ifname.strip(_TRIM)
    name = name.strip(_TRIM)
    if not name:
        raise fail("the network name is empty")
    problem = _name_problem(name)
    if problem:
        raise fail(f"network name {name!r} {problem}")
    if namespace:
        problem = _label_problem(namespace)
        if problem:
            raise fail(f"namespace {namespace!r} {problem}")
    if ifname:
        problem = _ifname_problem(ifname)
        if problem:
            raise fail(f"interface name {ifname!r} {problem}")
    return NetworkSelection(
        name,
        namespace or default_namespace,
        interface=ifname or None,
        raw=text,
    )


def _parse_json(value: str, *, default_namespace: str, what: str) -> list[NetworkSelection]:
    try:
        doc = jsonio.loads(value, what=what)
    except errors.JSONDecodeError as exc:
        raise errors.InvalidAnnotation(f"{exc.msg}", details=f"{what}={value!r}") from None
    if not isinstance(doc, list):
        raise errors.InvalidAnnotation(
            f"{what} in JSON form must be a list of network selection objects, not {jsonio.kind_of(doc)}",
            details=f"{what}={value!r}",
        )
    return [
        _parse_element(element, position, default_namespace=default_namespace, what=what)
        for position, element in enumerate(doc, start=1)
    ]


def _parse_element(element: object, position: int, *, default_namespace: str, what: str) -> NetworkSelection:
    if not isinstance(element, dict):
        raise errors.InvalidAnnotation(
            f"network {position} of {what} must be a JSON object, not {jsonio.kind_of(element)}",
            details=f"{what} element {position}={jsonio.dumps(element)}",
        )
    label = _element_label(element)

    def fail(reason: str) -> errors.InvalidAnnotation:
        return errors.InvalidAnnotation(
            f"network {position} of {what} ({label}): {reason}",
            details=f"{what} element {position}={_clip(jsonio.dumps(element), 400)}",
        )

    fields = _fields(element)

    name = fields.get("name")
    if name is None:
        raise fail('"name" is missing')
    if not isinstance(name, str):
        raise fail(f'"name" must be a string, not {jsonio.kind_of(name)}')
    if not name:
        raise fail('"name" is empty')
    problem = _name_problem(name)
    if problem:
        raise fail(f"network name {name!r} {problem}")

    namespace = _optional_str(fields, "namespace", fail)
    if namespace:
        problem = _label_problem(namespace)
        if problem:
            raise fail(f"namespace {namespace!r} {problem}")

    interface = _optional_str(fields, "interface", fail) or _optional_str(fields, "interfaceRequest", fail)
    if interface:
        problem = _ifname_problem(interface)
        if problem:
            raise fail(f'"interface" {interface!r} {problem}')

    ips = _optional_str_list(fields, "ips", fail)
    if ips:
        for ip in ips:
            problem = _ip_or_cidr_problem(ip)
            if problem:
                raise fail(f'"ips" entry {ip!r} {problem}')

    mac = _optional_str(fields, "mac", fail)
    if mac and not _is_hardware_address(mac):
        raise fail(f'"mac" {mac!r} is not a valid MAC address')
    guid = _optional_str(fields, "infiniband-guid", fail)
    if guid and not _is_hardware_address(guid):
        raise fail(f'"infiniband-guid" {guid!r} is not a valid InfiniBand GUID')

    cni_args = _optional_object(fields, "cni-args", fail)

    port_mappings = _port_mappings(fields, fail)
    bandwidth = _bandwidth(fields, fail)

    default_route = _optional_str_list(fields, "default-route", fail)
    if default_route:
        for gateway in default_route:
            problem = _ip_problem(gateway)
            if problem:
                raise fail(f'"default-route" entry {gateway!r} {problem}')

    device_id = _optional_str(fields, "deviceID", fail)
    claim = _optional_str(fields, "ipam-claim-reference", fail)
    if claim and ips:
        raise fail('"ipam-claim-reference" cannot be combined with "ips" (NPWG §4.1.2.1.11)')

    return NetworkSelection(
        name,
        namespace or default_namespace,
        interface=interface or None,
        ips=ips or [],
        mac=mac or None,
        infiniband_guid=guid or None,
        cni_args=cni_args,
        port_mappings=port_mappings,
        bandwidth=bandwidth,
        default_route=default_route,
        device_id=device_id or None,
        ipam_claim_reference=claim or None,
        raw=element,
    )


def _fields(element: dict[str, object]) -> dict[str, object]:
    """Known keys → values, matched like Go's encoding/json (exact first, then case-folded)."""
    fields: dict[str, object] = {}
    for key in SELECTION_KEYS:
        if key in element:
            fields[key] = element[key]
    if len(fields) != len(element):
        for key, val in element.items():
            canonical = _KEYS_FOLDED.get(key.lower())
            if canonical is not None and canonical not in fields:
                fields[canonical] = val
    return fields


# --------------------------------------------------------------------------------------------
# Typed getters (``null`` is "absent", as for Go)


def _optional_str(
    fields: dict[str, object], key: str, fail: Callable[[str], errors.InvalidAnnotation]
) -> str | None:
    val = fields.get(key)
    if val is None:
        return None
    if not isinstance(val, str):
        raise fail(f'"{key}" must be a string, not {jsonio.kind_of(val)}')
    return val


def _optional_str_list(
    fields: dict[str, object], key: str, fail: Callable[[str], errors.InvalidAnnotation]
) -> list[str] | None:
    val = fields.get(key)
    if val is None:
        return None
    if not isinstance(val, list):
        raise fail(f'"{key}" must be a list of strings, not {jsonio.kind_of(val)}')
    for entry in val:
        if not isinstance(entry, str):
            raise fail(f'"{key}" must be a list of strings; found {jsonio.kind_of(entry)}')
    return list(val)


def _optional_object(
    fields: dict[str, object], key: str, fail: Callable[[str], errors.InvalidAnnotation]
) -> dict[str, object] | None:
    val = fields.get(key)
    if val is None:
        return None
    if not isinstance(val, dict):
        raise fail(f'"{key}" must be an object, not {jsonio.kind_of(val)}')
    return val


def _port_mappings(
    fields: dict[str, object], fail: Callable[[str], errors.InvalidAnnotation]
) -> list[dict[str, object]] | None:
    val = fields.get("portMappings")
    if val is None:
        return None
    if not isinstance(val, list):
        raise fail(f'"portMappings" must be a list of objects, not {jsonio.kind_of(val)}')
    out: list[dict[str, object]] = []
    for index, entry in enumerate(val, start=1):
        if not isinstance(entry, dict):
            raise fail(f'"portMappings" entry {index} must be an object, not {jsonio.kind_of(entry)}')
        for key in ("hostPort", "containerPort"):
            port = entry.get(key)
            if port is not None and not (_is_int(port) and 0 <= port <= 65535):
                raise fail(f'"portMappings" entry {index}: "{key}" must be a port number 0-65535')
        for key in ("protocol", "hostIP"):
            text = entry.get(key)
            if text is not None and not isinstance(text, str):
                raise fail(f'"portMappings" entry {index}: "{key}" must be a string')
        out.append(entry)
    return out


def _bandwidth(
    fields: dict[str, object], fail: Callable[[str], errors.InvalidAnnotation]
) -> dict[str, object] | None:
    val = _optional_object(fields, "bandwidth", fail)
    if val is None:
        return None
    for key in _BANDWIDTH_KEYS:
        rate = val.get(key)
        if rate is not None and not (_is_int(rate) and rate >= 0):
            raise fail(f'"bandwidth" "{key}" must be a non-negative integer')
    return val


def _is_int(val: object) -> TypeGuard[int]:
    return isinstance(val, int) and not isinstance(val, bool)


# --------------------------------------------------------------------------------------------
# Small hand-written validators (no ``re`` on the hot path)


def _label_problem(text: str) -> str | None:
    """Why ``text`` is not a DNS-1123 label (namespace names), or None."""
    if len(text) > 63:
        return "is longer than 63 characters"
    if not _is_label_body(text):
        return (
            "is not a DNS-1123 label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    return None


def _name_problem(text: str) -> str | None:
    """Why ``text`` is not a DNS-1123 subdomain (NAD object names), or None."""
    if len(text) > 253:
        return "is longer than 253 characters"
    if not all(_is_label_body(part) for part in text.split(".")):
        return (
            "is not a valid object name (lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit)"
        )
    return None


def _is_label_body(text: str) -> bool:
    return (
        bool(text)
        and text[0] in _LOWER_ALNUM
        and text[-1] in _LOWER_ALNUM
        and all(char in _LABEL_CHARS for char in text)
    )


def _ifname_problem(text: str) -> str | None:
    """The CNI interface-name rules (libcni ``ValidateInterfaceName``), or None."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a "\ud800" JSON escape
        return "is not valid Unicode text"
    if size > 15:
        return "is longer than 15 bytes"
    if text in (".", ".."):
        return 'is not a valid interface name ("." and ".." are reserved)'
    for char in text:
        if char in "/:" or char.isspace():
            return "must not contain '/', ':' or whitespace"
    return None


def _ip_problem(text: str) -> str | None:
    # inet_pton has Go ParseIP's rules (dotted quad without leading zeros, no IPv6 zone) and
    # costs nothing to import, unlike ``ipaddress``.
    import _socket

    family = _socket.AF_INET6 if ":" in text else _socket.AF_INET
    try:
        _socket.inet_pton(family, text)
    except (OSError, ValueError):
        return "is not an IP address"
    return None


def _ip_or_cidr_problem(text: str) -> str | None:
    if "/" not in text:
        problem = _ip_problem(text)
        return "is not an IP address or CIDR" if problem else None
    address, _, prefix = text.partition("/")
    if not prefix.isascii() or not prefix.isdigit() or _ip_problem(address):
        return "is not an IP address or CIDR"
    limit = 128 if ":" in address else 32
    # int() refuses strings of more than 4300 digits (ValueError); no prefix needs more than 3.
    digits = prefix.lstrip("0") or "0"
    if len(digits) > 3 or int(digits) > limit:
        return f"has a prefix length above {limit}"
    return None


def _is_hardware_address(text: str) -> bool:
    """Go ``net.ParseMAC``: 6, 8 or 20 bytes as ``aa:bb:..``, ``aa-bb-..`` or ``aabb.ccdd...``."""
    if len(text) < 14:
        return False
    if text[2] in ":-":
        sep = text[2]
        if (len(text) + 1) % 3:
            return False
        count = (len(text) + 1) // 3
        if count not in (6, 8, 20):
            return False
        for index in range(count):
            start = index * 3
            if text[start] not in _HEX or text[start + 1] not in _HEX:
                return False
            if index < count - 1 and text[start + 2] != sep:
                return False
        return True
    if text[4] == ".":
        if (len(text) + 1) % 5:
            return False
        groups = (len(text) + 1) // 5
        if groups * 2 not in (6, 8, 20):
            return False
        for index in range(groups):
            start = index * 5
            if not all(char in _HEX for char in text[start : start + 4]):
                return False
            if index < groups - 1 and text[start + 4] != ".":
                return False
        return True
    return False


# --------------------------------------------------------------------------------------------
# Message helpers


def _element_label(element: dict[str, object]) -> str:
    name = element.get("name")
    if isinstance(name, str) and name:
        return f'name "{_clip(name)}"'
    return _clip(jsonio.dumps(element))


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
