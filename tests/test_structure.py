"""The package's shape: no import cycles, no imports inside functions to dodge one, no repeated blocks.

* The import graph of ``rl3jax`` (module-level and function-level imports alike) has no cycle.
* A package module is imported inside a function only in ``rl3jax/cli.py``, which validates a command line
  before JAX starts (a config error costs about 0.2 s; ``scripts/config_error_latency.py``) and so imports the
  modules that run a command only once the command is known to be valid. Third-party imports inside functions
  (matplotlib, scipy, wandb, ...) are optional or slow dependencies and are not counted.
* No block of ``MIN_LINES`` consecutive code lines appears twice in ``rl3jax/``, even with other names: lines
  are compared after every identifier, number and string is replaced by a placeholder (keywords, operators and
  attribute/call structure stay). Blocks of fewer than ``MIN_TOKENS`` tokens (e.g. six one-word lines) are too
  small to count, and so are blocks of fewer than ``MIN_DISTINCT`` different lines (a table of declarations
  of one shape, such as a pytree's fields) and a table's overlapping matches with itself.
* No module of ``rl3jax/`` is over ``MAX_MODULE_LINES`` lines and no function over ``MAX_FUNCTION_LINES``.
"""

from __future__ import annotations

import ast
import io
import keyword
import os
import tokenize
from collections import defaultdict

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "rl3jax")
#: modules allowed to import package modules inside functions, and why
LAZY_ALLOWED = {"rl3jax.cli": "validates before JAX starts; imports the command's modules once it is valid"}
MIN_LINES = 10
MIN_TOKENS = 40
#: a block must hold this many different lines (six declarations of the same shape are a table, not logic)
MIN_DISTINCT = 3
#: f-strings are tokenised in parts from Python 3.12
_STRING_TOKENS = {tokenize.STRING} | {getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE",
                                                                     "FSTRING_END") if hasattr(tokenize, n)}


def _modules(pkg: str = PKG) -> dict[str, str]:
    out = {}
    root = os.path.dirname(pkg)
    for dirpath, _, files in os.walk(pkg):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = path
    return out


def _resolve(name: str, modules: dict) -> str | None:
    """The package module an imported name refers to (``rl3jax.envs.grid.GridWorld`` -> ``rl3jax.envs.grid``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(path: str, modname: str, modules: dict):
    """Yields (imported package module, is_function_level, line) for every import in the file."""
    tree = ast.parse(open(path).read(), path)

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for a in child.names:
                    target = _resolve(a.name, modules)
                    if target:
                        yield target, in_function, child.lineno
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = modname if path.endswith("__init__.py") else modname.rpartition(".")[0]
                    for _ in range(child.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}" if base else pkg
                for a in child.names:
                    target = _resolve(f"{base}.{a.name}", modules)
                    if target:
                        yield target, in_function, child.lineno
            yield from visit(child, inside)

    yield from visit(tree, False)


def _graph():
    modules = _modules()
    edges, lazy = defaultdict(set), []
    for mod, path in modules.items():
        for target, in_function, line in _imports(path, mod, modules):
            if target == mod or mod.startswith(target + ".") and modules[target].endswith("__init__.py"):
                continue  # a module importing its own package's __init__
            edges[mod].add(target)
            if in_function:
                lazy.append((mod, target, line))
    return modules, edges, lazy


def test_no_import_cycles():
    modules, edges, _ = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def dfs(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                dfs(t)
        stack.pop()
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            dfs(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_function_level_imports_of_package_modules():
    _, _, lazy = _graph()
    bad = sorted({f"{m}:{line} imports {t}" for m, t, line in lazy if m not in LAZY_ALLOWED})
    assert not bad, "imports inside functions: " + "; ".join(bad)


def _normalised_lines(path: str) -> list[tuple[int, str, int]]:
    """(line number, normalised text, token count) of each code line (docstrings, comments and class-level
    field declarations dropped)."""
    src = open(path).read()
    doc_lines = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                    and isinstance(first.value.value, str):
                doc_lines.update(range(first.lineno, first.end_lineno + 1))
        if isinstance(node, ast.ClassDef):  # field declarations (a pytree's or a dataclass's) are not logic
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign):
                    doc_lines.update(range(stmt.lineno, stmt.end_lineno + 1))
    lines: dict[int, list[str]] = defaultdict(list)
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                        tokenize.ENDMARKER) or tok.start[0] in doc_lines:
            continue
        if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
            text = "N"
        elif tok.type == tokenize.NUMBER:
            text = "0"
        elif tok.type in _STRING_TOKENS:
            text = "S"
        else:
            text = tok.string
        lines[tok.start[0]].append(text)
    return [(n, " ".join(toks), len(toks)) for n, toks in sorted(lines.items())
            if toks and toks[0] not in ("import", "from", "@")]


def repeated_blocks(pkg: str = PKG, min_lines: int = MIN_LINES, min_tokens: int = MIN_TOKENS) -> list[str]:
    """Places where a block of ``min_lines`` normalised code lines occurs more than once in ``pkg``."""
    seen: dict[tuple, list[str]] = defaultdict(list)
    for _, path in sorted(_modules(pkg).items()):
        lines = _normalised_lines(path)
        for i in range(len(lines) - min_lines + 1):
            window = lines[i:i + min_lines]
            if sum(w[2] for w in window) < min_tokens or len({w[1] for w in window}) < MIN_DISTINCT:
                continue
            seen[tuple(w[1] for w in window)].append((path, window[0][0], window[-1][0]))
    out = []
    for locs in seen.values():
        # a run of one repeated pattern (a table) matches itself shifted: only copies that do not overlap count
        apart = [loc for k, loc in enumerate(locs)
                 if not any(p == loc[0] and p_end >= loc[1] for p, _, p_end in locs[:k])]
        if len(apart) > 1:
            out.append(" = ".join(f"{os.path.relpath(p, os.path.dirname(pkg))}:{a}" for p, a, _ in apart))
    return out


def test_no_repeated_blocks():
    dups = repeated_blocks()
    assert not dups, f"{len(dups)} repeated blocks of {MIN_LINES}+ lines:\n" + "\n".join(dups)


@pytest.mark.parametrize("src,expected", [
    ("a = f(x)\nb = g[y]\nc = h(z) + 1\nif d:\n    e = m(v, w)\nq = n(u, 1)\n", 1),
    ("a = f(x)\nb = g[y]\nc = h(z) + 1\nif d:\n    e = m(v, w)\nq = n(u, 1, 2)\n", 0),
])
def test_repeated_block_detector_sees_renamed_copies(tmp_path, src, expected):
    """The detector itself: a copy with every name changed is found; a one-token change is not a copy."""
    pkg = tmp_path / "rl3jax"
    pkg.mkdir()
    (pkg / "a.py").write_text("a = f(x)\nb = g[y]\nc = h(z) + 1\nif d:\n    e = m(v, w)\nq = n(u, 1)\n")
    (pkg / "b.py").write_text(src.replace("f(", "ff(").replace("x", "xx"))
    assert len(repeated_blocks(str(pkg), min_lines=6, min_tokens=10)) == expected


#: no module of ``rl3jax/`` over this many lines, no function over ``MAX_FUNCTION_LINES`` (decorators included)
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def _oversized(modules: dict[str, str]) -> list[str]:
    out = []
    for name, path in sorted(modules.items()):
        with open(path) as f:
            src = f.read()
        if len(src.splitlines()) > MAX_MODULE_LINES:
            out.append(f"{name}: {len(src.splitlines())} lines > {MAX_MODULE_LINES}")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - start + 1 > MAX_FUNCTION_LINES:
                    out.append(f"{name}.{node.name}: {node.end_lineno - start + 1} lines > {MAX_FUNCTION_LINES}")
    return out


def test_no_oversized_module_or_function():
    assert _oversized(_modules()) == []


def test_size_check_sees_a_long_function_and_module(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (pkg / "long.py").write_text(f"@staticmethod\ndef f():\n{body}\n" + "\n" * MAX_MODULE_LINES)
    (pkg / "short.py").write_text("def g():\n    return 1\n")
    found = _oversized(_modules(str(pkg)))
    assert any(s.startswith("pkg.long.f: 62 lines") for s in found)
    assert any(s.startswith("pkg.long: ") for s in found) and not any("short" in s for s in found)
