"""Does the kernel support the link types of the plugins in use? Probed, not guessed.

``/sys/module/<name>`` exists only for modules that are loaded or built in *with parameters*
(this machine's built-in macvlan has no entry), and ``/lib/modules`` is often absent in
containers, so a missing entry proves nothing. The probe creates each link type in a throw-away
network namespace with ip(8) (which also makes the kernel auto-load a loadable module) and
deletes the namespace. Needs root; without it the check says it cannot tell.
"""

from __future__ import annotations

import os
import subprocess

from pymultus.ops.doctor import FAIL, PASS, WARN, Check

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# plugin type -> ``ip link add`` arguments of a link of its kind, on a veth parent "p0".
LINK_KINDS: dict[str, tuple[str, ...]] = {
    "bridge": ("type", "bridge"),
    "macvlan": ("link", "p0", "type", "macvlan", "mode", "bridge"),
    "ipvlan": ("link", "p0", "type", "ipvlan", "mode", "l2"),
    "vlan": ("link", "p0", "type", "vlan", "id", "42"),
    "vrf": ("type", "vrf", "table", "4242"),
    "ptp": (),  # veth only: the parent itself
}


def kernel_check(used: Iterable[str], defined: Iterable[str] = ()) -> Check:
    """FAIL when a link type in use on this node is unsupported; WARN when only a defined NAD
    needs it (pods attached to that NAD would fail here)."""
    in_use = set(used)
    wanted = in_use | set(defined)
    kinds = sorted(kind for kind in LINK_KINDS if kind in wanted)
    if not kinds:
        return Check("kernel", PASS, "no plugin in use needs a special link type")
    if os.geteuid() != 0:
        return Check("kernel", WARN, f"cannot probe {', '.join(kinds)} without root")
    unsupported, supported = probe(kinds)
    if unsupported:
        text = "; ".join(f"{kind}: {why}" for kind, why in unsupported.items())
        return Check("kernel", FAIL if set(unsupported) & in_use else WARN, text)
    return Check("kernel", PASS, f"link types supported: {', '.join(supported)}")


def probe(kinds: list[str]) -> tuple[dict[str, str], list[str]]:
    """({kind: why unsupported}, [supported kinds])."""
    name = f"pymultus-doctor-{os.getpid()}"
    unsupported: dict[str, str] = {}
    supported: list[str] = []
    _ip("netns", "add", name)
    try:
        parent = _ip("-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
        for kind in kinds:
            if parent:
                unsupported[kind] = f"veth links cannot be created ({parent})"
                continue
            error = _ip("-n", name, "link", "add", f"t-{kind}", *LINK_KINDS[kind]) if LINK_KINDS[kind] else ""
            if error:
                unsupported[kind] = f"the kernel refuses a {kind} link ({error})"
            else:
                supported.append(kind)
    finally:
        _ip("netns", "delete", name)
    return unsupported, supported


def _ip(*args: str) -> str:
    """Run ip(8); the last line of its error output, "" on success."""
    try:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode == 0:
        return ""
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit code {proc.returncode}"
