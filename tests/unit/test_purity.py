"""loopwise/ stays a pure library: no orchestration imports, nothing at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

FORBIDDEN = {"prefect", "mlflow", "boto3", "great_expectations", "label_studio_sdk"}
PACKAGE = Path(__file__).resolve().parents[2] / "loopwise"


def test_no_module_of_loopwise_imports_an_orchestration_package():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            offenders += [
                f"{path.name}:{node.lineno} {m}" for m in mods if m.split(".")[0] in FORBIDDEN
            ]
    assert offenders == []


def test_importing_every_module_loads_no_orchestration_package_and_writes_nothing(tmp_path):
    modules = sorted(
        "loopwise." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" or p.parent != PACKAGE
    )
    modules = [m.removesuffix(".__init__") for m in modules]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(set(m.split('.')[0] for m in sys.modules) & {FORBIDDEN!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []  # no file or folder created at import time
