"""The ``k8s.v1.cni.cncf.io/network-status`` annotation, in Multus's format (reference §3.5).

Consumers (OVN-Kubernetes, KubeVirt, SR-IOV tooling, test suites) parse this annotation, so the
entries are built like NADC's ``CreateNetworkStatuses`` and encoded like its ``SetNetworkStatus``:

* Keys, in Multus's order: ``name``, ``interface``, ``ips``, ``mac``, ``mtu``, ``default``,
  ``dns``, ``device-info``, ``gateway``. ``interface``/``ips``/``mac``/``mtu``/``gateway`` are
  left out when empty (Go ``omitempty``); ``dns`` is always present (``{}`` when empty) with
  ``nameservers``, ``domain``, ``search``, ``options`` in that order, each left out when empty.
* ``ips`` are the result's addresses **without** prefix length, printed like Go's ``IP.String()``
  (RFC 5952 IPv6; an IPv4-mapped IPv6 address prints as IPv4).
* ``gateway`` lists the gateways of the result's default routes (a route whose destination
  address is all zeros, as Go's ``isDefaultRoute``), from the delegate's own result.
* One interface in the result: one entry, from that interface when it has a ``sandbox``;
  every IP goes to it and ``default`` is the caller's flag.
  Several interfaces: one entry per sandbox interface, IPs mapped by their ``interface`` index
  (IPs without an index go to the last entry, IPs of a host-side interface are dropped); with
  ``is_default``, the sandbox interface owning the first gateway IP is the default one, else the
  first sandbox interface.
* The value is ``[`` + each entry as Go's ``json.MarshalIndent(entry, "", "    ")`` joined by
  ``,`` + ``]``, with Go's string escaping (``<``, ``>``, ``&``, U+2028/2029 escaped, other
  non-ASCII kept as UTF-8).

Additive extras allowed by DESIGN.md item 10 (NPWG v1.3 asks for them; a parser of Multus's
format reads them the same way or ignores them):

* ``"default": false`` is written explicitly (NPWG §5.3: a required boolean; Multus omits it).
* ``default-route`` (NPWG §5.3.6.4), written after ``gateway`` with the same list, when non-empty.
* A result that yields no entry (no interfaces, as from a 0.1/0.2 plugin or a passthrough
  plugin; or only host-side interfaces) still gets one minimal entry (NPWG §5.1.1): ``name``,
  ``interface`` = the name the delegate was asked to configure (``CNI_IFNAME``), its IPs,
  ``default``, ``dns``, ``gateway``. Multus writes nothing in that case.

Deliberate deviations from Multus (fixing bugs, not formats):

* A default route without a gateway is skipped; Go writes the string ``"<nil>"``.
* With several interfaces, when the first gateway IP belongs to a host-side interface Multus marks
  no entry as default; we fall back to the first sandbox interface, so the cluster network
  always has a ``default: true`` entry (NPWG §5.2).

``device-info`` is passed through as given (the engine reads the CNI device-info file); Multus
round-trips it through NADC's ``DeviceInfo`` struct, which drops unknown keys.

Hot path: standard library only (``_socket`` for address formatting); no ``json``/``re``.
"""

from __future__ import annotations

from pymultus import errors, jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

NETWORK_STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"
_INDENT = "    "


