"""Architecture rules of smtpbench/, read from the source with the standard library's ``ast``.

Rules (README "Architecture"):

* No import cycles between our modules.  What counts as an import: every
  ``import`` and ``from ... import`` statement anywhere in a module, including
  those inside functions and classes (a deferred import still ties the two
  modules together, it only hides the tie from the reader) and, while
  :data:`COUNT_TYPE_CHECKING` is set, those inside ``if TYPE_CHECKING:``.
  Such imports never run, but they are how the two cycles issue 9 named
  (``conform.model`` <-> ``conform.probe``, ``sink.server`` <->
  ``sink.session``) were written: skipping them would leave this test blind
  to exactly those.  ``from pkg import name`` is an edge to ``pkg.name`` when
  that is one of our modules, else to ``pkg``; ``import a.b`` is an edge to
  ``a.b``.
* ``smtpbench.protocol`` is sans-I/O and stands alone: its modules import no
  other package of ours.
* No module above 525 lines (the README's rule of thumb is ~500: a little
  slack so that a small fix does not force a split), except the allow-listed
  ones below.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "smtpbench"
MAX_LINES = 525
#: Whether imports under ``if TYPE_CHECKING:`` count as edges (see the module docstring).
COUNT_TYPE_CHECKING = True
#: Modules allowed above MAX_LINES, each with its reason.  Empty: the three that
#: were listed here (smtpbench/load/profile.py, smtpbench/config.py and
#: smtpbench/conform/config.py) came under the limit with the profile-schema
#: rework of issue 9.
SIZE_ALLOWED: frozenset[str] = frozenset()


def module_name(path: Path, root: Path) -> str:
    """``root/../pkg/mod.py`` -> ``pkg.mod``; a package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST, type_checking: bool) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``; the bodies of ``if TYPE_CHECKING:`` only with ``type_checking``."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            continue
        if not type_checking and isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the else branch does run
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph(
    sources: dict[str, tuple[str, bool]], type_checking: bool = COUNT_TYPE_CHECKING
) -> dict[str, set[str]]:
    """Edges between our modules: ``{module: {imported module, ...}}``.

    ``sources`` maps a module name to (source text, is a package).
    """
    ours = set(sources)
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for name, (text, is_package) in sources.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in _import_nodes(ast.parse(text), type_checking):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in ours else base for a in node.names]
            graph[name].update(t for t in targets if t in ours and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _our_sources() -> dict[str, tuple[str, bool]]:
    return {
        module_name(path, ROOT): (path.read_text(encoding="utf-8"), path.name == "__init__.py")
        for path in sorted(ROOT.rglob("*.py"))
    }


def test_no_import_cycles() -> None:
    graph = import_graph(_our_sources())
    assert len(graph) > 50  # the walk found the package
    assert cycles(graph) == []


def test_protocol_imports_nothing_else_of_ours() -> None:
    graph = import_graph(_our_sources())
    offending = {
        f"{mod} -> {dep}"
        for mod, deps in graph.items()
        if mod == "smtpbench.protocol" or mod.startswith("smtpbench.protocol.")
        for dep in deps
        if not (dep == "smtpbench.protocol" or dep.startswith("smtpbench.protocol."))
    }
    assert "smtpbench.protocol.server" in graph
    assert sorted(offending) == []


def test_no_module_above_the_size_limit() -> None:
    sizes = {
        path.relative_to(ROOT.parent).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in ROOT.rglob("*.py")
    }
    too_big = {path: n for path, n in sizes.items() if n > MAX_LINES and path not in SIZE_ALLOWED}
    assert too_big == {}


def test_the_checker_sees_cycles_and_skips_type_checking() -> None:
    """The rules above must be able to fail: a synthetic package with known edges."""
    sources = {
        "pkg": ("", True),
        "pkg.a": ("from pkg import b\n", False),
        "pkg.b": ("def f():\n    from . import c\n", False),  # function-level import counts
        "pkg.c": ("import pkg.a\n", False),
        "pkg.d": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import x\n", False),
        "pkg.e": ("from .d import y\n", False),
    }
    graph = import_graph(sources, type_checking=False)
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.a"}
    assert graph["pkg.d"] == set()
    assert graph["pkg.e"] == {"pkg.d"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    # Counting TYPE_CHECKING imports, d -> a joins nothing new (a never reaches d) ...
    assert import_graph(sources, type_checking=True)["pkg.d"] == {"pkg.a"}
    # ... but a TYPE_CHECKING-only back edge is a cycle.
    sources["pkg.a"] = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.e\n", False)
    assert cycles(import_graph(sources, type_checking=True)) == [["pkg.a", "pkg.d", "pkg.e"]]
    assert cycles(import_graph(sources, type_checking=False)) == []
