"""A CNI request read from the environment and stdin, with skel's per-command required table."""

from __future__ import annotations

from pymultus import errors
from pymultus.cni import spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

# Which CNI_* variables each command needs (CNI spec 1.1 §"Parameters"; CNI_PATH is optional
# everywhere: a runtime that relies on absolute plugin paths need not set it).
REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    spec.ADD: ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    spec.CHECK: ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    spec.DEL: ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME"),
    spec.GC: ("CNI_COMMAND",),
    spec.STATUS: ("CNI_COMMAND",),
    spec.VERSION: ("CNI_COMMAND",),
}


_VARIABLES = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")


def _check_value(name: str, value: str) -> None:
    """A value a delegate can be given in its environment. A real process environment cannot
    hold anything else, but the thick daemon's ``/cni`` body is JSON and can."""
    if "\x00" in value:
        raise errors.InvalidEnvironment(f"{name} contains a NUL character")
    try:
        value.encode("utf-8", "surrogateescape")  # what os.fsencode does for execve
    except UnicodeEncodeError:
        raise errors.InvalidEnvironment(
            f"{name} contains a lone surrogate, which is not valid text"
        ) from None


def parse_cni_args(raw: str) -> list[tuple[str, str]]:
    """``K=V;K=V`` as pairs, in order. Empty segments (a trailing ``;``) are ignored."""
    pairs: list[tuple[str, str]] = []
    if not raw:
        return pairs
    for segment in raw.split(";"):
        if not segment:
            continue
        key, sep, value = segment.partition("=")
        if not sep or not key or key.strip() != key:
            raise errors.InvalidEnvironment(
                f"CNI_ARGS has the malformed pair {segment!r}; expected KEY=VALUE"
            )
        pairs.append((key, value))
    return pairs


def format_cni_args(pairs: list[tuple[str, str]]) -> str:
    return ";".join(f"{key}={value}" for key, value in pairs)


def split_path(raw: str) -> tuple[str, ...]:
    return tuple(part for part in raw.split(":") if part)


class CniRequest:
    """One invocation of a CNI plugin: the validated CNI_* variables and the config bytes."""

    __slots__ = ("args", "args_raw", "command", "config", "container_id", "ifname", "netns", "path")

    def __init__(
        self,
        *,
        command: str,
        container_id: str = "",
        netns: str = "",
        ifname: str = "",
        args: list[tuple[str, str]] | None = None,
        args_raw: str = "",
        path: tuple[str, ...] = (),
        config: bytes = b"",
    ) -> None:
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args = args if args is not None else []
        self.args_raw = args_raw
        self.path = path
        self.config = config

    @classmethod
    def from_env(cls, env: Mapping[str, str], stdin: bytes) -> CniRequest:
        command = env.get("CNI_COMMAND", "")
        if not command:
            raise errors.InvalidEnvironment("CNI_COMMAND is not set")
        required = REQUIRED_ENV.get(command)
        if required is None:
            raise errors.InvalidEnvironment(f"CNI_COMMAND {command!r} is not a known CNI command")
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise errors.InvalidEnvironment(
                f"required environment variable{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)} missing for {command}"
            )
        for name in _VARIABLES:
            _check_value(name, env.get(name, ""))
        container_id = env.get("CNI_CONTAINERID", "")
        if container_id:
            spec.validate_container_id(container_id)
        ifname = env.get("CNI_IFNAME", "")
        if ifname:
            spec.validate_ifname(ifname)
        args_raw = env.get("CNI_ARGS", "")
        return cls(
            command=command,
            container_id=container_id,
            netns=env.get("CNI_NETNS", ""),
            ifname=ifname,
            args=parse_cni_args(args_raw),
            args_raw=args_raw,
            path=split_path(env.get("CNI_PATH", "")),
            config=stdin,
        )

    def arg(self, key: str) -> str | None:
        """The value of ``key`` in CNI_ARGS (the last one wins, as in libcni's LoadArgs)."""
        found: str | None = None
        for name, value in self.args:
            if name == key:
                found = value
        return found

    def __repr__(self) -> str:
        return (
            f"CniRequest(command={self.command!r}, container_id={self.container_id!r}, "
            f"netns={self.netns!r}, ifname={self.ifname!r}, args={self.args!r})"
        )