def status_entries(
    *,
    network_name: str,
    ifname: str,
    result: object,
    is_default: bool,
    device_info: Mapping[str, object] | None,
) -> list[dict[str, object]]:
    """The network-status entries of one attachment.

    ``result`` is the delegate's result: a ``pymultus.cni.result.Result`` (anything with
    ``to_version("1.1.0")``) or a decoded result object of any CNI version. ``ifname`` is the
    ``CNI_IFNAME`` the delegate was called with (used only for the minimal entry).
    """
    doc = _current_result(result)
    interfaces = _dicts(doc.get("interfaces"))
    ips = _dicts(doc.get("ips"))
    dns = _dns(doc.get("dns"))
    gateways = _default_gateways(_dicts(doc.get("routes")))
    dev = dict(device_info) if device_info is not None else None

    if len(interfaces) == 1:
        iface = interfaces[0]
        sandboxed = bool(iface.get("sandbox"))
        return [
            _entry(
                network_name,
                interface=_str(iface.get("name")) if sandboxed else "",
                ips=_addresses(ips),
                mac=_str(iface.get("mac")) if sandboxed else "",
                mtu=_int(iface.get("mtu")) if sandboxed else 0,
                default=is_default,
                dns=dns,
                device_info=dev,
                gateways=gateways,
            )
        ]

    # Several (or zero) interfaces: one entry per sandbox interface, as CreateNetworkStatuses.
    sandbox_positions = [i for i, iface in enumerate(interfaces) if iface.get("sandbox")]
    if not sandbox_positions:
        return [
            _entry(
                network_name,
                interface=ifname,
                ips=_addresses(ips),
                mac="",
                mtu=0,
                default=is_default,
                dns=dns,
                device_info=dev,
                gateways=gateways,
            )
        ]
    default_position = -1
    if is_default:
        default_position = sandbox_positions[0]
        for ip in ips:
            index = ip.get("interface")
            if ip.get("gateway") and _int(index) == index and index in sandbox_positions:
                default_position = index
                break
    addresses: dict[int, list[str]] = {position: [] for position in sandbox_positions}
    last = sandbox_positions[-1]
    for ip in ips:
        index = ip.get("interface")
        address = _address(ip)
        if not address:
            continue
        if isinstance(index, int) and not isinstance(index, bool):
            if index in addresses:
                addresses[index].append(address)
        else:
            addresses[last].append(address)
    return [
        _entry(
            network_name,
            interface=_str(interfaces[position].get("name")),
            ips=addresses[position],
            mac=_str(interfaces[position].get("mac")),
            mtu=_int(interfaces[position].get("mtu")),
            default=position == default_position,
            dns=dns,
            device_info=dev,
            gateways=gateways,
        )
        for position in sandbox_positions
    ]


def encode_status(entries: Iterable[Mapping[str, object]]) -> str:
    """The annotation value, byte for byte as Multus writes it (see the module docstring)."""
    return "[" + ",".join(_go_indent(entry, 0) for entry in entries) + "]"


def decode_status(value: str) -> list[dict[str, object]]:
    """Read a network-status annotation value (ours, Multus's or any JSON list of objects)."""
    try:
        doc = jsonio.loads(value, what=NETWORK_STATUS_ANNOTATION)
    except errors.JSONDecodeError as exc:
        raise errors.InvalidAnnotation(exc.msg) from None
    if not isinstance(doc, list) or not all(isinstance(entry, dict) for entry in doc):
        raise errors.InvalidAnnotation(f"{NETWORK_STATUS_ANNOTATION} must be a JSON list of objects")
    return doc


# --------------------------------------------------------------------------------------------
# Building


def _entry(
    name: str,
    *,
    interface: str,
    ips: list[str],
    mac: str,
    mtu: int,
    default: bool,
    dns: dict[str, object],
    device_info: dict[str, object] | None,
    gateways: list[str],
) -> dict[str, object]:
    entry: dict[str, object] = {"name": name}
    if interface:
        entry["interface"] = interface
    if ips:
        entry["ips"] = ips
    if mac:
        entry["mac"] = mac
    if mtu:
        entry["mtu"] = mtu
    entry["default"] = default
    entry["dns"] = dns
    if device_info is not None:
        entry["device-info"] = device_info
    if gateways:
        entry["gateway"] = gateways
        entry["default-route"] = list(gateways)
    return entry


def _current_result(result: object) -> dict[str, object]:
    """The result as a 1.x-shaped dict; 0.1/0.2 ``ip4``/``ip6`` results are mapped without
    interfaces (as libcni's conversion does)."""
    to_version = getattr(result, "to_version", None)
    if to_version is not None:
        converted = to_version("1.1.0")
        if not isinstance(converted, dict):
            raise TypeError("Result.to_version must return a dict")
        return converted
    if not isinstance(result, dict):
        raise TypeError(f"a CNI result must be a Result or a dict, not {type(result).__name__}")
    if "ip4" not in result and "ip6" not in result:
        return result
    ips: list[dict[str, object]] = []
    routes: list[object] = []
    for key in ("ip4", "ip6"):
        block = result.get(key)
        if isinstance(block, dict):
            if block.get("ip"):
                ip: dict[str, object] = {"address": block["ip"]}
                if block.get("gateway"):
                    ip["gateway"] = block["gateway"]
                ips.append(ip)
            block_routes = block.get("routes")
            if isinstance(block_routes, list):
                routes.extend(block_routes)
    return {"ips": ips, "routes": routes, "dns": result.get("dns")}


