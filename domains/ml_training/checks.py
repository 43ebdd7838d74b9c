"""Static checks of a candidate's train.py, before any run: it compiles, and it leaves the harness alone.

These catch accidents and obvious cheats early, with a clear reason and without spending a run
(monkeypatching the harness, defining an own evaluation, printing an own summary, opening harness.py). They
are not the boundary: the number recorded comes from evaluator.py in a separate sandbox, on data the run
never saw, and the sandbox (core/sandbox.py) bounds what a run can do (tests/test_attacks.py).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

from ledgerlab.errors import InvalidCandidate

ARTIFACT = "train.py"
HARNESS_MODULE = "harness"
SUMMARY_KEYS = ("val_bpb", "signature")
FORBIDDEN_DEFS = {"evaluate_bpb", "check_causal"}
FORBIDDEN_CALLS = {"setattr", "delattr"}  # on the harness or a module
FORBIDDEN_ATTRS = {"modules"}  # sys.modules: reaching into loaded modules


def validate_files(files: Mapping[str, str]) -> None:
    """Raise InvalidCandidate unless `files` is exactly a train.py that compiles and passes the checks."""
    names = sorted(files)
    if names != [ARTIFACT]:
        extra = [n for n in names if n != ARTIFACT]
        raise InvalidCandidate(f"only {ARTIFACT} may change; the candidate also has {extra or 'no ' + ARTIFACT}")
    source = files[ARTIFACT]
    try:
        tree = compile(source, ARTIFACT, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        assert isinstance(tree, ast.Module)  # what "exec" with PyCF_ONLY_AST returns
        compile(tree, ARTIFACT, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise InvalidCandidate(f"{ARTIFACT} does not compile: {exc.msg} (line {exc.lineno})") from None
    except ValueError as exc:  # e.g. null bytes
        raise InvalidCandidate(f"{ARTIFACT} does not compile: {exc}") from None
    problems = find_tampering(tree)
    if problems:
        raise InvalidCandidate(f"{ARTIFACT} tampers with the harness: " + "; ".join(problems[:3]))


def find_tampering(tree: ast.AST) -> list[str]:
    """Reasons, with line numbers, why this train.py reaches into the harness or the evaluation."""
    modules = _imported_modules(tree)  # local names bound to modules (harness included)
    harness_names = {name for name, module in modules.items() if module == HARNESS_MODULE}
    harness_names |= _names_bound_from(tree, harness_names)  # session = harness.start()
    docstrings = _docstrings(tree)
    problems: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        problems.append(f"line {getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == HARNESS_MODULE:
            for alias in node.names:
                if alias.name.startswith("_") or alias.name == "*":
                    report(node, f"imports harness internals ({alias.name})")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in FORBIDDEN_DEFS:
            report(node, f"defines its own {node.name}")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                base = None if isinstance(target, ast.Name) else _attribute_base(target)
                if base in harness_names or base in modules:
                    report(node, f"assigns to {ast.unparse(target)} (monkeypatching)")
        elif isinstance(node, ast.Attribute):
            base = _attribute_base(node)
            if base in harness_names and node.attr.startswith("_"):
                report(node, f"uses harness internals ({ast.unparse(node)})")
            if node.attr in FORBIDDEN_ATTRS and base in modules:
                report(node, f"reaches into loaded modules ({ast.unparse(node)})")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            if node.args and _attribute_base(node.args[0]) in (harness_names | set(modules)):
                report(node, f"calls {node.func.id} on {ast.unparse(node.args[0])}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
            if "harness.py" in text:
                report(node, "refers to harness.py")
            if any(text.lstrip().startswith(f"{key}:") for key in SUMMARY_KEYS):
                report(node, "prints its own summary line")
    return problems


# ------------------------------------------------------------------------------------------- helpers


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _imported_modules(tree: ast.AST) -> dict[str, str]:
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = alias.name.split(".")[0]
    return names


def _names_bound_from(tree: ast.AST, sources: set[str]) -> set[str]:
    """Names assigned from an expression rooted at one of `sources` (e.g. `session = harness.start()`)."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _attribute_base(node.value) in sources:
            bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        if isinstance(node, ast.ImportFrom) and node.module == HARNESS_MODULE:
            bound |= {alias.asname or alias.name for alias in node.names}
    return bound


def _attribute_base(node: ast.AST) -> str | None:
    """The root name of `a.b.c`, `a.b()`, `a[0].b` ... or None."""
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None
