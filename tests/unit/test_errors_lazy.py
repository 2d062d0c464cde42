"""pymultus.errors builds its condition classes on first use (pymultus.errors.kinds)."""

from __future__ import annotations

import subprocess
import sys

import pymultus.errors
import pymultus.errors.kinds
from pymultus import errors


def test_every_class_of_kinds_is_reachable_from_errors() -> None:
    defined = {
        name
        for name, value in vars(pymultus.errors.kinds).items()
        if isinstance(value, type)
        and issubclass(value, errors.MultusError)
        and value.__module__ == "pymultus.errors.kinds"
    }
    assert defined == errors._KINDS
    for name in defined:
        assert getattr(errors, name) is getattr(pymultus.errors.kinds, name)


def test_an_unknown_name_is_an_attribute_error_not_an_import() -> None:
    assert not hasattr(errors, "NoSuchError")
    assert not hasattr(errors, "kinds_of_nothing")


def test_importing_errors_builds_no_condition_class_until_one_is_named() -> None:
    script = (
        "import sys\n"
        "import pymultus.errors as errors\n"
        "print('pymultus.errors.kinds' in sys.modules)\n"
        "try:\n"
        "    raise errors.InterfaceExists('x')\n"
        "except errors.InvalidConfig as exc:\n"
        "    print('pymultus.errors.kinds' in sys.modules, exc.code, isinstance(exc, errors.MultusError))\n"
        "from pymultus.errors import NetworkNotFound\n"
        "print(NetworkNotFound is errors.NetworkNotFound)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["False", "True 7 True", "True"]
