"""The cdnow package's layers, one folder each, and imports that point down only.

    cdnow/domain/        features, segments, churn, clv, runs: the definitions and models, pure
    cdnow/presentation/  charts, figures, report, messages, formatting, labels: what people read
    cdnow/adapters/      storage, observability: the only code that talks to AWS
    cdnow/pipeline.py    the seam the handlers call: one function per step, wiring the three

The domain imports nothing of the others; presentation and adapters may import the domain (and
their own folder); the pipeline may import all. Only the adapters import an AWS library. The
modules are read, not run, so every import counts, also one inside a function that no test
reaches, relative or absolute.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = "cdnow"
# A layer -> the layers it may import besides itself.
MAY_IMPORT = {
    "domain": set(),
    "presentation": {"domain"},
    "adapters": {"domain"},
    "pipeline": {"domain", "presentation", "adapters"},
}
# The AWS SDK and Powertools: for the adapters alone.
AWS_LIBRARIES = {"boto3", "botocore", "awswrangler", "aws_lambda_powertools", "aws_xray_sdk", "pyiceberg"}


def package_root(root: Path) -> Path:
    return root / "layers" / "shared" / PACKAGE


def module_name(path: Path, package_dir: Path) -> str:
    """cdnow/domain/features.py -> cdnow.domain.features; cdnow/domain/__init__.py -> cdnow.domain."""
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    """The layer a module of the package is in (its folder, or the pipeline seam), else None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == PACKAGE and parts[1] in MAY_IMPORT else None


