"""The least a Python thin plugin can do: exec its delegates, nothing else (thin_bench's bound row).

``thin_bench.py`` writes this file, with the delegates' confs filled in as bytes literals, as an
executable run by the same ``python -IS`` as ``multus``: it reads the runtime's stdin, execs the
``bridge`` delegates (ADD in order, DEL in reverse, ``CNI_IFNAME`` eth0, net1, ...) through
``posix_spawn`` with pipes, as ``multus`` does, prints the last result and leaves with
``_exit``. No JSON parsing, no caches, no lock, no checks: everything ``multus`` does besides
this is its own work, and what this row adds over the floor is what any Python plugin pays in
this harness (two interpreter starts and exits, the delegates exec'd from a fresh process, the
kernel's slower DEL of an attachment that is no longer brand new).
"""

import posix

CONFS: list[bytes] = []  # replaced by thin_bench.py
PLUGIN = ""  # replaced by thin_bench.py


def _run(conf: bytes, env: dict[bytes, bytes]) -> bytes:
    stdin_r, stdin_w = posix.pipe()
    stdout_r, stdout_w = posix.pipe()
    pid = posix.posix_spawn(
        PLUGIN,
        [PLUGIN],
        env,
        file_actions=[(posix.POSIX_SPAWN_DUP2, stdin_r, 0), (posix.POSIX_SPAWN_DUP2, stdout_w, 1)],
    )
    posix.close(stdin_r)
    posix.close(stdout_w)
    posix.write(stdin_w, conf)
    posix.close(stdin_w)
    chunks = []
    while chunk := posix.read(stdout_r, 65536):
        chunks.append(chunk)
    posix.close(stdout_r)
    _, status = posix.waitpid(pid, 0)
    if status:
        posix.write(1, b"".join(chunks))
        posix._exit(1)
    return b"".join(chunks)


def main() -> None:
    while posix.read(0, 65536):
        pass
    env = dict(posix.environ)
    order = list(enumerate(CONFS))
    if env[b"CNI_COMMAND"] == b"DEL":
        order.reverse()
    out = b""
    for index, conf in order:
        env[b"CNI_IFNAME"] = b"eth0" if index == 0 else b"net%d" % index
        out = _run(conf, env)
    posix.write(1, out)
    posix._exit(0)


main()
