"""install.codearchive: the thin plugin's modules from one compiled file, never stale, never required.

Each case runs a real ``python -IS`` launcher (as the runtime execs ``multus``) in a subprocess:
the archive's effect is process-wide (``builtins.__import__``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import pymultus
from pymultus.install import codearchive
from pymultus.install.launcher import default_python, default_sys_path, launcher_text, write_launcher

SRC = str(Path(pymultus.__file__).resolve().parents[1])

# Prints, as JSON, where each named module came from: "archive" (executed by the archive's
# loader: no importlib loader) or "import" (the normal import system).
_REPORT = """\
import json
names = {names!r}
for name in names:
    __import__(name)
print(json.dumps({{n: "archive" if sys.modules[n].__loader__ is None else "import" for n in names}}))
"""


def _run(
    tmp_path: Path, body: str, *, archive: str | None, sys_path: list[str]
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "launcher"
    text = launcher_text("json", python=default_python(), sys_path=sys_path, archive=archive)
    # The launcher's own entry lines import ``main`` from the entry module; run ``body`` instead.
    head = text.split("from json import main")[0]
    script.write_text(head + body)
    script.chmod(0o755)
    return subprocess.run([str(script)], capture_output=True, text=True, check=False, env={}, timeout=60)


def _copy_package(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    shutil.copytree(Path(SRC) / "pymultus", root / "pymultus", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_the_thin_plugins_modules_come_from_the_archive(tmp_path: Path) -> None:
    archive = str(tmp_path / ".multus.code")
    assert codearchive.build(archive, SRC) is True
    assert codearchive.build(archive, SRC) is False  # unchanged source: unchanged archive
    names = [
        "pymultus.cli.thin",
        "pymultus.attach.service",
        "pymultus.attach.add",
        "pymultus.attach.delete",
        "pymultus.kube.client",
        "pymultus.kube.kubeyaml",
        "pymultus.cli.shim",
        "pymultus.daemon.app",  # not a CNI executable's: imported normally
    ]
    out = _run(tmp_path, _REPORT.format(names=names), archive=archive, sys_path=default_sys_path())
    assert out.returncode == 0, out.stderr
    origin = json.loads(out.stdout)
    assert {name for name, where in origin.items() if where == "import"} == {"pymultus.daemon.app"}


def test_an_edited_module_is_imported_from_its_source_not_from_the_archive(tmp_path: Path) -> None:
    root = _copy_package(tmp_path)
    archive = str(tmp_path / ".multus.code")
    codearchive.build(archive, str(root))
    errors_py = root / "pymultus" / "errors" / "__init__.py"
    errors_py.write_text(errors_py.read_text() + "\nEDITED_AFTER_THE_BUILD = True\n")
    body = (
        "import pymultus.errors, pymultus.jsonio\n"
        "print(pymultus.errors.EDITED_AFTER_THE_BUILD, pymultus.errors.__loader__ is None, "
        "pymultus.jsonio.__loader__ is None)\n"
    )
    out = _run(tmp_path, body, archive=archive, sys_path=[str(root)])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "True"]  # errors from source, jsonio from the archive


@pytest.mark.parametrize(
    "damage", ["missing", "truncated", "other-python", "garbage", "head-past-end", "fifo", "directory"]
)
def test_a_missing_or_foreign_archive_leaves_plain_imports(tmp_path: Path, damage: str) -> None:
    archive = tmp_path / ".multus.code"
    codearchive.build(str(archive), SRC)
    data = archive.read_bytes()
    if damage in ("missing", "fifo", "directory"):
        archive.unlink()
        if damage == "fifo":
            os.mkfifo(archive)  # the open must not wait for a writer
        elif damage == "directory":
            archive.mkdir()
    elif damage == "truncated":
        archive.write_bytes(data[: len(data) // 2])
    elif damage == "other-python":
        archive.write_bytes(b"\x00\x00\r\n" + data[4:])
    elif damage == "head-past-end":  # a length nothing should allocate
        archive.write_bytes(data[:4] + (0xFFFFFFF0).to_bytes(4, "little") + data[8:])
    else:
        archive.write_bytes(data[:4] + os.urandom(256))
    names = ["pymultus.cli.thin", "pymultus.attach.service"]
    out = _run(tmp_path, _REPORT.format(names=names), archive=str(archive), sys_path=[SRC])
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout).values()) == {"import"}


def _fake_package(tmp_path: Path, files: dict[str, str]) -> tuple[Path, str]:
    root = tmp_path / "fake"
    for name, text in {"__init__.py": "", **files}.items():
        (root / "pymultus" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "pymultus" / name).write_text(text)
    archive = str(tmp_path / "fake.code")
    codearchive.build(archive, str(root))
    return root, archive


def test_import_semantics_are_importlibs(tmp_path: Path) -> None:
    """Circular imports see the partly initialised module; a failing module is not left in
    sys.modules and fails again; submodules are bound on their package; a missing name is an
    ImportError; a module not in the archive is found by the import system."""
    root, archive = _fake_package(
        tmp_path,
        {
            "a.py": "import pymultus.b\nVALUE = 'a'\n",
            "b.py": "import sys\nimport pymultus.a\nSEEN = hasattr(sys.modules['pymultus.a'], 'VALUE')\n",
            "broken.py": "raise RuntimeError('boom')\n",
            "pkg/__init__.py": "",
            "pkg/sub.py": "X = 1\n",
        },
    )
    (root / "pymultus" / "late.py").write_text("Y = 2\n")  # created after the build
    body = (
        "import pymultus.a, pymultus.b\n"
        "print(pymultus.b.SEEN, pymultus.a.VALUE)\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        import pymultus.broken\n"
        "    except RuntimeError as exc:\n"
        "        print(exc, 'pymultus.broken' in sys.modules)\n"
        "from pymultus.pkg import sub\n"
        "import pymultus.pkg.sub as alias\n"
        "print(sub.X, alias is sub, pymultus.pkg.sub is sub, sub.__package__)\n"
        "print(pymultus.pkg.__path__[0].endswith('pkg'), pymultus.pkg.__package__)\n"
        "try:\n"
        "    from pymultus.pkg import nothing\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__)\n"
        "import pymultus.late\n"
        "print(pymultus.late.Y)\n"
    )
    served = _run(tmp_path, body, archive=archive, sys_path=[str(root)])
    assert served.returncode == 0, served.stderr
    assert served.stdout.splitlines() == [
        "False a",
        "boom False",
        "boom False",
        "1 True True pymultus.pkg",
        "True pymultus.pkg",
        "ImportError",
        "2",
    ]
    plain = _run(tmp_path, body, archive=None, sys_path=[str(root)])
    assert plain.stdout == served.stdout  # what the import system itself does


def test_a_thread_importing_a_module_being_loaded_waits_for_it(tmp_path: Path) -> None:
    _, archive = _fake_package(
        tmp_path,
        {
            # The main thread is inside slow's code when the other thread imports it.
            "slow.py": (
                "import _thread\nimport pymultus.gate as gate\n"
                "def other():\n"
                "    try:\n"
                "        import pymultus.slow\n"
                "        gate.seen.append(pymultus.slow.DONE)\n"
                "    except Exception as exc:\n"
                "        gate.seen.append(repr(exc))\n"
                "    finally:\n"
                "        gate.finished.release()\n"
                "gate.finished.acquire()\n"
                "_thread.start_new_thread(other, ())\n"
                "import time\ntime.sleep(0.2)\n"
                "DONE = True\n"
            ),
            "gate.py": "import _thread\nseen = []\nfinished = _thread.allocate_lock()\n",
        },
    )
    body = (
        "import pymultus.slow, pymultus.gate\npymultus.gate.finished.acquire()\nprint(pymultus.gate.seen)\n"
    )
    out = _run(tmp_path, body, archive=archive, sys_path=[str(tmp_path / "fake")])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[True]"


def test_write_launcher_builds_the_archive_it_names(tmp_path: Path) -> None:
    path = tmp_path / "bin" / "multus"
    path.parent.mkdir()
    archive = str(tmp_path / "bin" / codearchive.ARCHIVE_NAME)
    write_launcher(
        str(path), entry_module="pymultus.cli.thin", python=default_python(), sys_path=[SRC], archive=archive
    )
    assert os.path.isfile(archive)
    assert f"posix.open({archive!r}," in path.read_text()
    version = subprocess.run(
        [str(path)], input=b"{}", env={"CNI_COMMAND": "VERSION"}, capture_output=True, check=False
    )
    assert version.returncode == 0, version.stderr
    assert "supportedVersions" in json.loads(version.stdout)


def test_recorded_root_is_where_the_sources_are_checked_at_run_time(tmp_path: Path) -> None:
    """The installer builds through its own mount of the host's bin dir (``staged``) and records
    the host's path (``host``): the launcher on the host checks and serves the host's files."""
    staged = _copy_package(tmp_path)
    host = tmp_path / "host"
    shutil.copytree(staged, host)  # copy2: same sizes and mtime_ns, as one directory seen twice
    archive = str(tmp_path / ".multus.code")
    codearchive.build(archive, str(staged), recorded_root=str(host))
    names = ["pymultus.cli.thin", "pymultus.attach.service"]
    served = _run(tmp_path, _REPORT.format(names=names), archive=archive, sys_path=[str(host)])
    assert served.returncode == 0, served.stderr
    assert set(json.loads(served.stdout).values()) == {"archive"}
    shutil.rmtree(staged)  # nothing is read from the build-time path
    again = _run(tmp_path, _REPORT.format(names=names), archive=archive, sys_path=[str(host)])
    assert set(json.loads(again.stdout).values()) == {"archive"}


def test_the_launcher_runs_its_one_request_without_the_cyclic_collector(tmp_path: Path) -> None:
    out = _run(tmp_path, "import gc\nprint(gc.isenabled())\n", archive=None, sys_path=[SRC])
    assert (out.returncode, out.stdout) == (0, "False\n"), out.stderr


def test_the_stdlib_extensions_of_the_hot_path_load_without_a_path_search(tmp_path: Path) -> None:
    """``_json`` comes straight from ``lib-dynload``: the import system never listed the
    package's and the dependencies' directories for it (no path finder was made for them)."""
    archive = str(tmp_path / ".multus.code")
    codearchive.build(archive, SRC)
    body = (
        "import _json\n"
        "print(_json.__spec__.origin.rpartition('/')[0].endswith('/lib-dynload'))\n"
        "print(any(p in sys.path_importer_cache for p in sys.path[:2]), callable(_json.make_scanner))\n"
    )
    served = _run(tmp_path, body, archive=archive, sys_path=default_sys_path())
    assert served.returncode == 0, served.stderr
    assert served.stdout.split() == ["True", "False", "True"]
    plain = _run(tmp_path, body, archive=None, sys_path=default_sys_path())
    assert plain.stdout.split() == ["True", "True", "True"]  # the search it saves


def test_an_index_larger_than_the_launchers_first_read_is_read_whole(tmp_path: Path) -> None:
    """The launcher reads the first 64 KiB; an index past that is read by the loader itself."""
    files = {f"m{number:04}_{'x' * 100}.py": f"VALUE = {number}\n" for number in range(600)}
    root, archive = _fake_package(tmp_path, files)
    data = Path(archive).read_bytes()
    assert int.from_bytes(data[4:8], "little") > 65536  # the head
    names = ["pymultus.m0000_" + "x" * 100, "pymultus.m0599_" + "x" * 100]
    out = _run(tmp_path, _REPORT.format(names=names), archive=archive, sys_path=[str(root)])
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout).values()) == {"archive"}


def test_served_functions_carry_no_annotations_and_classes_keep_theirs(tmp_path: Path) -> None:
    """Function annotations are for mypy: the archive drops them (``x: T = v`` keeps ``x = v``);
    class bodies keep theirs (a dataclass or NamedTuple is built from them)."""
    module = (
        "from __future__ import annotations\n"
        "import dataclasses\n"
        "class A:\n    code: int = 3\n    name: str\n"
        "@dataclasses.dataclass\nclass D:\n    x: int\n    y: str = 'y'\n"
        "def f(x: int, /, *rest: str, y: Missing = 1, **more: bytes) -> int:\n"
        "    total: int = x + y\n"
        "    class Local:\n        kept: int\n"
        "    return total + len(Local.__annotations__)\n"
        "async def g(x: int) -> None:\n    pass\n"
    )
    root, archive = _fake_package(tmp_path, {"annotated.py": module})
    body = (
        "import pymultus.annotated as m\n"
        "print(m.__loader__ is None, m.A.code, hasattr(m.A, 'name'), m.A.__annotations__, m.f(2),"
        " m.f.__annotations__, m.g.__annotations__, m.D(1))\n"
    )
    out = _run(tmp_path, body, archive=archive, sys_path=[str(root)])
    expected = "True 3 False {'code': 'int', 'name': 'str'} 4 {} {} D(x=1, y='y')\n"
    assert (out.returncode, out.stdout) == (0, expected), out.stderr


def test_built_in_modules_are_created_as_importlib_creates_them(tmp_path: Path) -> None:
    archive = str(tmp_path / ".multus.code")
    codearchive.build(archive, SRC)
    body = (
        "import importlib, importlib.machinery\n"
        "import _struct, fcntl\n"
        "from select import poll\n"
        "import select\n"
        "print(_struct.__spec__.origin, _struct.__loader__ is importlib.machinery.BuiltinImporter,"
        " sys.modules['fcntl'] is fcntl, callable(poll), select.__spec__.name,"
        " importlib.reload(_struct) is _struct, _struct.pack('<H', 1))\n"
    )
    out = _run(tmp_path, body, archive=archive, sys_path=default_sys_path())
    expected = "built-in True True True select True b'\\x01\\x00'\n"
    assert (out.returncode, out.stdout) == (0, expected), out.stderr
