"""The package layering, read from the source. Every folder installs under one name (agents/ is
frontier.agents, cli/ is frontier.cli, ...), and the packages stack in layers, each importing only
from the layers below it (imports inside functions count too):

    frontier.agents                                       torch + numpy: no Ray, no gymnasium
    frontier.envs                                         gymnasium side: no Ray
    frontier.distributed                                  the runtime
    frontier.zoo | frontier.compare | frontier.benchmarks  beside each other, none imports another
    frontier.cli                                          the command line, on top

There are no import cycles among the modules, no module imports a folder by its bare name
(`envs.spec` instead of `frontier.envs.spec`), and the runtime pieces both runners share
(learner service, replay store, rollout worker) import no Ray."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Layer of each package, bottom first; frontier itself is the bare __init__ with __version__.
LAYERS = ({"frontier"}, {"agents"}, {"envs"}, {"distributed"}, {"zoo", "compare", "benchmarks"}, {"cli"})
LAYER = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
FOLDERS = sorted(LAYER)  # the source folders at the repository's top level, one per package
# module or package -> third-party top-level names it may not import
THIRD_PARTY_FORBIDDEN = {"frontier.agents": {"ray", "gymnasium"}, "frontier.envs": {"ray"},
                         "frontier.distributed.learner_service": {"ray"}, "frontier.distributed.replay": {"ray"},
                         "frontier.distributed.rollout": {"ray"}}


def module_name(path: Path) -> str:
    """agents/x.py -> frontier.agents.x, envs/experts/__init__.py -> frontier.envs.experts,
    frontier/__init__.py -> frontier."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[0] == "frontier":
        parts = parts[1:]
    return ".".join(("frontier", *parts)).removesuffix(".__init__")


def imported_names(path: Path, module: str) -> set[str]:
    """Every module name the file imports, at any depth of its code (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}  # submodules imported by name
    return names


def module_imports() -> dict[str, set[str]]:
    """{module: every module name it imports} for every module of the installed packages."""
    out = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = module_name(path)
            out[name] = imported_names(path, name)
    return out


def package_of(name: str) -> str | None:
    """frontier.envs.registry -> envs; frontier -> frontier; numpy -> None."""
    parts = name.split(".")
    if parts[0] != "frontier":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in LAYER else "frontier"


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


def layering_violations(imports: dict[str, set[str]]) -> list[str]:
    """'A imports B' for every import of a package in the same layer (other than its own) or above."""
    bad = []
    for module, deps in imports.items():
        own = package_of(module)
        for dep in sorted(deps):
            pkg = package_of(dep)
            if pkg is not None and pkg != own and LAYER[pkg] >= LAYER[own]:
                bad.append(f"{module} imports {dep}")
    return bad


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_module_names_and_relative_imports(tmp_path):
    assert module_name(ROOT / "agents" / "model.py") == "frontier.agents.model"
    assert module_name(ROOT / "envs" / "experts" / "__init__.py") == "frontier.envs.experts"
    assert module_name(ROOT / "cli" / "__main__.py") == "frontier.cli.__main__"
    assert module_name(ROOT / "frontier" / "__init__.py") == "frontier"
    source = tmp_path / "x.py"
    source.write_text("from . import a\nfrom .b import c\nfrom .. import d\n")
    assert imported_names(source, "frontier.envs.experts.x") == {
        "frontier.envs.experts", "frontier.envs.experts.a", "frontier.envs.experts.b", "frontier.envs.experts.b.c",
        "frontier.envs", "frontier.envs.d"}


def test_the_layer_check_is_not_vacuous():
    found = module_imports()
    assert set(FOLDERS) == {package_of(m) for m in found}  # every package has modules
    assert any(package_of(d) == "distributed" for d in found["frontier.cli.train"])
    assert layering_violations({"frontier.distributed.trainer": {"frontier.cli.train"},
                                "frontier.envs.spec": {"frontier.distributed"},
                                "frontier.compare.jobs": {"frontier.zoo.config"},
                                "frontier.cli.bench": {"frontier.benchmarks.common", "frontier.agents.model"}}) == [
        "frontier.distributed.trainer imports frontier.cli.train", "frontier.envs.spec imports frontier.distributed",
        "frontier.compare.jobs imports frontier.zoo.config"]


def test_no_import_cycles():
    imports = module_imports()
    graph = {m: {d for d in deps if d in imports and d != m} for m, deps in imports.items()}
    assert cycles(graph) == []


def test_layering():
    assert layering_violations(module_imports()) == []


def test_third_party_rules():
    bad = []
    for module, deps in module_imports().items():
        forbidden = THIRD_PARTY_FORBIDDEN.get(module, THIRD_PARTY_FORBIDDEN.get(".".join(module.split(".")[:2]), set()))
        bad += [f"{module} imports {d}" for d in sorted(deps) if d.split(".")[0] in forbidden]
    assert bad == []


def test_nothing_imports_a_folder_by_its_bare_name():
    """Code, tests and examples import frontier.envs.spec, never envs.spec (the folder's name is no
    installed module: `distributed` is Dask's)."""
    bad = []
    for path in sorted([*(p for f in FOLDERS for p in (ROOT / f).rglob("*.py")), *(ROOT / "tests").rglob("*.py"),
                        *(ROOT / "examples").rglob("*.py")]):
        for name in imported_names(path, "frontier._"):
            if name.split(".")[0] in LAYER and name.split(".")[0] != "frontier":
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []
