"""A self-contained, relocatable CPython bundle for the ``multus``/``multus-shim`` executables.

The container runtime execs the CNI executables on the *host*, where Python may be missing or
too old. The bundle needs nothing from the host but the kernel and glibc (>= the version recorded
in ``BUNDLE.json``, computed from the symbol versions the bundled ELF files require):

```
pymultus-<version>-<digest>/
  bin/python3.11            the running interpreter's binary, RPATH $ORIGIN/../lib
  lib/python3.11/           the standard library (minus tests, GUI, build config) + __pycache__
  lib/python3.11/lib-dynload/  extension modules, RPATH $ORIGIN/../..
  lib/*.so.*                their non-glibc shared libraries (libssl, libcrypto, libz, ...)
  site/                     pymultus and its runtime dependencies, byte-compiled
  BUNDLE.json               versions, digest, minimum glibc
```

The interpreter finds its prefix by CPython's landmark search relative to its own location
(``<bundle>/lib/python3.11/os.py``), and its libraries through DT_RPATH (set with patchelf), so
neither ``PYTHONHOME`` nor ``LD_LIBRARY_PATH`` is needed. It is a plain directory tree: nothing is
unpacked per call, unlike a one-file bundle. The launchers are ``#!<bundle>/bin/python3.11 -IS``
scripts, so the kernel execs the bundled interpreter directly (no shell on the host either).

Installer code: not on the hot path, so it may import anything.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pymultus.errors import InvalidEnvironment, IOFailure
from pymultus.fileio import read_file

BUNDLE_SCHEMA = 1
BUNDLE_MARKER = "BUNDLE.json"
BUNDLE_PREFIX = "pymultus-"

# glibc's own libraries: taken from the host, never bundled (a glibc must match its own ld.so).
GLIBC_SONAMES = frozenset(
    {
        "linux-vdso.so.1",
        "linux-gate.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
        "ld-linux-armhf.so.3",
        "ld64.so.2",
        "libc.so.6",
        "libm.so.6",
        "libmvec.so.1",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libutil.so.1",
        "libresolv.so.2",
        "libanl.so.1",
        "libBrokenLocale.so.1",
        "libthread_db.so.1",
    }
)
# Standard library parts the CNI executables never use; left out to keep the bundle small.
STDLIB_EXCLUDED = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "pydoc_data",
        "distutils",
        "venv",
        "site-packages",
        "dist-packages",
        "lib-dynload",  # copied separately, filtered
    }
)
# Extension modules with heavy or GUI/terminal dependencies (ncurses, readline, Kerberos via nis,
# Berkeley DB) or that exist only for CPython's own tests. (sqlite3 stays: ``import pyroute2``
# imports it.)
DYNLOAD_EXCLUDED_PREFIXES = (
    "_test",
    "_ctypes_test",
    "_xxtestfuzz",
    "xxlimited",
    "_xxsubinterpreters",
    "_curses",
    "readline",
    "_dbm",
    "_gdbm",
    "_tkinter",
    "nis",
    "ossaudiodev",
    "_crypt",
    "spwd",
)
_GLIBC_VERSION = re.compile(rb"GLIBC_([0-9]+)\.([0-9]+)(?:\.([0-9]+))?\x00")
_LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(\S+)\s+\(0x[0-9a-f]+\)\s*$")
_ELF_MAGIC = b"\x7fELF"
_REQ_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class Bundle:
    """What ``BUNDLE.json`` says about one bundle directory."""

    __slots__ = ("digest", "min_glibc", "path", "pymultus_version", "python_version", "size")

    def __init__(
        self, path: str, *, digest: str, pymultus_version: str, python_version: str, min_glibc: str, size: int
    ) -> None:
        self.path = path
        self.digest = digest
        self.pymultus_version = pymultus_version
        self.python_version = python_version
        self.min_glibc = min_glibc
        self.size = size

    @property
    def python(self) -> str:
        """The bundled interpreter, relative to the bundle directory."""
        return f"bin/python{self.python_version.rsplit('.', 1)[0]}"

    @property
    def dir_name(self) -> str:
        return f"{BUNDLE_PREFIX}{self.pymultus_version}-{self.digest[:12]}"

    def to_json(self) -> dict[str, object]:
        return {
            "schema": BUNDLE_SCHEMA,
            "pymultus": self.pymultus_version,
            "python": self.python_version,
            "interpreter": self.python,
            "minGlibc": self.min_glibc,
            "digest": self.digest,
            "size": self.size,
        }


def read_bundle(path: str) -> Bundle:
    """Load ``<path>/BUNDLE.json``; a clear error when the directory is not a bundle."""
    marker = os.path.join(path, BUNDLE_MARKER)
    try:
        doc = json.loads(read_file(marker))
    except (OSError, ValueError) as exc:
        raise InvalidEnvironment(
            f"{path} is not a pymultus bundle: cannot read {BUNDLE_MARKER}: {exc}"
        ) from exc
    if not isinstance(doc, dict) or doc.get("schema") != BUNDLE_SCHEMA:
        raise InvalidEnvironment(f"{marker} has an unknown schema; rebuild the bundle with this pymultus")
    return Bundle(
        path,
        digest=str(doc["digest"]),
        pymultus_version=str(doc["pymultus"]),
        python_version=str(doc["python"]),
        min_glibc=str(doc["minGlibc"]),
        size=int(doc["size"]),
    )


def base_interpreter() -> str:
    """The real interpreter binary behind ``sys.executable`` (a venv's python is a symlink)."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def build_bundle(dest: str, *, patchelf: str | None = None, with_dependencies: bool = True) -> Bundle:
    """Build a bundle of the running interpreter and pymultus into the new directory ``dest``.

    ``dest`` must not exist; the caller renames it to :attr:`Bundle.dir_name` afterwards (the
    name carries the content digest, so an identical bundle is never installed twice).
    """
    patchelf = patchelf or shutil.which("patchelf")
    if not patchelf:
        raise InvalidEnvironment(
            "patchelf is needed to build the self-contained bundle; install it (Debian: patchelf) "
            "or use --python host:/path/to/python3"
        )
    if not sys.platform.startswith("linux"):
        raise InvalidEnvironment("the self-contained bundle is built on Linux only")
    root = Path(dest)
    root.mkdir(mode=0o755)
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    stdlib_src = Path(
        sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["stdlib"]
    )
    dynload_src = Path(str(sysconfig.get_config_var("DESTSHARED") or stdlib_src / "lib-dynload"))
    bin_dir, lib_dir = root / "bin", root / "lib"
    stdlib_dst = lib_dir / f"python{pyver}"
    dynload_dst = stdlib_dst / "lib-dynload"
    site_dst = root / "site"
    for d in (bin_dir, lib_dir, stdlib_dst, dynload_dst, site_dst):
        d.mkdir(mode=0o755, parents=True, exist_ok=True)

    interpreter = bin_dir / f"python{pyver}"
    shutil.copy2(base_interpreter(), interpreter)
    os.chmod(interpreter, 0o755)  # noqa: S103 - the runtime (root) and tools must exec it
    _copy_stdlib(stdlib_src, stdlib_dst)
    for so in sorted(dynload_src.glob("*.so")):
        if not so.name.startswith(DYNLOAD_EXCLUDED_PREFIXES):
            shutil.copy2(so, dynload_dst / so.name)
    _copy_pymultus(site_dst)
    if with_dependencies:
        for dist_name in _runtime_dependencies("pymultus"):
            _copy_distribution(dist_name, site_dst)
    _compile(site_dst)

    # Bundle the non-glibc libraries every ELF file needs, then point each file at them.
    elves = [p for p in _walk_files(root) if _is_elf(p)]
    libs: dict[str, Path] = {}
    for elf in elves:
        for soname, resolved in _ldd(elf).items():
            if soname not in GLIBC_SONAMES and soname not in libs:
                libs[soname] = resolved
    for soname, resolved in sorted(libs.items()):
        shutil.copy2(resolved, lib_dir / soname)
        os.chmod(lib_dir / soname, 0o755)  # noqa: S103 - shared libraries are mapped executable
    for elf in [*elves, *(lib_dir / soname for soname in libs)]:
        rpath = "$ORIGIN/" + os.path.relpath(lib_dir, elf.parent)
        if elf.parent == lib_dir:
            rpath = "$ORIGIN"
        # DT_RPATH, not DT_RUNPATH: it applies to indirect dependencies too and wins over the
        # host's LD_LIBRARY_PATH, so a runtime's environment cannot swap our libssl for another.
        _run([patchelf, "--force-rpath", "--set-rpath", rpath, str(elf)])

    min_glibc = max((_glibc_needed(p) for p in _walk_files(root) if _is_elf(p)), default=(2, 17, 0))
    digest, size = _digest(root)
    bundle = Bundle(
        str(root),
        digest=digest,
        pymultus_version=importlib.metadata.version("pymultus"),
        python_version=".".join(str(v) for v in sys.version_info[:3]),
        min_glibc=_version_text(min_glibc),
        size=size,
    )
    (root / BUNDLE_MARKER).write_text(json.dumps(bundle.to_json(), indent=2) + "\n")
    return bundle


def copy_packages(dest: str, *, with_dependencies: bool = True) -> str:
    """Copy pymultus (and its runtime dependencies) into ``dest``, for a host-Python launcher."""
    site = Path(dest)
    site.mkdir(mode=0o755, parents=True, exist_ok=True)
    _copy_pymultus(site)
    if with_dependencies:
        for dist_name in _runtime_dependencies("pymultus"):
            _copy_distribution(dist_name, site)
    _compile(site)
    return _digest(site)[0]


def _copy_stdlib(src: Path, dst: Path) -> None:
    cache_tag = sys.implementation.cache_tag
    for entry in sorted(src.iterdir()):
        if entry.name in STDLIB_EXCLUDED or entry.name.startswith("config-"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, dst / entry.name, ignore=_ignore_foreign_pyc(cache_tag), symlinks=False)
        elif entry.suffix == ".py":
            shutil.copy2(entry, dst / entry.name)
    # copy2 keeps the sources' mtimes, so the distribution's .pyc files stay valid; compile the
    # rest so no call ever pays for compiling (and never writes into the bundle on the host).
    _compile(dst)


def _ignore_foreign_pyc(cache_tag: str | None) -> Callable[[str, list[str]], list[str]]:
    def ignore(directory: str, names: list[str]) -> list[str]:
        skipped = [n for n in names if n in STDLIB_EXCLUDED and n != "lib-dynload"]
        if os.path.basename(directory) == "__pycache__":
            skipped += [n for n in names if cache_tag is None or f".{cache_tag}." not in n or ".opt-" in n]
        return skipped

    return ignore


def _copy_pymultus(site: Path) -> None:
    import pymultus

    package_dir = Path(pymultus.__file__).parent
    shutil.copytree(
        package_dir,
        site / "pymultus",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
        dirs_exist_ok=True,
    )


def _runtime_dependencies(dist_name: str) -> list[str]:
    """Names of the distributions ``dist_name`` needs at run time, recursively (no extras).

    A requirement with an environment marker (``; platform_system == "Windows"``) counts when
    it is installed: pip evaluated the marker for this platform when it installed the tree.
    """
    seen: list[str] = []
    todo = [dist_name]
    while todo:
        name = todo.pop()
        for spec in importlib.metadata.requires(name) or ():
            req, _, marker = spec.partition(";")
            match = _REQ_NAME.match(req.strip())
            if not match or "extra" in marker:
                continue
            dep = match.group(0)
            if marker.strip() and not _installed(dep):
                continue
            if dep not in seen:
                seen.append(dep)
                todo.append(dep)
    return seen


def _installed(dist_name: str) -> bool:
    try:
        importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _copy_distribution(dist_name: str, site: Path) -> None:
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise InvalidEnvironment(f"pymultus needs {dist_name}, which is not installed") from exc
    base = Path(str(dist.locate_file("")))
    for rel in dist.files or ():
        parts = Path(str(rel)).parts
        if not parts or parts[0] == ".." or "__pycache__" in parts:
            continue  # console scripts live outside site-packages; caches are rebuilt
        src = base / rel
        if src.is_file():
            target = site / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def _compile(directory: Path) -> None:
    import compileall
    import py_compile

    # The result is ignored on purpose: a third-party file that is not valid for this Python
    # (e.g. a py2 leftover) is never imported, so its failing to compile is harmless.
    compileall.compile_dir(
        str(directory), quiet=2, workers=1, invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP
    )


def _walk_files(root: Path) -> Iterator[Path]:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            if not path.is_symlink():
                yield path


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == _ELF_MAGIC
    except OSError:
        return False


def _ldd(path: Path) -> dict[str, Path]:
    proc = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
    deps: dict[str, Path] = {}
    for line in proc.stdout.splitlines():
        if "not found" in line:
            soname = line.split()[0]
            if soname not in GLIBC_SONAMES:
                raise InvalidEnvironment(f"cannot bundle {path}: its library {soname} is not found")
            continue
        match = _LDD_LINE.match(line)
        if match:
            deps[match.group(1)] = Path(os.path.realpath(match.group(2)))
    return deps


def _glibc_needed(path: Path) -> tuple[int, int, int]:
    """The newest GLIBC_x.y[.z] symbol version ``path`` names (needs or definitions)."""
    best = (0, 0, 0)
    with open(path, "rb") as f:
        data = f.read()
    for match in _GLIBC_VERSION.finditer(data):
        version = (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))
        best = max(best, version)
    return best


def _version_text(version: tuple[int, int, int]) -> str:
    return f"{version[0]}.{version[1]}" + (f".{version[2]}" if version[2] else "")


def _digest(root: Path) -> tuple[str, int]:
    """sha256 over every file's relative path, executable bit and content; and the total size."""
    h = hashlib.sha256()
    size = 0
    for path in sorted(_walk_files(root), key=lambda p: str(p.relative_to(root))):
        rel = str(path.relative_to(root))
        if rel == BUNDLE_MARKER:
            continue
        st = path.stat()
        size += st.st_size
        h.update(f"{rel}\0{st.st_mode & 0o111:o}\0{st.st_size}\0".encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest(), size


def _run(cmd: Iterable[str]) -> None:
    argv = list(cmd)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise IOFailure(f"{argv[0]} failed on {argv[-1]}: {proc.stderr.strip() or proc.returncode}")
