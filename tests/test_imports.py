"""The package's imports run one way: no module imports (even lazily, inside a function)
a module that imports it back, and the library's start stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cbi_toolkit

PACKAGE = Path(cbi_toolkit.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, modules: set[str]) -> str | None:
    """``name`` or its longest prefix that is a module of the package (``a.b.func`` -> ``a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> package modules it imports, at top level or inside functions. Imports under
    ``if TYPE_CHECKING:`` are left out (they never run)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                            for a in node.names}
        graph[name] = {m for t in targets if (m := _resolve(t, modules)) and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or None. A package's ``__init__`` importing its
    own submodules is not a cycle unless a submodule imports the package back."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if node.startswith(nxt + "."):  # its own parent package, always initialised first
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_walker_sees_lazy_imports():
    graph = import_graph()
    assert "cbi_toolkit.spec" in graph["cbi_toolkit.cli"]  # cli imports spec inside a function
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_spec_import_stays_light():
    """Validating a spec (``cbi-run --check``) loads neither torch nor scikit-learn nor
    pandas (`cbi_toolkit.lazy` defers pandas to its first use)."""
    code = ("import sys, cbi_toolkit.spec, cbi_toolkit.cli\n"
            "cbi_toolkit.cli.main(['--check', 'specs/zl_1m_quick.yaml'])\n"
            "heavy = ('torch', 'sklearn', 'skorch', 'matplotlib', 'scipy', 'pandas', 'requests')\n"
            "print(sorted(m for m in heavy if m in sys.modules\n"
            "             and type(sys.modules[m]).__name__ != '_LazyModule'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_only_command_line_modules_import_argparse():
    cli = {"cbi_toolkit.cli", "cbi_toolkit.search.cli", "cbi_toolkit.fetch", "cbi_toolkit.export",
           "cbi_toolkit.dashboard.cli"}
    users = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.Import) and any(a.name == "argparse" for a in n.names)
               or isinstance(n, ast.ImportFrom) and n.module == "argparse" for n in ast.walk(tree)):
            users.add(_module_name(path))
    assert users <= cli, f"argparse outside the command line: {sorted(users - cli)}"


def test_architecture_doc_names_every_module():
    """docs/architecture.md's table of modules matches the code: every module is named,
    every name is a module (``folder/`` stands for all of its modules)."""
    import re

    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    named, folders = set(), set()
    for line in doc.splitlines():
        if not line.startswith("| `"):
            continue
        folder = ""
        for token in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if token.endswith("/"):
                folders.add(token.rstrip("/"))
                continue
            if "/" in token:
                folder = token.rpartition("/")[0] + "/"
            named.add(token if "/" in token else folder + token)
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    assert named - modules == set(), "named in docs/architecture.md but not modules"
    covered = {m for m in modules if any(m.startswith(f + "/") for f in folders)}
    assert modules - named - covered == set(), "modules missing from docs/architecture.md"
