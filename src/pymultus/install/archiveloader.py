"""The code archive's run-time half: what the ``multus`` and ``multus-shim`` launchers execute
from the archive (see :mod:`pymultus.install.codearchive` for the layout and the build).

Kept apart from the build so that each process unmarshals only this (~5 KB) before its first
import. Built-ins only (``posix``, ``marshal``, ``_thread``).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

# name -> (is_package, source path, source mtime_ns, source size, offset, length of its code)
Index = dict[str, tuple[bool, str, int, int, int, int]]

PREFIX = 12  # magic number, head length, loader length (4 bytes each, little endian)
# The standard library's C extensions the thin plugin imports, loaded by :func:`install` itself.
EXTENSIONS = frozenset({"_json", "_ssl"})


def boot(fd: int, head: bytes) -> None:
    """Read the index of the archive open at ``fd`` (``head``: its first bytes, as the launcher
    read them, magic number checked) and :func:`install` it; an archive of another size than its
    index says (truncated, replaced, a head length past its end) is closed and ignored: plain
    imports."""
    import marshal
    import posix

    try:
        file_size = posix.fstat(fd).st_size
        head_length = int.from_bytes(head[4:8], "little")
        loader_length = int.from_bytes(head[8:12], "little")
        if PREFIX + head_length > file_size:
            raise ValueError  # damaged: never allocate what the header claims
        if PREFIX + head_length > len(head):
            head = posix.pread(fd, PREFIX + head_length, 0)
        index, size = marshal.loads(memoryview(head)[PREFIX + loader_length : PREFIX + head_length])  # noqa: S302
        if file_size != size:
            raise ValueError
    except (OSError, ValueError, EOFError, TypeError):
        posix.close(fd)
        return
    install(index, fd)


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
    library's: ~0.35 ms per process for ``_json``, three times its load). The interpreter's
    built-in modules (``_socket``, ``_struct``, ``select``, ``fcntl``, ...: six to eight per request)
    are created as ``BuiltinImporter`` creates them, without importlib's Python bookkeeping
    (~0.45 M instructions of a plain ADD).
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

    def publish(created: ModuleType, spec: ModuleSpec, execute: Callable[[ModuleType], object]) -> ModuleType:
        """``created`` (a top-level C module) with importlib's attributes, in ``sys.modules`` while
        ``execute`` initialises it, and taken out again if that fails (``_load_unlocked``)."""
        created.__spec__ = spec
        created.__loader__ = spec.loader
        created.__package__ = ""
        if spec.has_location:
            created.__file__ = spec.origin
        modules[spec.name] = created
        try:
            execute(created)
        except BaseException:
            modules.pop(spec.name, None)
            raise
        return created

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
                    spec = spec_type(name, extension_loader(name, origin), origin=origin)
                    spec.has_location = True
                    return publish(imp.create_dynamic(spec), spec, imp.exec_dynamic)
            return None

    builtin_names = frozenset(sys.builtin_module_names)
    builtin_importer = modules["_frozen_importlib"].BuiltinImporter

    def load_builtin(name: str) -> ModuleType:
        """The interpreter's built-in module ``name``, created as importlib's ``BuiltinImporter``
        creates it, without its search of ``sys.meta_path``."""
        with lock:
            module = modules.get(name)
            if module is not None:
                return module
            spec = spec_type(name, builtin_importer, origin="built-in")
            return publish(imp.create_builtin(spec), spec, imp.exec_builtin)

    def archive_import(
        name: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> ModuleType:
        if level == 0 and name in builtin_names:
            return modules.get(name) or load_builtin(name)
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
