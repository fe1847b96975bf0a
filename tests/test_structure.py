"""The shape of the code, checked: no import cycles (function-level imports included), the HTTP
API free of the provider libraries and the send path, and no product module or function grown
past the size a reader can hold at once.

The limits are the ones docs/architecture.md states. A module or function that is a data table
(a mapping written out, not logic) may exceed them; each exception is listed with its reason.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("hub", "channels", "preferences")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60

# module path -> why it may be longer than MAX_MODULE_LINES
LONG_MODULES: dict[str, str] = {}
# "module path:function" -> why it may be longer than MAX_FUNCTION_LINES
LONG_FUNCTIONS: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imported(module: str, path: Path, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> set[str]:
    """The product modules one import statement loads (a name imported from a package counts
    as its submodule when one exists, else as the package itself)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    base = node.module or ""
    if node.level:
        parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
    targets = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        targets.add(sub if sub in known else base)
    return {t for t in targets if t in known}


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _imported(module, path, node, known)
        edges.discard(module)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_product() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_preferences_depend_only_on_leaf_modules_of_the_hub() -> None:
    """Customer models and their store sit below the hub: what they import from ``hub`` must
    itself import nothing from the product."""
    graph = import_graph()
    for module, edges in graph.items():
        if module.split(".")[0] != "preferences":
            continue
        for target in edges:
            if target.split(".")[0] == "hub":
                assert not graph[target], f"{module} imports {target}, which imports {sorted(graph[target])}"


def test_the_api_does_not_load_provider_clients_or_the_send_path() -> None:
    """``import hub.api`` loads twilio's webhook helpers (signature check, TwiML answers) and
    nothing that sends: no provider client library, no channel adapter, no send path."""
    probe = (
        "import sys, hub.api\n"
        "heavy = ('firebase_admin', 'aiosmtplib', 'httpx', 'twilio.rest', 'twilio.http', 'channels.sms',\n"
        "         'channels.email', 'channels.push', 'hub.providers', 'hub.worker', 'hub.pipeline',\n"
        "         'hub.dispatch', 'hub.outcomes', 'hub.retries', 'hub.compose')\n"
        "print(sorted({m for m in sys.modules if m.startswith(heavy)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def _product_files() -> list[Path]:
    return sorted(_modules().values())


@pytest.mark.parametrize("path", _product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_size(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    lines = len(path.read_text().splitlines())
    if rel in LONG_MODULES:
        return
    assert lines <= MAX_MODULE_LINES, f"{rel} has {lines} lines (limit {MAX_MODULE_LINES}); split it by responsibility"


def test_function_size() -> None:
    too_long = []
    for path in _product_files():
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES and f"{rel}:{node.name}" not in LONG_FUNCTIONS:
                    too_long.append(f"{rel}:{node.name} ({length} lines)")
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"


def test_every_exception_still_exists() -> None:
    """An exception left behind after its module or function shrank would hide the next growth."""
    for rel in LONG_MODULES:
        assert len((ROOT / rel).read_text().splitlines()) > MAX_MODULE_LINES, f"{rel} no longer needs an exception"
    for key in LONG_FUNCTIONS:
        rel, name = key.split(":")
        tree = ast.parse((ROOT / rel).read_text())
        lengths = [
            (n.end_lineno or n.lineno) - n.lineno + 1
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name
        ]
        assert lengths and max(lengths) > MAX_FUNCTION_LINES, f"{key} no longer needs an exception"


def test_the_architecture_document_names_every_module() -> None:
    """docs/architecture.md is where a newcomer finds their way: a module it does not name is
    one nobody will find."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [str(p.relative_to(ROOT)) for p in _product_files() if f"`{p.relative_to(ROOT)}`" not in text]
    missing = [m for m in missing if not m.endswith("__init__.py")]
    assert not missing, f"docs/architecture.md does not name: {missing}"
