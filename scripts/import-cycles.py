#!/usr/bin/env python3
"""No import circle inside a crate: reads every crate's `use crate::…` and
`use super::…` paths (tests and comments left out), builds the graph of
modules that name each other, and fails listing any cycle. A module naming
its own ancestor (`super::Endpoint` in `ws/upgrade.rs`) is the module
tree, not a circle. Run by scripts/test; `docs/ARCHITECTURE.md` says why."""

import os
import re
import sys


def module_of(root, path):
    parts = os.path.relpath(path, root)[:-3].split(os.sep)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    return tuple(parts)


def graph_of(root):
    files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".rs")]
    modules = {module_of(root, f): f for f in files}
    graph = {m: set() for m in modules}
    for module, path in modules.items():
        text = open(path, encoding="utf-8").read()
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
        text = "\n".join(l for l in text.split("\n") if not l.strip().startswith("//"))
        for kind, rest in re.findall(r"\b(crate|super)::([A-Za-z_][A-Za-z0-9_:]*)", text):
            base = [] if kind == "crate" else list(module[:-1])
            segments = rest.split("::")
            target = next(
                (
                    tuple(base + segments[:k])
                    for k in range(len(segments), -1, -1)
                    if tuple(base + segments[:k]) in modules
                ),
                None,
            )
            if target is None or target == module or module[: len(target)] == target:
                continue
            graph[module].add(target)
    return graph


def cycles(graph):
    sys.setrecursionlimit(10000)
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
                found.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def main():
    failed = False
    for crate in sorted(os.listdir("crates")):
        root = os.path.join("crates", crate, "src")
        if not os.path.isdir(root):
            continue
        for component in cycles(graph_of(root)):
            failed = True
            names = ", ".join("::".join(m) or "lib" for m in sorted(component))
            print(f"import circle in crates/{crate}: {names}")
    if failed:
        sys.exit(1)
    print("no import circle in any crate")


if __name__ == "__main__":
    main()
