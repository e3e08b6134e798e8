"""The host package: every module imports without the images' packages; the code that runs inside
the images is data beside it, not a module."""
import importlib
import pkgutil
import re
from pathlib import Path

import imagekit


def test_every_module_imports_on_the_host_and_in_image_code_is_not_a_module():
    names = [m.name for m in pkgutil.walk_packages(imagekit.__path__, "imagekit.") if m.name != "imagekit.__main__"]
    for name in names:
        importlib.import_module(name)  # no numpy, scikit-learn or jupyterhub on the host needed
    assert "imagekit.verify.roundtrip" in names and not any("in_image" in n or "publish" in n for n in names)
    in_image = Path(imagekit.__file__).parent / "in_image"
    assert {p.name for p in in_image.glob("*.py")} == {"imagekit_publish.py", "imagekit_mlflow.py", "jupyterhub_config.py",
                                                       "image_facts.py", "make_layers.py"}
    assert {p.name for p in (in_image / "serving").glob("*.py")} == {
        "lakemodel.py", "model_server.py", "modelcheck.py", "mlflowcheck.py", "stored_check.py"}


def imports(root: Path) -> dict[str, set[str]]:
    """Module -> the imagekit modules it imports, at the top or inside a function; importing a
    submodule imports its package too (``imagekit.verify.record`` runs ``imagekit/verify/__init__.py``)."""
    import ast

    modules = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in root.rglob("*.py") if "in_image" not in p.parts}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + [base]).strip(".")
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        edges = set()
        for target in found:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            while target and target != "imagekit":  # the module and every package above it run
                if target != name and not name.startswith(target + "."):
                    edges.add(target)
                target = target.rpartition(".")[0]
        graph[name] = edges
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (the modules around it), or [] when there is none."""
    state, stack = {}, []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return []
    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_package_has_no_import_cycle_counting_imports_inside_functions():
    graph = imports(Path(imagekit.__file__).parent)
    assert "imagekit.browser" in graph["imagekit.runtime"]  # imports inside functions count
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check can fail
    assert cycle(graph) == []


def test_no_module_exceeds_300_lines_and_containers_start_one_way():
    root = Path(imagekit.__file__).parent
    sizes = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > 300} == {}
    starters = {str(p.relative_to(root)) for p in root.rglob("*.py")  # docker-py's client.containers, testcontainers
                if re.search(r"docker\.from_env|DockerContainer\(|\.containers\.(create|run)\(", p.read_text())}
    assert starters <= {"engine.py", "containers.py"}, starters
