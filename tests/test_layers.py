"""The layer contracts of .importlinter hold (handlers -> reconcile -> render -> api/planner)."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--config", str(REPO / ".importlinter")], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_operator_package_shadows_the_stdlib():
    assert not (REPO / "operator" / "__init__.py").exists()
    import operator

    assert hasattr(operator, "itemgetter")


def strongly_connected(graph, modules):
    """Tarjan's algorithm over direct imports: the groups of modules that import each other."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []
    counter = [0]

    def visit(module):
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return groups


def test_the_import_graph_has_no_cycles():
    """No two modules import each other, directly or around a loop (lazy and TYPE_CHECKING
    imports included): every module can be read and tested on top of what it imports."""
    import grimp

    graph = grimp.build_graph("multitask_operator", "multitask_gateway", "multitask_devserver",
                              "multitask_trainer")
    internal = {m for m in graph.modules if m.split(".")[0].startswith("multitask_")}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10000))  # visit() recurses along import chains
    try:
        groups = strongly_connected(graph, internal)
    finally:  # process-wide: a raised limit lets later tests parse what they expect refused
        sys.setrecursionlimit(limit)
    assert groups == []
