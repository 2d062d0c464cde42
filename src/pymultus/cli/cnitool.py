"""``pymultus cni``: run a CNI network from a conf directory against a namespace (like cnitool).

    pymultus cni add|check|del|gc|status NETWORK [NETNS] [options]

NETWORK is the ``name`` of a configuration in the conf directory (or a path to a conf file);
NETNS a path or a name under /var/run/netns. Plugins come from ``CNI_PATH`` (default
``/opt/cni/bin:/usr/lib/cni``). The ADD result is printed as JSON in the network's version; an error
is printed as a CNI error object and the exit status is 1.

The arguments are parsed by hand, not with argparse: this command is also the benchmark's way into
``pymultus.cni`` and argparse (with ``re`` and ``gettext``) costs more start-up than the rest of it.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from pymultus.cni.netconf import NetworkConfig

DEFAULT_CNI_PATH = "/opt/cni/bin:/usr/lib/cni"
DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_CACHE_DIR = "/var/lib/cni"
NETNS_DIR = "/var/run/netns"
VERBS = ("add", "check", "del", "gc", "status")
USAGE = """\
usage: pymultus cni {add,check,del,gc,status} NETWORK [NETNS] [options]

Run the CNI network NETWORK (a name in the conf directory, or a conf file path) for the network
namespace NETNS (a path, or a name under /var/run/netns; not needed for gc and status).
Plugins are searched in CNI_PATH (default /opt/cni/bin:/usr/lib/cni).

options:
  --ifname NAME              interface name inside the namespace (default eth0)
  --args K=V;K=V             CNI_ARGS for the plugins
  --capability-args JSON     capability arguments, e.g. '{"portMappings": [...]}'
  --container-id ID          container ID (default: derived from NETNS, as cnitool does)
  --conf-dir DIR             network configuration directory (default $NETCONFPATH or /etc/cni/net.d)
  --cache-dir DIR            libcni result cache directory (default /var/lib/cni)
  --timeout SECONDS          per-plugin timeout (default 60)
  --valid-attachments JSON   gc: [{"containerID": ..., "ifname": ...}] to keep (default: none)
  -h, --help                 show this help
