"""One file holding the compiled hot-path modules, for the ``multus`` launcher.

Why: the thin plugin starts twice per pod, and each of the ~30 modules a request imports costs
the import system ~250 k instructions before the module's own code runs (path lookups: a
directory listing per package, stats, opening and checking a ``.pyc``; then importlib's Python
bookkeeping) — about as much as the code itself. From the archive, executed directly (see
:func:`pymultus.install.archiveloader.install`), a module costs one ``stat``, one ``pread`` and
~20 k instructions. The source tree keeps its small modules; :func:`build` compiles them into the
archive when the launcher is written (install time), and the launcher execs the loader's code
from the archive.

Layout: the interpreter's magic number; the length of the head and the length of the loader (4
bytes each, little endian); the head: ``marshal`` of :mod:`pymultus.install.archiveloader`'s code
(the loader), then ``marshal`` of (the index: module name -> (is_package, source path, source
mtime_ns, source size, offset, length), the file's total size); then each module's marshalled
code at its offset. The
launcher reads the first 64 KiB, checks the magic number, executes the loader and calls its
``boot``, which reads the index and installs the loader. A request reads the ~30 KB head and
then only the modules it imports (about a third of the file for a plain ADD), not the whole
~0.6 MB.

Compiled for the hot path: at optimisation level 2 (no docstrings, no ``assert``s — the package
uses them only to narrow types for mypy), without the functions' type annotations (for mypy
too; those of classes stay, a dataclass is built from them), and without
the run-time import that ``from __future__ import annotations`` compiles to (the flag is given to
the compiler instead; the statement would import ``__future__`` from disk in every process,
~0.2 ms).

Never stale, never required: a module is served from the archive only while its source file has
the size and ``mtime_ns`` recorded at build time (an edited or upgraded module is compiled from
source by the normal import system, as are modules not in the archive), and an archive that is
missing, unreadable, of another size than its header says, or built by another Python (the magic
number differs) is ignored.

This module runs at install time only.
"""

from __future__ import annotations

from pymultus.install.archiveloader import PREFIX, Index

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    from types import CodeType
    from typing import TypeVar

    _Function = TypeVar("_Function", ast.FunctionDef, ast.AsyncFunctionDef)

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
    from pymultus.install import archiveloader

    with open(archiveloader.__file__, "rb") as f:
        # Format 2 (no back-references), here and for the index: the same input always gives the
        # same bytes, so an unchanged archive is not rewritten.
        loader = marshal.dumps(_compile(f.read(), archiveloader.__file__), 2)
    # The index's size depends on the offsets it holds; offsets count from the end of an index of
    # the size the previous pass produced, until that size no longer changes.
    header = b""
    while True:
        index: Index = {}
        offset = PREFIX + len(loader) + len(header)
        for name, is_package, source, mtime_ns, size, compiled in entries:
            index[name] = (is_package, source, mtime_ns, size, offset, len(compiled))
            offset += len(compiled)
        rebuilt = marshal.dumps((index, offset), 2)
        done = len(rebuilt) == len(header)
        header = rebuilt
        if done:
            break
    head_length = len(loader) + len(header)
    data = b"".join(
        [importlib.util.MAGIC_NUMBER, head_length.to_bytes(4, "little"), len(loader).to_bytes(4, "little")]
        + [loader, header]
        + [entry[5] for entry in entries]
    )
    return fileio.write_atomically(path, data, mode=0o644, dir_mode=None)


def _compile(source: bytes, path: str) -> CodeType:
    """``source`` compiled for the archive: optimisation level 2, without type annotations, and
    ``from __future__ import annotations`` given to the compiler as a flag instead of left as a
    run-time import."""
    import __future__

    import ast

    tree = _without_annotations(ast.parse(source, path))
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


def _without_annotations(tree: ast.Module) -> ast.Module:
    """``tree`` without the type annotations of its functions (signatures and local variables):
    they are for mypy, each one is a string every process unmarshals and every function object
    built carries (~7 % of the marshalled code, ~14 % of its unmarshal time), and nothing reads a
    function's annotations at run time (no ``get_type_hints``/``singledispatch`` on the hot path).
    Annotations in class bodies and at module level stay: a dataclass, ``NamedTuple`` or
    ``TypedDict`` is built from them. Inside a function, ``x: T = v`` becomes ``x = v`` and a bare
    ``x: T`` becomes ``pass``."""
    import ast

    class Strip(ast.NodeTransformer):
        def __init__(self) -> None:
            self.in_function = False

        def visit_arguments(self, node: ast.arguments) -> ast.arguments:
            for argument in (*node.posonlyargs, *node.args, *node.kwonlyargs, node.vararg, node.kwarg):
                if argument is not None:
                    argument.annotation = None
            self.generic_visit(node)
            return node

        def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
            return self._function(node)

        def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AsyncFunctionDef:
            return self._function(node)

        def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
            outer, self.in_function = self.in_function, False  # a class body, even inside a function
            self.generic_visit(node)
            self.in_function = outer
            return node

        def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.stmt:
            if not self.in_function:
                return node
            if node.value is None:
                return ast.copy_location(ast.Pass(), node)
            return ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)

        def _function(self, node: _Function) -> _Function:
            node.returns = None
            outer, self.in_function = self.in_function, True
            self.generic_visit(node)
            self.in_function = outer
            return node

    stripped: ast.Module = ast.fix_missing_locations(Strip().visit(tree))
    return stripped


def _wanted(name: str) -> bool:
    if name.startswith(("pymultus.daemon", "pymultus.ops", "pymultus.install")):
        return False
    return name in _CLI_KEPT if name.startswith("pymultus.cli.") else True


# The launcher's part (see launcher.launcher_text), formatted with the archive's path: open it,
# check the magic number, exec the loader (archiveloader's code) and call its boot. As few tokens as
# possible: the interpreter compiles the launcher's source at every start (this version ~0.1 ms,
# a readable 25-line function ~0.35 ms). Any failure leaves plain imports; O_NONBLOCK, so that a
# FIFO in the archive's place cannot hang the open (its pread fails: plain imports).
LAUNCHER_LINES = """\
try:
 import marshal,posix;_f=posix.open({archive!r},posix.O_RDONLY|posix.O_CLOEXEC|posix.O_NONBLOCK)
 _h=posix.pread(_f,65536,0)
 if _h[:4]==sys.modules['_frozen_importlib_external'].MAGIC_NUMBER:
  _n={{}};exec(marshal.loads(_h[12:]),_n);_n['boot'](_f,_h)
except Exception:pass
"""
