"""One file holding the compiled hot-path modules, for the ``multus`` launcher.

Why: the thin plugin starts twice per pod, and each of the ~30 modules a request imports costs
the import system ~250 k instructions before the module's own code runs (path lookups: a
directory listing per package, stats, opening and checking a ``.pyc``; then importlib's Python
bookkeeping) — about as much as the code itself. From the archive, executed directly (see
:func:`install`), a module costs one ``stat``, one ``pread`` and ~20 k instructions. The source
tree keeps its small modules; :func:`build` compiles them into the archive when the launcher is
written (install time), and the launcher execs this module's code from the archive and calls
:func:`install`.

Layout: the interpreter's magic number, the length of the header (4 bytes, little endian), the
header — ``marshal`` of (this module's code, the index: module name -> (is_package, source path,
source mtime_ns, source size, offset, length)) — then each module's marshalled code at its
offset; the header records the file's total size. A request reads the ~20 KB header and then only
the modules it imports (about a third of the file for a plain ADD), not the whole ~0.6 MB.

Compiled for the hot path: at optimisation level 2 (no docstrings, no ``assert``s — the package
uses them only to narrow types for mypy), and without the run-time import that ``from __future__
import annotations`` compiles to (the flag is given to the compiler instead; the statement would
import ``__future__`` from disk in every process, ~0.2 ms).

Never stale, never required: a module is served from the archive only while its source file has
the size and ``mtime_ns`` recorded at build time (an edited or upgraded module is compiled from
source by the normal import system, as are modules not in the archive), and an archive that is
missing, unreadable, of another size than its header says, or built by another Python (the magic
number differs) is ignored.

Hot path: ``install`` uses built-ins only (``posix``, ``marshal``, ``_thread``); ``build`` runs at
install time.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import CodeType, ModuleType

# name -> (is_package, source path, source mtime_ns, source size, offset, length of its code)
Index = dict[str, tuple[bool, str, int, int, int, int]]

# What the CNI executables can import: ``multus`` (the thin plugin) and ``multus-shim`` (its three
# modules: ~0.25 ms less per start than through importlib). The daemon and the operator tools are
# long-lived or interactive processes and import normally.
_CLI_KEPT = (
    "pymultus.cli.thin",
    "pymultus.cli.wiring",
    "pymultus.cli.logsink",
    "pymultus.cli.shim",
)
ARCHIVE_NAME = ".multus.code"  # next to the launchers in the CNI bin dir (install-plugin)
# The standard library's C extensions the thin plugin imports, loaded by :func:`install` itself.
EXTENSIONS = frozenset({"_json", "_ssl"})


def install(index: Index, fd: int) -> None:
    """Serve ``index``'s modules, read from the archive open at ``fd``, to ``import`` statements
    from now on (``builtins.__import__``).

    Not a ``sys.meta_path`` finder: the import system's own bookkeeping (module locks, spec
    search, attribute set-up, all Python code in ``importlib._bootstrap``) costs ~200 k
    instructions per module even when a finder answers at once; executing the module's code
    object directly costs ~17 k. What importlib guarantees is kept: a module is in
    ``sys.modules`` while its code runs (circular imports see it partly initialised, as usual),
    is removed again if its code raises, is bound on its parent package afterwards, and another
    thread importing it waits until it is complete (one lock for the archive's modules).
    Relative imports, ``import *``, other packages and modules the archive does not serve go to
    the original ``__import__``.

    The standard library's C extensions the hot path imports (:data:`EXTENSIONS`: ``_json`` for
    every request, ``_ssl`` with Kubernetes) are loaded straight from the interpreter's
    ``lib-dynload`` directory, as ``ExtensionFileLoader`` loads them: the import system would first
    list every ``sys.path`` directory before it (the package's, ``site-packages``, the standard
    library's: ~0.35 ms per process for ``_json``, three times its load).
    """
    import _thread
    import builtins
    import marshal
    import posix
    import sys

    modules = sys.modules
    original = builtins.__import__
    spec_type = modules["_frozen_importlib"].ModuleSpec
    extension_loader = modules["_frozen_importlib_external"].ExtensionFileLoader
    imp = modules["_imp"]
    dynload = [entry for entry in sys.path if entry.endswith("/lib-dynload")][:1]
    module_type = type(sys)
    lock = _thread.RLock()
    running: set[str] = set()

    def load(name: str) -> ModuleType | None:
        """The module ``name``, executed from the archive if needed; None if not served."""
        module = modules.get(name)
        if module is not None and name not in running:
            return module
        with lock:
            module = modules.get(name)
            if module is not None:  # done meanwhile, or this thread's own circular import
                return module
            entry = index.get(name)
            if entry is None:
                return None
            try:
                st = posix.stat(entry[1])
            except OSError:
                return None
            if st.st_mtime_ns != entry[2] or st.st_size != entry[3]:
                return None  # changed since the build: the import system compiles the source
            parent, _, child = name.rpartition(".")
            if parent and load(parent) is None:
                return None
            try:
                code = marshal.loads(posix.pread(fd, entry[5], entry[4]))  # noqa: S302 - our own build
            except (OSError, ValueError, EOFError, TypeError):
                return None  # unreadable after all: the import system compiles the source
            is_package, origin = entry[0], entry[1]
            module = module_type(name)
            spec = spec_type(name, None, origin=origin, is_package=is_package)
            spec.has_location = True
            module.__spec__ = spec
            module.__loader__ = None
            module.__file__ = origin
            module.__package__ = name if is_package else parent
            if is_package:
                module.__path__ = spec.submodule_search_locations = [origin.rpartition("/")[0]]
            running.add(name)  # before it is visible: other threads wait for the lock, not use it
            modules[name] = module
            try:
                exec(code, module.__dict__)  # noqa: S102 - our own build
            except BaseException:
                modules.pop(name, None)
                raise
            finally:
                running.discard(name)
            module = modules[name]  # a module may replace itself, importlib honours that
            if parent:
                setattr(modules[parent], child, module)
            return module

    def load_extension(name: str) -> ModuleType | None:
        """The standard library's C extension ``name`` from ``lib-dynload``; None if not there."""
        with lock:
            module = modules.get(name)
            if module is not None:
                return module
            for directory in dynload:
                for suffix in imp.extension_suffixes():
                    origin = f"{directory}/{name}{suffix}"
                    try:
                        posix.stat(origin)
                    except OSError:
                        continue
                    loader = extension_loader(name, origin)
                    spec = spec_type(name, loader, origin=origin)
                    spec.has_location = True
                    created: ModuleType = imp.create_dynamic(spec)
                    created.__spec__ = spec
                    created.__loader__ = loader
                    created.__file__ = origin
                    created.__package__ = ""
                    modules[name] = created
                    try:
                        imp.exec_dynamic(created)
                    except BaseException:
                        modules.pop(name, None)
                        raise
                    return created
            return None

    def archive_import(
        name: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> ModuleType:
        if level == 0 and name in EXTENSIONS:
            module = modules.get(name) or load_extension(name)
            if module is not None:
                return module
        if (
            level == 0
            and (name == "pymultus" or name.startswith("pymultus."))
            and (not fromlist or "*" not in fromlist)
        ):
            module = load(name)
            if module is not None:
                if not fromlist:
                    return modules[name.partition(".")[0]]
                if not hasattr(module, "__path__") or all(
                    hasattr(module, item) or load(f"{name}.{item}") is not None for item in fromlist
                ):
                    return module
        return original(name, globals, locals, fromlist, level)

    builtins.__import__ = archive_import


# Compiled modules by (path, mtime_ns, size): a process writing many launchers (the test suite's
# nodes) compiles each source once.
_COMPILED: dict[tuple[str, int, int], bytes] = {}


def build(path: str, package_root: str, *, recorded_root: str | None = None) -> bool:
    """Compile the hot-path modules under ``package_root/pymultus`` into the archive at ``path``
    (written atomically); False when it was already current.

    ``recorded_root``: where the launcher will find ``package_root`` when it runs, if not at the
    same path (the installer writes the host's CNI bin dir through another mount); the archive
    records the sources' paths there, so each module's ``stat`` check looks at the right file."""
    import importlib.util
    import marshal
    import os

    from pymultus import fileio

    entries: list[tuple[str, bool, str, int, int, bytes]] = []
    top = os.path.join(package_root, "pymultus")
    for directory, subdirs, files in os.walk(top):
        subdirs[:] = sorted(name for name in subdirs if name != "__pycache__")
        for file_name in sorted(files):
            if not file_name.endswith(".py"):
                continue
            source = os.path.join(directory, file_name)
            parts = os.path.relpath(source, package_root)[:-3].split(os.sep)
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            if not _wanted(name):
                continue
            st = os.stat(source)
            key = (source, st.st_mtime_ns, st.st_size)
            compiled = _COMPILED.get(key)
            if compiled is None:
                with open(source, "rb") as f:
                    compiled = marshal.dumps(_compile(f.read(), source))
                _COMPILED[key] = compiled
            origin = source if recorded_root is None else os.path.join(recorded_root, *parts) + ".py"
            entries.append((name, is_package, origin, st.st_mtime_ns, st.st_size, compiled))
    with open(__file__, "rb") as f:
        loader = _compile(f.read(), __file__)
    # The header's size depends on the offsets it holds; offsets count from the end of a header
    # of the size the previous pass produced, until that size no longer changes.
    header = b""
    while True:
        index: Index = {}
        offset = 8 + len(header)
        for name, is_package, source, mtime_ns, size, compiled in entries:
            index[name] = (is_package, source, mtime_ns, size, offset, len(compiled))
            offset += len(compiled)
        # Format 2 (no back-references): the same input always gives the same bytes, so an
        # unchanged archive is not rewritten.
        rebuilt = marshal.dumps((loader, index, offset), 2)
        done = len(rebuilt) == len(header)
        header = rebuilt
        if done:
            break
    data = b"".join(
        [importlib.util.MAGIC_NUMBER, len(header).to_bytes(4, "little"), header]
        + [entry[5] for entry in entries]
    )
    return fileio.write_atomically(path, data, mode=0o644, dir_mode=None)


def _compile(source: bytes, path: str) -> CodeType:
    """``source`` compiled for the archive: optimisation level 2, and ``from __future__ import
    annotations`` given to the compiler as a flag instead of left as a run-time import."""
    import __future__

    import ast

    tree = ast.parse(source, path)
    flags = 0
    kept = []
    for statement in tree.body:
        if isinstance(statement, ast.ImportFrom) and statement.module == "__future__":
            names = [alias.name for alias in statement.names]
            if names == ["annotations"]:
                flags |= int(__future__.annotations.compiler_flag)
                continue
        kept.append(statement)
    tree.body = kept
    code: CodeType = compile(tree, path, "exec", flags=flags, dont_inherit=True, optimize=2)
    return code


def _wanted(name: str) -> bool:
    if name.startswith(("pymultus.daemon", "pymultus.ops", "pymultus.install")):
        return False
    return name in _CLI_KEPT if name.startswith("pymultus.cli.") else True


# The launcher's part (see launcher.launcher_text): read the archive, check the magic number,
# exec this module's code and call install. Built-ins only; any failure leaves plain imports.
LAUNCHER_SNIPPET = """\
def _code_archive(path):
    import posix
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return
    try:
        magic = getattr(sys.modules.get("_frozen_importlib_external"), "MAGIC_NUMBER", None)
        head = posix.pread(fd, 65536, 0)
        if not magic or len(head) < 8 or head[:4] != magic:
            raise ValueError
        length = int.from_bytes(head[4:8], "little")
        if 8 + length > len(head):
            head = posix.pread(fd, 8 + length, 0)
        import marshal
        loader, index, size = marshal.loads(memoryview(head)[8 : 8 + length])
        if posix.fstat(fd).st_size != size:
            raise ValueError
        namespace = {"__name__": "pymultus.install.codearchive"}
        exec(loader, namespace)
    except (OSError, ValueError, EOFError, TypeError):
        posix.close(fd)
        return
    namespace["install"](index, fd)
"""
