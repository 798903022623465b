"""The tree shows the design: methods are packages registered in one place, importing the engine,
readout, metrics and results but never each other; no module grows past about 400 lines."""

import ast
import importlib
from pathlib import Path

import pytest

from layerscope.methods import METHODS, demo_sections

SRC = Path(__file__).parents[1] / "src" / "layerscope"
MAX_LINES = 400


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


@pytest.mark.parametrize("method", METHODS)
def test_a_method_imports_no_other_method(method):
    others = [m for m in METHODS if m != method]
    for path in (SRC / "methods" / method).rglob("*.py"):
        for name in _imports(path):
            for other in others:
                assert not name.startswith(f"layerscope.methods.{other}"), f"{path.name} imports {name}"
            if name.startswith("layerscope.cli") and not name.startswith("layerscope.cli.common"):
                pytest.fail(f"{path.name} imports {name}: a method uses only the shared cli.common")


@pytest.mark.parametrize("method", METHODS)
def test_a_method_package_has_api_cli_plots_and_report(method):
    package = importlib.import_module(f"layerscope.methods.{method}")
    assert package.__all__ and all(hasattr(package, name) for name in package.__all__)
    assert callable(importlib.import_module(f"layerscope.methods.{method}.cli").register)
    assert importlib.import_module(f"layerscope.methods.{method}.plots")
    assert importlib.import_module(f"layerscope.methods.{method}.report").DEMO_SECTIONS
    import layerscope as ls

    assert getattr(ls, method) is package  # ls.<method>


def test_the_demo_reads_the_registry():
    from layerscope.cli import demo

    assert demo.sections() == [*demo_sections(), ("claims", demo.section_claims)]  # the claims close the demo
    names = [name for name, _ in demo_sections()]
    assert names[0] == "logit lens" and names[-1] == "activation patching"


def test_no_module_over_the_limit():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_package_declares_all():
    missing = []
    for init in SRC.rglob("__init__.py"):
        if "__all__" not in init.read_text():
            missing.append(str(init.relative_to(SRC)))
    assert not missing