def _dicts(value: object) -> list[dict[str, object]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dns(value: object) -> dict[str, object]:
    out: dict[str, object] = {}
    if not isinstance(value, dict):
        return out
    for key in ("nameservers", "domain", "search", "options"):
        item = value.get(key)
        if key == "domain":
            if isinstance(item, str) and item:
                out[key] = item
        elif isinstance(item, list) and item:
            out[key] = [entry for entry in item if isinstance(entry, str)]
    return out


def _default_gateways(routes: Sequence[dict[str, object]]) -> list[str]:
    gateways: list[str] = []
    for route in routes:
        dst = route.get("dst")
        gw = route.get("gw")
        if not isinstance(gw, str) or not gw:
            continue  # Go would write "<nil>"; a gateway-less route has nothing to report
        if dst is None or dst == "" or (isinstance(dst, str) and _is_zero_address(dst)):
            gateways.append(_canonical_ip(gw))
    return gateways


def _is_zero_address(cidr: str) -> bool:
    packed = _pack(cidr.partition("/")[0])
    return packed is not None and not any(packed)


def _addresses(ips: Sequence[Mapping[str, object]]) -> list[str]:
    return [address for address in map(_address, ips) if address]


def _address(ip: Mapping[str, object]) -> str:
    address = ip.get("address")
    if not isinstance(address, str):
        return ""
    return _canonical_ip(address.partition("/")[0])


def _pack(text: str) -> bytes | None:
    import _socket

    try:
        return _socket.inet_pton(_socket.AF_INET6 if ":" in text else _socket.AF_INET, text)
    except (OSError, ValueError):
        return None


def _canonical_ip(text: str) -> str:
    """Go's ``net.IP.String()``: dotted IPv4 (also for IPv4-mapped IPv6), RFC 5952 IPv6."""
    packed = _pack(text)
    if packed is None:
        return text
    if len(packed) == 4:
        return ".".join(str(byte) for byte in packed)
    if packed[:12] == b"\x00" * 10 + b"\xff\xff":
        return ".".join(str(byte) for byte in packed[12:])
    groups = [(packed[i] << 8) | packed[i + 1] for i in range(0, 16, 2)]
    best_start, best_len = -1, 0
    run_start, run_len = -1, 0
    for index, group in enumerate(groups):
        if group == 0:
            if run_start < 0:
                run_start, run_len = index, 0
            run_len += 1
            if run_len > best_len:
                best_start, best_len = run_start, run_len
        else:
            run_start = -1
    hexes = [format(group, "x") for group in groups]
    if best_len < 2:
        return ":".join(hexes)
    return ":".join(hexes[:best_start]) + "::" + ":".join(hexes[best_start + best_len :])


# --------------------------------------------------------------------------------------------
# Go's json.MarshalIndent


def _go_indent(value: object, level: int) -> str:
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = _INDENT * (level + 1)
        items = [
            f"{inner}{_go_string(str(key))}: {_go_indent(item, level + 1)}" for key, item in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + _INDENT * level + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        inner = _INDENT * (level + 1)
        items = [inner + _go_indent(item, level + 1) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + _INDENT * level + "]"
    if isinstance(value, str):
        return _go_string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    raise TypeError(f"cannot encode {type(value).__name__} in network-status")


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _go_string(text: str) -> str:
    """A JSON string as Go's encoding/json writes it (HTML-safe escaping, UTF-8 kept)."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code < 0x20 or char in "<>&" or code in (0x2028, 0x2029):
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")  # a lone surrogate: Go replaces invalid UTF-8 this way
        else:
            out.append(char)
    out.append('"')
    return "".join(out)
