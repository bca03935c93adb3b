"""Import rules, read from the code: the simulator (sim/) and the hardware back end (hw/) read the dataflow graph
file and nothing else: they import neither torch, Brevitas, the training code, the flow nor the CLI.

Every import counts, at the top of a module or inside a function, relative or absolute, and
``importlib.import_module("...")`` with a constant name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]  # the repository root is the package `onebit`
FORBIDDEN = ("torch", "brevitas", "onebit.training", "onebit.flow", "onebit.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(("onebit", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def imported(path: Path) -> set[str]:
    """Every module name ``path`` imports, ``from a import b`` counting as ``a`` and ``a.b``."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


def forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


SOURCES = sorted(p for folder in ("sim", "hw") for p in (ROOT / folder).rglob("*.py"))


def test_sources_found():
    assert len(SOURCES) > 10 and (ROOT / "sim" / "__init__.py") in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_sim_and_hw_import_neither_torch_training_flow_nor_cli(path):
    bad = sorted(n for n in imported(path) if forbidden(n))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_reader_sees_every_kind_of_import(tmp_path, monkeypatch):
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    (tmp_path / "hw").mkdir()
    src = tmp_path / "hw" / "probe.py"
    src.write_text("import torch.nn\nfrom onebit import training\nfrom ..flow import engine\nimport onebit.cli_args\n"
                   "def f():\n    from onebit.cli import main\n    import importlib\n"
                   "    importlib.import_module('brevitas')\n")
    names = imported(src)
    assert sorted(n for n in names if forbidden(n)) == ["brevitas", "onebit.cli", "onebit.cli.main",
                                                         "onebit.flow", "onebit.flow.engine", "onebit.training",
                                                         "torch.nn"]
    assert not forbidden("onebit.cli_args") and not forbidden("onebit.sim.cli")
