"""CNI specification constants, version handling and identifier validation (CNI spec 1.1).

Hot path: no ``re``, no ``typing`` at run time. The identifier checks are hand-written
equivalents of libcni's ``pkg/utils`` regular expressions.
"""

from __future__ import annotations

from pymultus import errors

ADD = "ADD"
DEL = "DEL"
CHECK = "CHECK"
VERSION = "VERSION"
GC = "GC"
STATUS = "STATUS"
COMMANDS = (ADD, DEL, CHECK, VERSION, GC, STATUS)

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CURRENT_VERSION = "1.1.0"
# A configuration without cniVersion is 0.1.0 (libcni's version.ConfigDecoder).
DEFAULT_CONFIG_VERSION = "0.1.0"

# The first version that defines each command for a configuration (skel refuses older ones).
MIN_VERSION_FOR_COMMAND = {CHECK: "0.4.0", GC: "1.1.0", STATUS: "1.1.0"}

# Keys of the GC request (libcni also injects the misspelt key of containernetworking/cni#1101).
VALID_ATTACHMENTS_KEY = "cni.dev/valid-attachments"
LEGACY_ATTACHMENTS_KEY = "cni.dev/attachments"

IFNAME_MAX_BYTES = 15  # IFNAMSIZ - 1
_ID_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_REST = _ID_FIRST | frozenset("_.-")

_version_cache: dict[str, tuple[int, int, int]] = {}


def parse_version(version: str) -> tuple[int, int, int]:
    """``"X[.Y[.Z]]"`` as a tuple, like libcni's ``version.ParseVersion``."""
    cached = _version_cache.get(version)
    if cached is not None:
        return cached
    parts = version.split(".") if isinstance(version, str) else []
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() and p.isascii() for p in parts):
        raise errors.IncompatibleVersion(f"CNI version {version!r} is not a valid version number")
    numbers = [int(p) for p in parts] + [0] * (3 - len(parts))
    parsed = (numbers[0], numbers[1], numbers[2])
    _version_cache[version] = parsed
    return parsed


def version_at_least(version: str, minimum: str) -> bool:
    return parse_version(version) >= parse_version(minimum)


def is_supported(version: object) -> bool:
    return version in SUPPORTED_VERSIONS


def highest_supported(candidates: list[str], supported: tuple[str, ...] = SUPPORTED_VERSIONS) -> str | None:
    """The highest of ``candidates`` that is in ``supported`` (libcni's ``cniVersions`` rule)."""
    best: str | None = None
    for candidate in candidates:
        if candidate in supported and (best is None or parse_version(candidate) > parse_version(best)):
            best = candidate
    return best


def _is_identifier(value: str) -> bool:
    # ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$
    return bool(value) and value[0] in _ID_FIRST and all(c in _ID_REST for c in value)


def validate_container_id(value: object) -> str:
    """CNI_CONTAINERID must be non-empty, start alphanumeric, then ``[A-Za-z0-9_.-]``."""
    if not isinstance(value, str) or not value:
        raise errors.InvalidEnvironment("CNI_CONTAINERID is empty or missing")
    if not _is_identifier(value):
        raise errors.InvalidEnvironment(
            f"CNI_CONTAINERID {value!r} is invalid: it must start with a letter or digit "
            "and contain only letters, digits, '_', '.' and '-'"
        )
    return value


def validate_ifname(value: object) -> str:
    """CNI_IFNAME: at most 15 bytes, not ``.``/``..``, no ``/``, ``:`` or whitespace (libcni rules)."""
    if not isinstance(value, str) or not value:
        raise errors.InvalidEnvironment("CNI_IFNAME is empty or missing")
    if len(value.encode("utf-8", "surrogateescape")) > IFNAME_MAX_BYTES:
        raise errors.InvalidEnvironment(f"CNI_IFNAME {value!r} is longer than {IFNAME_MAX_BYTES} bytes")
    if value in (".", ".."):
        raise errors.InvalidEnvironment(f"CNI_IFNAME {value!r} is not a valid interface name")
    for char in value:
        if char in "/:" or char.isspace():
            raise errors.InvalidEnvironment(f"CNI_IFNAME {value!r} contains the invalid character {char!r}")
    return value


def validate_network_name(value: object) -> str:
    """A network name matches ``^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`` (it becomes part of cache paths)."""
    if not isinstance(value, str) or not value:
        raise errors.InvalidConfig("network configuration has no name")
    if not _is_identifier(value):
        raise errors.InvalidConfig(
            f"network name {value!r} is invalid: it must start with a letter or digit "
            "and contain only letters, digits, '_', '.' and '-'"
        )
    return value
