"""Fuzz: the real ``multus`` executable (thin mode), as a runtime runs it: CNI_* variables in the
environment (including bytes that are not UTF-8), the Multus conf on stdin.

Every run ends with exit 0, or exit 1 and a CNI error object with a code other than 999 on stdout;
never a traceback on stderr. The confs name empty directories for ``binDir``, ``cniDir`` and
``confDir`` and no ``CNI_PATH`` is given, so no delegate can run; ADD never gets a real network
namespace, and GC (which removes what is not listed) is not sent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pymultus.install.launcher import ENTRY_POINTS, default_python, default_sys_path, write_launcher
from tests.fuzz import strategies as fs
from tests.fuzz.invariants import check_cni_error
from tests.fuzz.test_configs import MULTUS_KEYS, multus_confs

SAFE_DIRS = ("binDir", "cniDir", "confDir")


@pytest.fixture(scope="module")
def node() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="pymultus-fuzz-thin-"))
    try:
        for sub in SAFE_DIRS:
            (root / sub).mkdir()
        write_launcher(
            str(root / "multus"),
            entry_module=ENTRY_POINTS["multus"],
            python=default_python(),
            sys_path=default_sys_path(),
        )
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _environment_value(text: str) -> bool:
    """What a process environment can hold: no NUL; lone surrogates only as undecodable bytes."""
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


env_text = fs.tricky_text.filter(_environment_value)


USUAL_ENV = {
    "CNI_COMMAND": st.sampled_from(["ADD", "DEL", "CHECK", "STATUS", "VERSION"]),
    "CNI_CONTAINERID": st.text("0123456789abcdef", min_size=1, max_size=64),
    "CNI_NETNS": st.just("/var/run/netns/pymultus-fuzz-absent"),
    "CNI_IFNAME": st.sampled_from(["eth0", "net1"]),
    "CNI_ARGS": st.just("K8S_POD_NAMESPACE=default;K8S_POD_NAME=p"),
}


@st.composite
def envs(draw: st.DrawFn) -> dict[str, str]:
    """A runtime's environment with at most one odd variable (odd text, or missing), so that
    most runs get past the environment to the conf and the engine."""
    env = {name: draw(values) for name, values in USUAL_ENV.items()}
    odd = draw(st.sampled_from([None, None, None, *USUAL_ENV]))
    if odd is not None:
        if draw(st.integers(0, 3)) == 0:
            del env[odd]
        else:
            env[odd] = draw(env_text)
    if env.get("CNI_COMMAND", "").upper() == "GC":
        env["CNI_COMMAND"] = "STATUS"
    return env


confs = st.one_of(
    multus_confs, fs.mutated_documents(multus_confs, [k for k in MULTUS_KEYS if k not in SAFE_DIRS])
)


@settings(max_examples=max(20, settings.default.max_examples // 4))  # a process per example
@given(envs(), confs, st.booleans())
def test_thin_plugin(node: Path, env: dict[str, str], conf: dict[str, object], extra_line: bool) -> None:
    conf = {**conf, **{key: str(node / key) for key in SAFE_DIRS}}
    stdin = json.dumps(conf).encode() + (b"\n" if extra_line else b"")
    proc = subprocess.run(
        [str(node / "multus")],
        input=stdin,
        capture_output=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        timeout=120,
        check=False,
    )
    stderr = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr[-3000:]
    if proc.returncode == 0:
        if proc.stdout.strip():
            assert isinstance(json.loads(proc.stdout), dict)
        return
    assert proc.returncode == 1, (proc.returncode, stderr[-2000:])
    check_cni_error(json.loads(proc.stdout))
    assert not os.listdir(node / "binDir"), "nothing may install a plugin"
