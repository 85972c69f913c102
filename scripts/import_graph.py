"""The import graph of rejax/ and synth/, read from the source with `ast` (nothing is imported).

    python scripts/import_graph.py              # package-level graph, layers, cycles
    python scripts/import_graph.py --modules    # the module-level graph and its layers as well
    python scripts/import_graph.py --check      # exit status 1 if the packages form a cycle

Nodes: each subpackage (`rejax.train`, `synth.stages`, ...) and each top-level module (`rejax.losses`).
Every import of our own code counts, including those inside functions (marked `lazy`), which Python
resolves at call time but which still tie the two modules together. Cycles are reported at both levels:
a package cycle breaks the layering; a module cycle inside one package is only visible with `--modules`
in the graph, but is always listed. With `--check`, the exit status is 1 when a package-level cycle exists.
"""

from __future__ import annotations

import argparse
import ast
import pathlib
import sys
from collections import defaultdict

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("rejax", "synth")


def module_files() -> dict[str, pathlib.Path]:
  """{dotted module name: file} of every module under the packages."""
  modules = {}
  for package in PACKAGES:
    for path in sorted((ROOT / package).rglob("*.py")):
      parts = list(path.relative_to(ROOT).with_suffix("").parts)
      if parts[-1] == "__init__":
        parts.pop()
      modules[".".join(parts)] = path
  return modules


def _resolve(name: str, modules: dict[str, pathlib.Path]) -> str | None:
  """The longest module of ours that `name` is or lies in (None: not our code)."""
  while name:
    if name in modules:
      return name
    name = name.rpartition(".")[0]
  return None


def imports_of(module: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> dict[str, bool]:
  """{imported module of ours: whether every import of it is inside a function (lazy)}."""
  tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
  is_package = path.name == "__init__.py"
  found: dict[str, bool] = {}

  def add(target: str | None, lazy: bool) -> None:
    if target is not None and target != module:
      found[target] = found.get(target, True) and lazy

  def visit(node: ast.AST, lazy: bool) -> None:
    for child in ast.iter_child_nodes(node):
      inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
      if isinstance(child, ast.Import):
        for alias in child.names:
          add(_resolve(alias.name, modules), lazy)
      elif isinstance(child, ast.ImportFrom):
        if child.level:  # relative: from the module's package, up level-1 more
          base = module.split(".") if is_package else module.split(".")[:-1]
          base = base[: len(base) - (child.level - 1)]
          source = ".".join(base + ([child.module] if child.module else []))
        else:
          source = child.module or ""
        for alias in child.names:  # `from pkg import submodule` imports the submodule
          add(_resolve(f"{source}.{alias.name}", modules) or _resolve(source, modules), lazy)
      visit(child, inner)

  visit(tree, False)
  return found


def package_of(module: str, modules: dict[str, pathlib.Path]) -> str:
  """The node a module belongs to: its subpackage (`rejax.train`), or itself when top-level (`rejax.losses`)."""
  parts = module.split(".")
  if len(parts) == 1:
    return module
  if len(parts) == 2 and modules[module].name != "__init__.py":
    return module
  return ".".join(parts[:2])


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
  """The cycles of `graph` as its strongly connected components of more than one node (Tarjan)."""
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  stack: list[str] = []
  on_stack: set[str] = set()
  components = []

  def connect(v: str) -> None:
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        connect(w)
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
        components.append(sorted(component))

  sys.setrecursionlimit(10_000)
  for v in sorted(graph):
    if v not in index:
      connect(v)
  return components


def layers(graph: dict[str, set[str]]) -> list[list[str]]:
  """Nodes by depth: layer 0 imports nothing of ours, layer n only layers < n (a cycle's nodes share a layer)."""
  group = {v: (v,) for v in graph}
  for component in strongly_connected(graph):
    for v in component:
      group[v] = tuple(component)
  depth: dict[tuple[str, ...], int] = {}

  def depth_of(g: tuple[str, ...]) -> int:
    if g not in depth:
      below = {group[w] for v in g for w in graph.get(v, ()) if group[w] != g}
      depth[g] = 1 + max((depth_of(b) for b in below), default=-1)
    return depth[g]

  out: list[list[str]] = []
  for v in sorted(graph):
    d = depth_of(group[v])
    out += [[] for _ in range(d + 1 - len(out))]
    out[d].append(v)
  return out


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--modules", action="store_true", help="also print the module-level graph and layers")
  parser.add_argument("--check", action="store_true", help="exit status 1 when the packages form a cycle")
  args = parser.parse_args()

  modules = module_files()
  module_graph: dict[str, dict[str, bool]] = {m: imports_of(m, p, modules) for m, p in modules.items()}

  package_graph: dict[str, dict[str, bool]] = defaultdict(dict)
  for m, targets in module_graph.items():
    source = package_of(m, modules)
    package_graph.setdefault(source, {})
    for t, lazy in targets.items():
      target = package_of(t, modules)
      if target != source:
        package_graph[source][target] = package_graph[source].get(target, True) and lazy

  print("package-level imports (lazy = only inside functions):")
  for source in sorted(package_graph):
    targets = package_graph[source]
    listed = ", ".join(f"{t} (lazy)" if lazy else t for t, lazy in sorted(targets.items()))
    print(f"  {source} -> {listed or '-'}")

  print("\nlayers (each imports only from layers below it):")
  for depth, nodes in enumerate(layers({s: set(t) for s, t in package_graph.items()})):
    print(f"  {depth}: {', '.join(nodes)}")

  if args.modules:
    print("\nmodule-level imports:")
    for source in sorted(module_graph):
      listed = ", ".join(f"{t} (lazy)" if lazy else t for t, lazy in sorted(module_graph[source].items()))
      print(f"  {source} -> {listed or '-'}")
    print("\nmodule layers:")
    for depth, nodes in enumerate(layers({s: set(t) for s, t in module_graph.items()})):
      print(f"  {depth}: {', '.join(nodes)}")

  package_cycles = strongly_connected({s: set(t) for s, t in package_graph.items()})
  module_cycles = strongly_connected({s: set(t) for s, t in module_graph.items()})
  print("\ncycles:")
  for kind, cycles, graph in (("package", package_cycles, package_graph), ("module", module_cycles, module_graph)):
    if not cycles:
      print(f"  {kind} level: none")
    for cycle in cycles:
      edges = [f"{a} -> {b}{' (lazy)' if graph[a][b] else ''}" for a in cycle for b in sorted(graph[a]) if b in cycle]
      print(f"  {kind} level: {' <-> '.join(cycle)}: {'; '.join(edges)}")
  return 1 if args.check and package_cycles else 0


if __name__ == "__main__":
  sys.exit(main())