"""
_VALUE_OPTIONS = (
    "--ifname",
    "--args",
    "--capability-args",
    "--container-id",
    "--conf-dir",
    "--cache-dir",
    "--timeout",
    "--valid-attachments",
)


class UsageError(Exception):
    pass


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    import argparse

    parser = subparsers.add_parser(
        "cni",
        help="run a CNI network (add/check/del/gc/status) against a network namespace",
        add_help=False,
        usage="pymultus cni {add,check,del,gc,status} NETWORK [NETNS] [options]",
    )
    # Everything after "cni" goes to the hand-written parser below (see the module docstring).
    # (argparse's REMAINDER only starts at the verb, so -h before it is declared here.)
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=lambda args: main(["--help"] if args.help else args.argv))


def parse(argv: Sequence[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    positionals: list[str] = []
    tokens = list(argv)
    index = 0
    while index < len(tokens):
        arg = tokens[index]
        index += 1
        if arg in ("-h", "--help"):
            options["help"] = "1"
            continue
        if arg.startswith("--") and arg != "--":
            name, eq, value = arg.partition("=")
            if name not in _VALUE_OPTIONS:
                raise UsageError(f"unknown option {name}")
            if not eq:
                if index >= len(tokens):
                    raise UsageError(f"option {name} needs a value")
                value = tokens[index]
                index += 1
            options[name[2:]] = value
            continue
        positionals.append(arg)
    if "help" in options:
        return options
    if not positionals or positionals[0] not in VERBS:
        raise UsageError(f"the first argument must be one of {', '.join(VERBS)}")
    verb = positionals[0]
    needed = 2 if verb in ("gc", "status") else 3
    if not needed <= len(positionals) <= 3:
        raise UsageError(f"{verb} takes NETWORK{'' if needed == 2 else ' NETNS'}")
    options["verb"] = verb
    options["network"] = positionals[1]
    if len(positionals) == 3:
        options["netns"] = positionals[2]
    return options


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options = parse(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        sys.stderr.write(f"{USAGE}\npymultus cni: error: {exc}\n")
        return 2
    if "help" in options:
        sys.stdout.write(USAGE)
        return 0
    from pymultus import jsonio
    from pymultus.cni import spec
    from pymultus.errors import MultusError

    version = spec.CURRENT_VERSION
    try:
        net = _load_network(options)
        version = net.cni_version
        output = _run(options, net)
    except MultusError as exc:
        sys.stdout.write(jsonio.dumps(exc.to_cni_error(version)) + "\n")
        return 1
    if output is not None:
        sys.stdout.write(jsonio.dumps(output) + "\n")
    return 0


def _load_network(options: dict[str, str]) -> NetworkConfig:
    from pymultus.cni import netconf
    from pymultus.errors import NetworkNotFound

    name = options["network"]
    if "/" in name:
        return netconf.load_file(name)
    conf_dir = options.get("conf-dir") or os.environ.get("NETCONFPATH") or DEFAULT_CONF_DIR
    skipped: list[tuple[str, str]] = []
    net = netconf.load_by_name(conf_dir, name, skipped=skipped)
    if net is None:
        details = "; ".join(f"skipped {path}: {why}" for path, why in skipped)
        raise NetworkNotFound(f"network {name!r} was not found in {conf_dir}", details=details)
    return net


def _run(options: dict[str, str], net: NetworkConfig) -> dict[str, object] | None:
    from pymultus import jsonio
    from pymultus.cni import chain, invoke, request
    from pymultus.errors import InvalidEnvironment

    search_path = request.split_path(os.environ.get("CNI_PATH") or DEFAULT_CNI_PATH)
    timeout = _timeout(options.get("timeout", ""))
    executor = invoke.PluginExecutor(base_env=os.environ, timeout=timeout)
    cni = chain.CNIConfig(
        search_path=search_path, executor=executor, cache_dir=options.get("cache-dir") or DEFAULT_CACHE_DIR
    )
    verb = options["verb"]
    if verb == "status":
        cni.get_status_network_list(net)
        return None
    if verb == "gc":
        valid = _valid_attachments(options.get("valid-attachments", "[]"))
        cni.gc_network_list(net, valid)
        return None
    netns = _netns_path(options["netns"])
    if verb in ("add", "check") and not os.path.exists(netns):
        raise InvalidEnvironment(f"network namespace {netns} does not exist")
    capability_args: dict[str, object] = {}
    if options.get("capability-args"):
        capability_args = jsonio.loads_object(options["capability-args"], what="--capability-args")
    rt = chain.RuntimeConf(
        container_id=options.get("container-id") or _container_id(netns),
        netns=netns,
        ifname=options.get("ifname") or "eth0",
        args=request.parse_cni_args(options.get("args", "")),
        capability_args=capability_args,
    )
    if verb == "add":
        return cni.add_network_list(net, rt).to_version(net.cni_version)
    if verb == "check":
        cni.check_network_list(net, rt)
    else:
        cni.del_network_list(net, rt)
    return None


def _netns_path(value: str) -> str:
    return value if "/" in value else os.path.join(NETNS_DIR, value)


def _container_id(netns: str) -> str:
    """cnitool's default: ``cni-`` and the first 10 bytes of SHA-512 of the netns path, in hex."""
    import hashlib

    return "cni-" + hashlib.sha512(netns.encode()).hexdigest()[:20]


def _timeout(raw: str) -> float:
    from pymultus.errors import InvalidConfig

    if not raw:
        return 60.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InvalidConfig(f"--timeout {raw!r} is not a positive number of seconds")
    return value


def _valid_attachments(raw: str) -> list[dict[str, str]]:
    from pymultus import jsonio
    from pymultus.errors import InvalidConfig

    value = jsonio.loads(raw, what="--valid-attachments")
    if not isinstance(value, list) or not all(
        isinstance(item, dict)
        and isinstance(item.get("containerID"), str)
        and isinstance(item.get("ifname"), str)
        for item in value
    ):
        raise InvalidConfig('--valid-attachments must be a list of {"containerID": ..., "ifname": ...}')
    return [{"containerID": item["containerID"], "ifname": item["ifname"]} for item in value]


if __name__ == "__main__":
    sys.exit(main())
