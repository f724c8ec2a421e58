"""Lambda's unzipped limit: every zip function with all its layers, as `sam build` would ship it.

The requirements of each function and layer are resolved from PyPI for the Lambda platform
(manylinux x86_64, CPython 3.12, wheels only) without installing anything into this venv, and the
unzipped size is the sum of the wheels' members plus the source files. Wheels are cached under
~/.cache/cdnow-analytics/wheels, keyed by the requirements, so a rerun does not touch the network
(the same resolution the shipped environments are installed from: cdnow_offline/shipped.py).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from cdnow_offline.shipped import resolve_wheels
from cdnow_offline.template import load_template, translate_sam

# Lambda refuses a function whose code and layers unzip to more than this ("250 MB").
LAMBDA_UNZIPPED_LIMIT = 262_144_000
# The python3.12 runtime ships boto3 and its dependencies; a trimmed layer would leave them out.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "python_dateutil", "six", "urllib3"}
MB = 1_000_000


def wheel_sizes(wheels: list[Path]) -> dict[str, int]:
    """Unzipped bytes per distribution (the wheel's members, as pip would install them)."""
    return {
        wheel.name.split("-")[0].lower(): sum(member.file_size for member in zipfile.ZipFile(wheel).infolist())
        for wheel in wheels
    }


def source_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def shipped_size(folder: Path) -> dict[str, int]:
    """What a zip function or a layer built from `folder` unzips to: its files and its requirements."""
    sizes = {f"{folder.name}/ (source)": source_size(folder)}
    requirements = folder / "requirements.txt"
    if requirements.exists():
        sizes.update(wheel_sizes(resolve_wheels([requirements])))
    return sizes


def zip_functions(root: Path) -> dict[str, dict[str, dict[str, int]]]:
    """Each zip function of the template: its own code and each of its layers, by size."""
    template = load_template(root / "template.yaml")
    parameters = {k: str(v["Default"]) for k, v in template["Parameters"].items() if "Default" in v}
    cfn, artifacts = translate_sam(template, root, parameters, "us-east-1")
    resources = cfn["Resources"]
    functions = {}
    for logical_id, resource in resources.items():
        props = resource["Properties"]
        if resource["Type"] != "AWS::Lambda::Function" or props.get("PackageType") == "Image":
            continue
        parts = {"function": shipped_size(artifacts.code_dirs[props["Code"]["S3Key"]])}
        for layer in props.get("Layers", []):
            layer_id = layer.get("Ref") if isinstance(layer, dict) else None
            assert layer_id in resources, (
                f"{logical_id} uses a layer from outside the template ({layer}): its size cannot be "
                "measured here, and it counts toward the limit"
            )
            content = resources[layer_id]["Properties"]["Content"]["S3Key"]
            parts[layer_id] = shipped_size(artifacts.code_dirs[content])
        functions[logical_id] = parts
    return functions


@pytest.fixture(scope="module")
def measured(root):
    return zip_functions(root)


def test_the_template_has_zip_functions_to_measure(measured):
    assert "IngestFunction" in measured
    assert any(layer.startswith("SharedLayer") for layer in measured["IngestFunction"])


def test_every_zip_function_with_its_layers_fits_lambdas_unzipped_limit(measured):
    report = []
    for function, parts in measured.items():
        total = sum(sum(sizes.values()) for sizes in parts.values())
        report.append(f"{function}: {total / MB:.1f} MB = " + " + ".join(
            f"{name} {sum(sizes.values()) / MB:.1f}" for name, sizes in parts.items()))
        assert total < LAMBDA_UNZIPPED_LIMIT, "\n".join(report)
    print("\n".join(report))


def test_the_shared_layer_ships_powertools_and_the_cdnow_package(measured):
    layer = next(sizes for name, sizes in measured["IngestFunction"].items() if name.startswith("SharedLayer"))
    assert "aws_lambda_powertools" in layer
    assert layer["shared/ (source)"] > 100_000  # the cdnow package itself


def test_the_table_functions_would_not_fit_a_zip(root):
    """Why Features and Publish are container images: as zip functions they would ship the shared
    layer plus pandas, pyarrow, numpy and awswrangler, which unzip past the limit even without
    boto3 and its dependencies (the runtime's own)."""
    libraries = wheel_sizes(resolve_wheels([root / "functions" / "data-requirements.txt"]))
    assert {"pandas", "pyarrow", "numpy", "awswrangler"} <= set(libraries)
    libraries = {name: size for name, size in libraries.items() if name not in RUNTIME_PROVIDED}
    layer = shipped_size(root / "layers" / "shared")
    for function in ("features", "publish"):
        code = source_size(root / "functions" / function)
        total = code + sum(layer.values()) + sum(libraries.values())
        print(f"{function} as a zip: {total / MB:.1f} MB = code {code / MB:.2f} + shared layer "
              f"{sum(layer.values()) / MB:.1f} + pandas/pyarrow/numpy/awswrangler {sum(libraries.values()) / MB:.1f}")
        assert total > LAMBDA_UNZIPPED_LIMIT
