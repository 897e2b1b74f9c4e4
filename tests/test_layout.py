"""The package layout is the architecture: each module's place says what it may import.

Read from the source with `ast` (imports inside functions count too), so the rules keep holding
as modules are added or edited:

- a stage (`tagger.stages.*`, a module or a package of small modules such as `stages/naming/`)
  never imports `tagger.run`, `tagger.lifecycle`, `tagger.cli`, `tagger.pipeline` or
  `tagger.api`, and imports only stages before it in pipeline order (and its own modules);
- nothing imports `tagger.pipeline` except `tagger.cli`, `tagger.api` and `tagger.lifecycle`;
- `tagger.llm` imports none of the stages, the run folder, the lifecycle, the pipeline or the CLI;
- `tagger.lifecycle` (what lasts: the saved model, placement, lineage, drift, edits, stability)
  imports nothing of `tagger.run` (the commands that open a RunContext and write folders), so the
  two packages form no circle;
- no import circles among tagger's modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
STAGE_ORDER = ["forum", "data", "canon", "candidates", "excerpts", "tagging", "embedding", "vector_store", "ray_encoder",
               "lexical", "sampling", "tree", "clustering", "placer", "taxonomy", "naming", "recommend"]
# The shared modules that stay at the top level; any other module belongs in a subpackage.
TOP_LEVEL = {"tagger", "tagger.__main__", "tagger.api", "tagger.pipeline", "tagger.config", "tagger.schemas", "tagger.summary",
             "tagger.errors", "tagger.paths", "tagger.cache", "tagger.prompts", "tagger.privacy", "tagger.progress",
             "tagger.logs", "tagger.vectors", "tagger.text"}
SUBPACKAGES = ("tagger.stages", "tagger.llm", "tagger.run", "tagger.lifecycle", "tagger.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / "tagger").rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every tagger module `name` imports, at any depth of its code."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from tagger import prompts` imports a module; `from tagger import __version__` the package
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def area(name: str) -> str:
    for package in SUBPACKAGES:
        if name == package or name.startswith(package + "."):
            return package
    return name


def test_the_source_tree_is_found():
    assert {"tagger.pipeline", "tagger.stages.data", "tagger.run.load", "tagger.lifecycle.assign"} <= set(MODULES)
    assert "tagger.stages.clustering" in GRAPH["tagger.pipeline"]


def test_top_level_holds_only_the_shared_modules():
    misplaced = sorted(n for n in MODULES if area(n) == n and n not in TOP_LEVEL | set(SUBPACKAGES))
    assert not misplaced, f"put these in a subpackage ({', '.join(SUBPACKAGES)}): {misplaced}"


def stage_of(name: str) -> str:
    """The stage a module of `tagger.stages` belongs to: "naming" for `tagger.stages.naming.tree`."""
    return name.split(".")[2]


def stage_modules(stage: str) -> list[str]:
    """The stage's module, or its package and every module inside it."""
    return [n for n in MODULES if n.startswith("tagger.stages.") and stage_of(n) == stage]


def test_every_stage_is_in_the_pipeline_order():
    stages = {stage_of(n) for n in MODULES if area(n) == "tagger.stages" and n != "tagger.stages"}
    assert stages == set(STAGE_ORDER), "list every stage in STAGE_ORDER and in tagger/stages/__init__.py, in pipeline order"


def test_a_stage_package_is_found_as_one_stage():
    assert "tagger.stages.naming.tree" in stage_modules("naming") and "tagger.stages.tree" not in stage_modules("naming")


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_a_stage_imports_no_later_layer_and_no_later_stage(stage):
    forbidden = {"tagger.run", "tagger.lifecycle", "tagger.cli", "tagger.pipeline", "tagger.api"}
    later = {s for s in STAGE_ORDER[STAGE_ORDER.index(stage) + 1:]}
    for name in stage_modules(stage):
        assert not {d for d in GRAPH[name] if area(d) in forbidden}, name
        reached = {stage_of(d) for d in GRAPH[name] if d.startswith("tagger.stages.")}
        assert not reached & later, f"{name} imports a later stage"


# The layers, lowest first: a module imports only its own layer and those below, at any depth of
# its code (an import inside a function counts as much as one at the top).
LAYERS = [
    ("shared", lambda n: area(n) == "tagger.llm" or (area(n) == n and n in TOP_LEVEL
                                                       and n not in {"tagger", "tagger.__main__", "tagger.api",
                                                                     "tagger.pipeline", "tagger.privacy"})),
    # redaction and the k-anonymity floor are steps of the pipeline, over the stages' types
    ("stages", lambda n: area(n) == "tagger.stages" or n == "tagger.privacy"),
    ("pipeline", lambda n: n == "tagger.pipeline"),
    ("run/lifecycle", lambda n: area(n) in {"tagger.run", "tagger.lifecycle"}),
    ("api/cli", lambda n: area(n) in {"tagger.api", "tagger.cli"} or n == "tagger.__main__"),
]


def layer(name: str) -> int:
    return next(i for i, (_, member) in enumerate(LAYERS) if member(name))


def test_every_module_has_a_layer():
    for name in MODULES:
        if name != "tagger":  # the package root only re-exports the API, lazily
            layer(name)


def test_no_import_goes_up_a_layer():
    upward = sorted(f"{n} ({LAYERS[layer(n)][0]}) imports {d} ({LAYERS[layer(d)][0]})"
                    for n, deps in GRAPH.items() if n != "tagger" for d in deps
                    if d != "tagger" and layer(d) > layer(n))
    assert not upward, upward


def test_the_pipeline_is_imported_from_above_only():
    importers = {n for n, deps in GRAPH.items() if "tagger.pipeline" in deps}
    assert "tagger.run.segment" in importers and "tagger.run.assign" in importers
    assert all(layer(n) > layer("tagger.pipeline") for n in importers), sorted(importers)


def test_the_lifecycle_imports_no_run_command():
    offenders = sorted(f"{n} imports {d}" for n, deps in GRAPH.items() if area(n) == "tagger.lifecycle"
                       for d in deps if area(d) == "tagger.run")
    assert not offenders, offenders


def test_no_circle_between_packages():
    """Modules may not form a circle, and neither may the subpackages they sit in."""
    packages: dict[str, set[str]] = {}
    for name, deps in GRAPH.items():
        if name != "tagger":
            packages.setdefault(area(name), set()).update(area(d) for d in deps if area(d) != area(name) and d != "tagger")
    assert find_cycle(packages) is None, " -> ".join(find_cycle(packages))


def test_engines_import_no_pipeline_layer():
    forbidden = {"tagger.stages", "tagger.run", "tagger.lifecycle", "tagger.cli", "tagger.pipeline", "tagger.api"}
    for name in (n for n in MODULES if area(n) == "tagger.llm"):
        assert not {d for d in GRAPH[name] if area(d) in forbidden}, name


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circles():
    # The root package only re-exports the Python API lazily (PEP 562 __getattr__); modules import
    # it for __version__, which never triggers that import, so its outgoing edges are left out.
    graph = {n: (set() if n == "tagger" else deps) for n, deps in GRAPH.items()}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
