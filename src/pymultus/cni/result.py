"""CNI results: one canonical 1.1.0 model, parsed from and emitted in every spec version.

Three generations of the result schema exist (libcni ``pkg/types/{020,040,100}``):

* 0.1.0, 0.2.0: ``{ip4: {ip, gateway, routes}, ip6: {...}, dns}``;
* 0.3.0, 0.3.1, 0.4.0: ``interfaces``, ``ips`` with ``version`` "4"/"6", ``routes``, ``dns``;
* 1.0.0, 1.1.0: ``ips`` without ``version``; 1.1 adds interface ``mtu``/``socketPath``/``pciID`` and
  route ``mtu``/``advmss``/``priority``/``table``/``scope``. libcni uses one Go type for 1.0.0 and
  1.1.0, so both emit every field and 1.0 <-> 1.1 is lossless.

Conversion rules kept from libcni: going to 0.1/0.2 keeps only the first IPv4 and the first IPv6
address, sorts routes under the family that has an address (others are dropped), loses interfaces,
and fails when no address is left. Going to 0.3.x/0.4.0 adds ``version`` from the address and drops
the 1.1 interface fields. Deliberate difference: the 1.1 route fields are dropped too when going to
0.x (libcni leaks them through its shared Go route type, though no 0.x schema defines them).
"""

from __future__ import annotations

from pymultus import errors
from pymultus.cni import spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

_GEN_LEGACY = 0  # 0.1.0, 0.2.0
_GEN_04 = 1  # 0.3.0, 0.3.1, 0.4.0
_GEN_1X = 2  # 1.0.0, 1.1.0
_GENERATION = {
    "0.1.0": _GEN_LEGACY,
    "0.2.0": _GEN_LEGACY,
    "0.3.0": _GEN_04,
    "0.3.1": _GEN_04,
    "0.4.0": _GEN_04,
    "1.0.0": _GEN_1X,
    "1.1.0": _GEN_1X,
}


def _generation(version: str) -> int:
    generation = _GENERATION.get(version)
    if generation is None:
        raise errors.IncompatibleVersion(
            f"CNI result version {version!r} is not supported",
            details=f"supported: {', '.join(spec.SUPPORTED_VERSIONS)}",
        )
    return generation


def _is_ipv4(cidr_or_ip: str) -> bool:
    # Dotted quads have no ':'; IPv6 always has one. (No ipaddress import on the hot path.)
    return ":" not in cidr_or_ip


# ---------------------------------------------------------------- decoding helpers


def _str(obj: Mapping[str, object], key: str, where: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise errors.DecodingError(f"CNI result field {where}.{key} is missing")
        return ""
    if not isinstance(value, str):
        raise errors.DecodingError(f"CNI result field {where}.{key} must be a string")
    return value


def _int(obj: Mapping[str, object], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.DecodingError(f"CNI result field {where}.{key} must be an integer")
    return value


def _list(obj: Mapping[str, object], key: str, where: str) -> list[object]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.DecodingError(f"CNI result field {where}.{key} must be a list")
    return value


def _same_slots(a: object, b: object) -> bool:
    return type(a) is type(b) and all(getattr(a, s) == getattr(b, s) for s in a.__slots__)  # type: ignore[attr-defined]


def _obj(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise errors.DecodingError(f"CNI result field {where} must be an object")
    return value


def _strings(obj: Mapping[str, object], key: str, where: str) -> list[str]:
    values = _list(obj, key, where)
    if not all(isinstance(v, str) for v in values):
        raise errors.DecodingError(f"CNI result field {where}.{key} must be a list of strings")
    return [str(v) for v in values]


# ---------------------------------------------------------------- the model


class Interface:
    __slots__ = ("mac", "mtu", "name", "pci_id", "sandbox", "socket_path")

    def __init__(
        self,
        name: str,
        mac: str = "",
        *,
        mtu: int = 0,
        sandbox: str = "",
        socket_path: str = "",
        pci_id: str = "",
    ) -> None:
        self.name = name
        self.mac = mac
        self.mtu = mtu
        self.sandbox = sandbox
        self.socket_path = socket_path
        self.pci_id = pci_id

    @classmethod
    def parse(cls, value: object, where: str, generation: int) -> Interface:
        obj = _obj(value, where)
        iface = cls(_str(obj, "name", where), _str(obj, "mac", where), sandbox=_str(obj, "sandbox", where))
        if generation == _GEN_1X:
            iface.mtu = _int(obj, "mtu", where) or 0
            iface.socket_path = _str(obj, "socketPath", where)
            iface.pci_id = _str(obj, "pciID", where)
        return iface

    def emit(self, generation: int) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if generation == _GEN_1X and self.mtu:
            out["mtu"] = self.mtu
        if self.sandbox:
            out["sandbox"] = self.sandbox
        if generation == _GEN_1X:
            if self.socket_path:
                out["socketPath"] = self.socket_path
            if self.pci_id:
                out["pciID"] = self.pci_id
        return out

    def copy(self) -> Interface:
        return Interface(
            self.name,
            self.mac,
            mtu=self.mtu,
            sandbox=self.sandbox,
            socket_path=self.socket_path,
            pci_id=self.pci_id,
        )

    def __eq__(self, other: object) -> bool:
        return _same_slots(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Interface({self.name!r}, mac={self.mac!r}, sandbox={self.sandbox!r})"


class IPConfig:
    __slots__ = ("address", "gateway", "interface")

    def __init__(self, address: str, gateway: str | None = None, interface: int | None = None) -> None:
        self.address = address
        self.gateway = gateway
        self.interface = interface

    @property
    def version(self) -> str:
        """ "4" or "6", as 0.3.x/0.4.0 results spell it."""
        return "4" if _is_ipv4(self.address) else "6"

    @classmethod
    def parse(cls, value: object, where: str) -> IPConfig:
        obj = _obj(value, where)
        address = _str(obj, "address", where, required=True)
        if "/" not in address:
            raise errors.DecodingError(
                f"CNI result field {where}.address {address!r} is not in CIDR notation"
            )
        interface = _int(obj, "interface", where)
        if interface is not None and interface < 0:
            raise errors.DecodingError(f"CNI result field {where}.interface must not be negative")
        return cls(address, _str(obj, "gateway", where) or None, interface)

    def emit(self, generation: int) -> dict[str, object]:
        out: dict[str, object] = {}
        if generation == _GEN_04:
            out["version"] = self.version
        if self.interface is not None:
            out["interface"] = self.interface
        out["address"] = self.address
        if self.gateway:
            out["gateway"] = self.gateway
        return out

    def copy(self) -> IPConfig:
        return IPConfig(self.address, self.gateway, self.interface)

    def __eq__(self, other: object) -> bool:
        return _same_slots(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"IPConfig({self.address!r}, gateway={self.gateway!r}, interface={self.interface!r})"


class Route:
    __slots__ = ("advmss", "dst", "gw", "mtu", "priority", "scope", "table")

    def __init__(
        self,
        dst: str,
        gw: str | None = None,
        *,
        mtu: int = 0,
        advmss: int = 0,
        priority: int = 0,
        table: int | None = None,
        scope: int | None = None,
    ) -> None:
        self.dst = dst
        self.gw = gw
        self.mtu = mtu
        self.advmss = advmss
        self.priority = priority
        self.table = table
        self.scope = scope

    @classmethod
    def parse(cls, value: object, where: str, generation: int) -> Route:
        obj = _obj(value, where)
        route = cls(_str(obj, "dst", where, required=True), _str(obj, "gw", where) or None)
        if generation == _GEN_1X:
            route.mtu = _int(obj, "mtu", where) or 0
            route.advmss = _int(obj, "advmss", where) or 0
            route.priority = _int(obj, "priority", where) or 0
            route.table = _int(obj, "table", where)
            route.scope = _int(obj, "scope", where)
        return route

    def emit(self, generation: int) -> dict[str, object]:
        out: dict[str, object] = {"dst": self.dst}
        if self.gw:
            out["gw"] = self.gw
        if generation == _GEN_1X:
            if self.mtu:
                out["mtu"] = self.mtu
            if self.advmss:
                out["advmss"] = self.advmss
            if self.priority:
                out["priority"] = self.priority
            if self.table is not None:
                out["table"] = self.table
            if self.scope is not None:
                out["scope"] = self.scope
        return out

    def copy(self) -> Route:
        return Route(
            self.dst,
            self.gw,
            mtu=self.mtu,
            advmss=self.advmss,
            priority=self.priority,
            table=self.table,
            scope=self.scope,
        )

    def __eq__(self, other: object) -> bool:
        return _same_slots(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Route({self.dst!r}, gw={self.gw!r})"


class DNS:
    __slots__ = ("domain", "nameservers", "options", "search")

    def __init__(
        self,
        nameservers: list[str] | None = None,
        domain: str = "",
        search: list[str] | None = None,
        options: list[str] | None = None,
    ) -> None:
        self.nameservers = nameservers if nameservers is not None else []
        self.domain = domain
        self.search = search if search is not None else []
        self.options = options if options is not None else []

    @classmethod
    def parse(cls, value: object, where: str = "dns") -> DNS:
        if value is None:
            return cls()
        obj = _obj(value, where)
        return cls(
            _strings(obj, "nameservers", where),
            _str(obj, "domain", where),
            _strings(obj, "search", where),
            _strings(obj, "options", where),
        )

    def emit(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out

    def copy(self) -> DNS:
        return DNS(list(self.nameservers), self.domain, list(self.search), list(self.options))

    def __eq__(self, other: object) -> bool:
        return _same_slots(self, other)

    __hash__ = None  # type: ignore[assignment]


class Result:
    """The canonical (1.1.0) ADD result."""

    __slots__ = ("dns", "interfaces", "ips", "routes")

    def __init__(
        self,
        interfaces: list[Interface] | None = None,
        ips: list[IPConfig] | None = None,
        routes: list[Route] | None = None,
        dns: DNS | None = None,
    ) -> None:
        self.interfaces = interfaces if interfaces is not None else []
        self.ips = ips if ips is not None else []
        self.routes = routes if routes is not None else []
        self.dns = dns if dns is not None else DNS()

    @classmethod
    def empty(cls) -> Result:
        return cls()

    @classmethod
    def parse(cls, obj: Mapping[str, object], version: str | None = None) -> Result:
        """A result of any version; a missing ``cniVersion`` takes ``version`` (libcni's
        ``fixupResultVersion``: plugins answer in the version of their configuration)."""
        if not isinstance(obj, dict):
            raise errors.DecodingError("CNI result must be a JSON object")
        declared = obj.get("cniVersion")
        if declared is not None and not isinstance(declared, str):
            raise errors.DecodingError("CNI result field cniVersion must be a string")
        effective = declared or version
        if not effective:
            raise errors.DecodingError("CNI result has no cniVersion")
        generation = _generation(effective)
        if generation == _GEN_LEGACY:
            return cls._parse_legacy(obj)
        result = cls(dns=DNS.parse(obj.get("dns")))
        interfaces = _list(obj, "interfaces", "")
        result.interfaces = [
            Interface.parse(v, f"interfaces[{i}]", generation) for i, v in enumerate(interfaces)
        ]
        result.ips = [IPConfig.parse(v, f"ips[{i}]") for i, v in enumerate(_list(obj, "ips", ""))]
        result.routes = [
            Route.parse(v, f"routes[{i}]", generation) for i, v in enumerate(_list(obj, "routes", ""))
        ]
        return result

    @classmethod
    def _parse_legacy(cls, obj: Mapping[str, object]) -> Result:
        result = cls(dns=DNS.parse(obj.get("dns")))
        for key in ("ip4", "ip6"):
            value = obj.get(key)
            if value is None:
                continue
            block = _obj(value, key)
            address = _str(block, "ip", key, required=True)
            if "/" not in address:
                raise errors.DecodingError(f"CNI result field {key}.ip {address!r} is not in CIDR notation")
            result.ips.append(IPConfig(address, _str(block, "gateway", key) or None))
            for i, route in enumerate(_list(block, "routes", key)):
                result.routes.append(Route.parse(route, f"{key}.routes[{i}]", _GEN_LEGACY))
        return result

    def to_version(self, version: str) -> dict[str, object]:
        """The result as ``version`` emits it (the key order follows libcni's Go structs)."""
        generation = _generation(version)
        if generation == _GEN_LEGACY:
            return self._emit_legacy(version)
        out: dict[str, object] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [iface.emit(generation) for iface in self.interfaces]
        if self.ips:
            out["ips"] = [ipc.emit(generation) for ipc in self.ips]
        if self.routes:
            out["routes"] = [route.emit(generation) for route in self.routes]
        # Go always marshals the DNS struct, so libcni results carry "dns": {} even when empty.
        out["dns"] = self.dns.emit()
        return out

    def _emit_legacy(self, version: str) -> dict[str, object]:
        ip4: dict[str, object] | None = None
        ip6: dict[str, object] | None = None
        for ipc in self.ips:
            block: dict[str, object] = {"ip": ipc.address}
            if ipc.gateway:
                block["gateway"] = ipc.gateway
            if ipc.version == "4" and ip4 is None:
                ip4 = block
            elif ipc.version == "6" and ip6 is None:
                ip6 = block
            if ip4 is not None and ip6 is not None:
                break
        if ip4 is None and ip6 is None:
            raise errors.IncompatibleVersion(
                f"a result without IP addresses cannot be expressed in CNI {version}"
            )
        for route in self.routes:
            target = ip4 if _is_ipv4(route.dst) else ip6
            if target is not None:
                routes = target.setdefault("routes", [])
                assert isinstance(routes, list)
                routes.append(route.emit(_GEN_LEGACY))
        out: dict[str, object] = {"cniVersion": version}
        if ip4 is not None:
            out["ip4"] = ip4
        if ip6 is not None:
            out["ip6"] = ip6
        out["dns"] = self.dns.emit()
        return out

    def copy(self) -> Result:
        return Result(
            [iface.copy() for iface in self.interfaces],
            [ipc.copy() for ipc in self.ips],
            [route.copy() for route in self.routes],
            self.dns.copy(),
        )

    def __eq__(self, other: object) -> bool:
        return _same_slots(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Result(interfaces={self.interfaces!r}, ips={self.ips!r}, routes={self.routes!r})"


def is_error_object(obj: object) -> bool:
    """Whether a decoded plugin answer is a CNI error (``{code, msg, details}``) rather than a result."""
    return isinstance(obj, dict) and "code" in obj and "ips" not in obj and "interfaces" not in obj


def convert(
    obj: Mapping[str, object], version: str, *, assume_version: str | None = None
) -> dict[str, object]:
    """Re-express a decoded result in ``version`` (parse, then emit)."""
    return Result.parse(obj, assume_version).to_version(version)