def imports(source: str, module: str, is_package: bool = False) -> list[tuple[str, int]]:
    """Every (imported name, line) of a module's source, relative imports made absolute:
    ``from ..domain import runs`` in cdnow.presentation.report -> cdnow.domain.runs."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level > len(parts):
                    raise ValueError(f"{module}:{node.lineno}: a relative import above the package")
                origin = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                origin = node.module
            found += [(f"{origin}.{alias.name}", node.lineno) for alias in node.names]
    return found


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """What a module imports against the layering, one line each (empty when it keeps to it)."""
    layer = layer_of(module)
    found = []
    for name, line in imports(source, module, is_package):
        top = name.split(".")[0]
        if top in AWS_LIBRARIES and layer != "adapters":
            found.append(f"{module}:{line} imports {name}: AWS is for the adapters alone")
        if top != PACKAGE:
            continue
        target = layer_of(name)
        if layer is None:
            found.append(f"{module}:{line} imports {name}: the package root belongs to no layer")
        elif target is None:
            found.append(f"{module}:{line} imports {name}, which is in no layer")
        elif target != layer and target not in MAY_IMPORT[layer]:
            found.append(f"{module}:{line} imports {name}: {layer} may not import {target}")
    return found


def package_modules(root: Path) -> list[tuple[str, Path]]:
    package_dir = package_root(root)
    return [(module_name(path, package_dir), path) for path in sorted(package_dir.rglob("*.py"))]


def test_every_module_is_in_a_layer(root):
    modules = [name for name, _ in package_modules(root)]
    assert "cdnow.pipeline" in modules
    assert {layer_of(name) for name in modules} == {*MAY_IMPORT, None}
    assert [name for name in modules if layer_of(name) is None] == [PACKAGE], \
        "a module outside domain/, presentation/, adapters/ and pipeline.py"


def test_imports_point_down_only(root):
    found, seam_imports = [], set()
    for name, path in package_modules(root):
        source = path.read_text(encoding="utf-8")
        found += violations(source, name, path.name == "__init__.py")
        if name == "cdnow.pipeline":
            seam_imports = {layer_of(imported) for imported, _ in imports(source, name)} - {None}
    assert found == []
    # The imports were seen, not missed: the seam wires all three layers.
    assert seam_imports == {"domain", "presentation", "adapters"}


@pytest.mark.parametrize("module, source", [
    ("cdnow.domain.churn", "from ..presentation import charts\n"),
    ("cdnow.domain.churn", "def score():\n    from cdnow.adapters.storage import read_json\n"),
    ("cdnow.domain.runs", "from .. import pipeline\n"),
    ("cdnow.domain.runs", "import cdnow.pipeline\n"),
    ("cdnow.presentation.report", "from ..adapters import storage\n"),
    ("cdnow.presentation.figures", "from ..pipeline import run_summary\n"),
    ("cdnow.adapters.storage", "from ..presentation.formatting import count\n"),
    ("cdnow.adapters.storage", "from ..storage_helpers import split\n"),
    ("cdnow.domain.features", "import boto3\n"),
    ("cdnow.presentation.report", "from aws_lambda_powertools import Logger\n"),
    ("cdnow.pipeline", "import awswrangler as wr\n"),
    ("cdnow.pipeline", "from . import storage\n"),
])
def test_an_import_that_points_up_or_sideways_is_found(module, source):
    assert len(violations(source, module)) == 1, violations(source, module)


@pytest.mark.parametrize("module, source", [
    ("cdnow.domain.churn", "from .features import customer_features\nfrom . import clv\nimport numpy\n"),
    ("cdnow.presentation.figures", "from . import charts\nfrom ..domain.segments import bin_codes\n"),
    ("cdnow.presentation.report", "from cdnow.domain import runs\n"),
    ("cdnow.adapters.storage", "import boto3\nfrom ..domain.runs import RunLayout\n"),
    ("cdnow.pipeline", "from .adapters import storage\nfrom .domain.runs import RunLayout\n"
                       "from .presentation.report import render_report\n"),
])
def test_an_import_that_points_down_passes(module, source):
    assert violations(source, module) == []


def test_relative_imports_resolve_from_the_module_s_package():
    assert imports("from . import charts\nfrom ..domain.segments import bin_codes\n",
                   "cdnow.presentation.figures") == [
        ("cdnow.presentation.charts", 1), ("cdnow.domain.segments.bin_codes", 2)]
    assert imports("from .features import x\n", "cdnow.domain", is_package=True) == [
        ("cdnow.domain.features.x", 1)]


def test_the_offline_init_loads_every_module_a_step_imports_inside_its_function(root):
    # The pipeline imports the domain, presentation and history inside its step functions (Ingest
    # ships as a zip without pandas); offline, the in-process runner imports them in a Lambda-like
    # init phase instead of inside the Models steps' first invocations (lambda_runner.py).
    from cdnow_offline.lambda_runner import LAZY_LAYER_MODULES

    package_dir = package_root(root)
    tree = ast.parse((package_dir / "pipeline.py").read_text(encoding="utf-8"))
    inside_functions = set()
    for function in (node for node in tree.body if isinstance(node, ast.FunctionDef)):
        for name, _ in imports(ast.unparse(function), "cdnow.pipeline"):
            if name.split(".")[0] != PACKAGE:
                continue
            parts = name.split(".")
            is_module = (package_dir.parent.joinpath(*parts).with_suffix(".py")).is_file()
            inside_functions.add(name if is_module else ".".join(parts[:-1]))
    assert inside_functions == set(LAZY_LAYER_MODULES)


# The report's charts are drawn with matplotlib: by presentation/charts.py alone, in the steps that
# have the models' results (their images must ship it), never where Ingest's zip could load it.
CHART_LIBRARIES = {"matplotlib", "seaborn"}


def test_only_the_chart_module_imports_a_chart_library(root):
    importers = {name for name, path in package_modules(root)
                 for imported, _ in imports(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
                 if imported.split(".")[0] in CHART_LIBRARIES}
    assert importers == {"cdnow.presentation.charts"}
    # and the chart module reaches a step only through modules the pipeline imports inside its steps
    from cdnow_offline.lambda_runner import LAZY_LAYER_MODULES

    chart_users = {name for name, path in package_modules(root)
                   if "cdnow.presentation.charts" in {i for i, _ in imports(path.read_text(encoding="utf-8"), name)}}
    assert chart_users and chart_users <= set(LAZY_LAYER_MODULES)


def test_every_function_that_draws_charts_ships_matplotlib(root):
    import re

    from cdnow_offline.shipped import requirement_files
    from cdnow_offline.template import image_requirements, load_template

    package_dir = package_root(root)
    tree = ast.parse((package_dir / "pipeline.py").read_text(encoding="utf-8"))
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    drawing = {name for name, node in functions.items()
               if any(imported.startswith("cdnow.presentation.figures")
                      for imported, _ in imports(ast.unparse(node), "cdnow.pipeline"))}
    while True:  # and the functions that call one of them
        callers = {name for name, node in functions.items() if name not in drawing and any(
            isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in drawing
            for call in ast.walk(node))}
        if not callers:
            break
        drawing |= callers
    drawing_steps = {name for name in drawing if not name.startswith("_")}
    assert drawing_steps == {"segment", "churn", "value"}
    resources = load_template(root / "template.yaml")["Resources"]
    drawing_functions = []
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function" or resource["Properties"].get("PackageType") != "Image":
            continue
        folder = resource["Metadata"]["DockerBuildArgs"]["FUNCTION"]
        handler = (root / "functions" / folder / "app.py").read_text(encoding="utf-8")
        if not drawing_steps & set(re.findall(r"pipeline\.(\w+)\(", handler)):
            continue
        drawing_functions.append(name)
        pins = [line.strip() for top in image_requirements(resource, root) for path in requirement_files(top)
                for line in path.read_text(encoding="utf-8").splitlines()]
        assert any(re.fullmatch(r"matplotlib==[\d.]+", pin) for pin in pins), name
    assert sorted(drawing_functions) == ["ChurnFunction", "SegmentFunction", "ValueFunction"]
