"""The Glue job imports only what Glue 5.0 gives it.

Glue 5.0 runs the script on Python 3.11 with Spark 3.5 (pyspark and py4j) and boto3, plus what the
job's `--additional-python-modules` installs. Offline the script runs in this venv's local Spark,
which holds much more (pandas, the cdnow package, moto): an import of any of those would pass
offline and fail the first run on AWS. The script is read, not run, so every import counts, also
one inside a function that a test never reaches.
"""

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from cdnow_offline.template import load_template

# Every Glue job of the template (logical id) and its script.
GLUE_JOBS = {"TransformJob": "glue/cdnow_transform.py", "FeaturesJob": "glue/cdnow_features.py",
             "ScoreJob": "glue/cdnow_score.py"}
# What a job gets as --extra-py-files at run time (adapters/glue_code.py ships it), by job.
SHIPPED_PACKAGES = {"ScoreJob": {"cdnow"}}

# What a Glue 5.0 Spark job can import without installing anything, of what the script may use.
GLUE_PROVIDED = {"pyspark", "py4j", "boto3", "botocore"}
GLUE_PYTHON = (3, 11)


def imported_modules(script: Path) -> dict[str, int]:
    """Each top-level module the script imports, with the line of its first import."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"), filename=str(script))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # A relative import has no package to be relative to: Glue runs the script alone.
            names = ["." * node.level + (node.module or "")] if node.level else [node.module]
        else:
            continue
        for name in names:
            found.setdefault(name if name.startswith(".") else name.split(".")[0], node.lineno)
    return found


# Distributions whose import name differs.
IMPORT_NAMES = {"scikit_learn": "sklearn"}


def additional_python_modules(root: Path, job_id: str = "TransformJob") -> set[str]:
    """What the job's --additional-python-modules lets it import (import names)."""
    job = load_template(root / "template.yaml")["Resources"][job_id]["Properties"]
    modules = job.get("DefaultArguments", {}).get("--additional-python-modules", "")
    names = {m.split("==")[0].split(">")[0].split("<")[0].strip().replace("-", "_")
             for m in modules.split(",") if m.strip()}
    return {IMPORT_NAMES.get(name, name) for name in names}


def not_on_glue(script: Path, root: Path, job_id: str = "TransformJob") -> dict[str, int]:
    allowed = (GLUE_PROVIDED | additional_python_modules(root, job_id) | SHIPPED_PACKAGES.get(job_id, set())
               | set(sys.stdlib_module_names))
    return {name: line for name, line in imported_modules(script).items()
            if name not in allowed and name != "__future__"}


def test_every_glue_job_of_the_template_is_checked_here(root):
    resources = load_template(root / "template.yaml")["Resources"]
    jobs = {name: r["Properties"]["Command"]["ScriptLocation"] for name, r in resources.items()
            if r["Type"] == "AWS::Glue::Job"}
    assert jobs == GLUE_JOBS


@pytest.mark.parametrize("job_id", sorted(GLUE_JOBS))
def test_the_glue_job_runs_on_python_3_11_as_glue_5_does(root, job_id):
    job = load_template(root / "template.yaml")["Resources"][job_id]["Properties"]
    assert job["GlueVersion"] == "5.0"
    assert sys.version_info[:2] == GLUE_PYTHON, "the offline Glue adapter must run the script on Glue's Python"


@pytest.mark.parametrize("job_id", sorted(GLUE_JOBS))
def test_the_glue_script_imports_only_what_glue_provides(root, job_id):
    script = root / GLUE_JOBS[job_id]
    assert {"pyspark", "boto3"} <= set(imported_modules(script))
    assert not_on_glue(script, root, job_id) == {}


def pins(path: Path) -> dict[str, str]:
    """name -> version of a requirements file and the files it includes."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found |= pins(path.parent / line.split(maxsplit=1)[1])
        elif "==" in line:
            name, version = line.split("==")
            found[name.split("[")[0].strip().lower().replace("_", "-")] = version.strip()
    return found


def installed_with(root: Path, job_id: str) -> set[str]:
    """The import names of what pip installs with the job's --additional-python-modules: their
    required dependencies (no extras), as this venv's metadata of the same pins lists them."""
    job = load_template(root / "template.yaml")["Resources"][job_id]["Properties"]
    distributions = [m.split("==")[0].strip() for m in
                     job["DefaultArguments"].get("--additional-python-modules", "").split(",") if m.strip()]
    import_names: dict[str, set[str]] = {}
    for name, owners in metadata.packages_distributions().items():
        for owner in owners:
            import_names.setdefault(owner.lower().replace("_", "-"), set()).add(name)
    found: set[str] = set()
    for distribution in distributions:
        for requirement in metadata.requires(distribution) or []:
            if "extra ==" in requirement:
                continue
            dependency = re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")
            found |= import_names.get(dependency, set())
    return found


def test_the_score_job_computes_with_the_model_images_pins(root):
    job = load_template(root / "template.yaml")["Resources"]["ScoreJob"]["Properties"]
    modules = dict(m.strip().split("==") for m in job["DefaultArguments"]["--additional-python-modules"].split(","))
    images = pins(root / "functions" / "models-requirements.txt")
    assert {name: images[name] for name in modules} == modules
    assert {"numpy", "pandas", "pyarrow", "scipy", "scikit-learn"} <= set(modules)


def test_the_shipped_modules_the_score_job_imports_need_nothing_glue_lacks(root):
    # The layer's modules the job imports, and theirs within the package, transitively: each
    # may import only what the job has (the package itself, its modules, the standard library).
    package = root / "layers" / "shared"
    allowed = (GLUE_PROVIDED | additional_python_modules(root, "ScoreJob") | installed_with(root, "ScoreJob")
               | {"cdnow"} | set(sys.stdlib_module_names))
    seen, queue = set(), ["cdnow.domain.segments", "cdnow.domain.churn", "cdnow.domain.clv"]
    while queue:
        module = queue.pop()
        if module in seen:
            continue
        seen.add(module)
        path = package / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = package / module.replace(".", "/") / "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = module.rsplit(".", node.level)[0]
                targets = [f"{base}.{node.module}" if node.module else f"{base}.{alias.name}" for alias in node.names]
                targets = [t if (package / (t.replace(".", "/") + ".py")).exists() else t.rsplit(".", 1)[0]
                           for t in targets]
                queue += targets
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
                for name in names:
                    assert name.split(".")[0] in allowed, f"{module} imports {name}, which the Score job lacks"
                    if name.startswith("cdnow."):
                        queue.append(name)
    assert {"cdnow.domain.segments", "cdnow.domain.churn", "cdnow.domain.clv", "cdnow.domain.support"} <= seen


def test_an_import_glue_does_not_provide_is_found(root, tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import json\nfrom pyspark.sql import functions as F\n\n"
                      "def parse(rows):\n    import pandas\n    from cdnow.domain.features import customer_features\n")
    assert not_on_glue(script, root) == {"pandas": 5, "cdnow": 6}


def test_dotted_imports_count_by_package_and_relative_ones_never_pass(root, tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import pyspark.sql.functions\nfrom .sibling import helper\n")
    assert not_on_glue(script, root) == {".sibling": 2}
