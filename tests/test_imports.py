"""The package layering, read from the source: no import cycles among the modules of agents/, envs/,
distributed/ and benchmarks/ (imports inside functions count too); agents/ imports neither Ray nor
gymnasium nor the other packages, envs/ imports no Ray and nothing of distributed/, and the runtime
pieces both runners share (learner service, replay store, rollout worker) import no Ray."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "envs", "distributed", "benchmarks")
# package -> top-level names its modules may not import
FORBIDDEN = {"frontier.agents": {"ray", "gymnasium", "frontier.envs", "frontier.distributed"},
             "frontier.envs": {"ray", "frontier.distributed"}, "frontier.distributed.learner_service": {"ray"},
             "frontier.distributed.replay": {"ray"}, "frontier.distributed.rollout": {"ray"}}


def module_imports() -> dict[str, set[str]]:
    """{module: every module name it imports, at any depth of its code}."""
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = "frontier." + ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            names = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names |= {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module)
                    names |= {f"{node.module}.{a.name}" for a in node.names}  # submodules imported by name
            out[name] = names
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    imports = module_imports()
    graph = {m: {d for d in deps if d in imports and d != m} for m, deps in imports.items()}
    assert cycles(graph) == []


def test_layering():
    bad = []
    for module, deps in module_imports().items():
        forbidden = FORBIDDEN.get(module, FORBIDDEN.get(".".join(module.split(".")[:2]), set()))
        bad += [f"{module} imports {d}" for d in sorted(deps)
                if d.split(".")[0] in forbidden or ".".join(d.split(".")[:2]) in forbidden]
    assert bad == []
