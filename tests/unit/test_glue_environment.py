"""The Glue job imports only what Glue 5.0 gives it.

Glue 5.0 runs the script on Python 3.11 with Spark 3.5 (pyspark and py4j) and boto3, plus what the
job's `--additional-python-modules` installs. Offline the script runs in this venv's local Spark,
which holds much more (pandas, the cdnow package, moto): an import of any of those would pass
offline and fail the first run on AWS. The script is read, not run, so every import counts, also
one inside a function that a test never reaches.
"""

import ast
import sys
from pathlib import Path

import pytest

from cdnow_offline.template import load_template

# Every Glue job of the template (logical id) and its script.
GLUE_JOBS = {"TransformJob": "glue/cdnow_transform.py", "FeaturesJob": "glue/cdnow_features.py"}

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


def additional_python_modules(root: Path, job_id: str = "TransformJob") -> set[str]:
    job = load_template(root / "template.yaml")["Resources"][job_id]["Properties"]
    modules = job.get("DefaultArguments", {}).get("--additional-python-modules", "")
    return {m.split("==")[0].split(">")[0].split("<")[0].strip().replace("-", "_")
            for m in modules.split(",") if m.strip()}


def not_on_glue(script: Path, root: Path, job_id: str = "TransformJob") -> dict[str, int]:
    allowed = GLUE_PROVIDED | additional_python_modules(root, job_id) | set(sys.stdlib_module_names)
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


def test_an_import_glue_does_not_provide_is_found(root, tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import json\nfrom pyspark.sql import functions as F\n\n"
                      "def parse(rows):\n    import pandas\n    from cdnow.domain.features import customer_features\n")
    assert not_on_glue(script, root) == {"pandas": 5, "cdnow": 6}


def test_dotted_imports_count_by_package_and_relative_ones_never_pass(root, tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import pyspark.sql.functions\nfrom .sibling import helper\n")
    assert not_on_glue(script, root) == {".sibling": 2}
