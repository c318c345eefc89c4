"""Imports inside functions are the exception (issue 25): only heavy or optional libraries load on
first use (and, in the commands and the package's root, the stages themselves, so `comp --help`
starts fast), each under a one-line reason; everything else is imported at the module's top."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "competition"
# heavy (a second or more to import) or optional: the only libraries a function may import itself
LAZY = {"torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "pytorch_lightning",
        "sklearn", "scipy", "optuna", "cmaes", "sqlalchemy", "ray", "matplotlib", "lightgbm", "skops",
        "jinja2", "ftfy", "wandb", "pyarrow", "iterstrat", "pydantic", "numpy", "onnxruntime"}


def _function_imports(path: Path):
    """(line, root module, the lines above it) of every import inside a function of ``path``."""
    text = path.read_text()
    lines = text.splitlines()
    for func in ast.walk(ast.parse(text)):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    name = node.names[0].name if isinstance(node, ast.Import) else node.module
                    yield node.lineno, name.split(".")[0], lines[: node.lineno]


def _offences(path: Path) -> list[str]:
    stages_may_wait = "commands" in path.parts or path.name in ("cli.py", "__init__.py") and path.parent == PACKAGE
    out = []
    for line, root, above in set((a, b, tuple(c)) for a, b, c in _function_imports(path)):
        allowed = root in LAZY or (root == "competition" and stages_may_wait)
        if not allowed:
            out.append(f"{path.name}:{line}: `{root}` imported inside a function; import it at the top")
            continue
        reason = next((t.strip() for t in reversed(above[:-1]) if not t.strip().startswith(("import ", "from "))
                       and t.strip()), "")
        if not (reason.startswith("#") or "#" in above[-1]):
            out.append(f"{path.name}:{line}: `{root}` imported inside a function without a one-line reason")
    return out


def test_functions_import_only_heavy_libraries_each_with_a_reason():
    offences = [o for path in sorted(PACKAGE.rglob("*.py")) for o in _offences(path)]
    assert not offences, "\n".join(offences)


def test_the_check_catches_a_light_import_and_a_missing_reason(tmp_path):
    """The same rule on a module that breaks it twice: both are named."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import json\n    return json\n\n\ndef g():\n    import torch\n    return torch\n")
    offences = _offences(bad)
    assert any("`json` imported inside a function; import it at the top" in o for o in offences), offences
    assert any("`torch` imported inside a function without a one-line reason" in o for o in offences), offences
    assert len(offences) == 2
