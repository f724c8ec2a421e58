"""What each Lambda function ships, as folders a Python 3.12 process can run from.

A function's artifact is its code (the zip's folder, or what the Dockerfile copies into the task
root) and the packages its build installs (a layer's requirements.txt, as `sam build` installs
it; the requirement files the Dockerfile's `pip install -r` names), on top of what Lambda's
python3.12 runtime provides. Offline, those packages are resolved for the Lambda platform
(manylinux x86_64, CPython 3.12, wheels only) and installed into a site folder of their own,
never taken from the development venv: a package the venv happens to hold proves nothing.

Every site is keyed by the content of its requirement files, built once and cached under
`~/.cache/cdnow-analytics/` (`XDG_CACHE_HOME` moves it), so a rerun touches no registry.

The runtime's own packages: the python3.12 runtime ships boto3 and botocore, in a version AWS
updates now and then and that differs by region. `requirements/lambda-runtime.txt` pins the
version that stands in for it offline; it comes last on the path, so a layer's or an image's own
pins win, as they do on Lambda.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

PYTHON_VERSION = "3.12"
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34): these wheel tags load there.
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64")
RUNTIME_REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements" / "lambda-runtime.txt"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cdnow-analytics"


class ShippedEnvironmentError(RuntimeError):
    """A function's shipped packages could not be resolved or no Python 3.12 was found."""


def requirement_files(requirements: Path) -> list[Path]:
    """The file and every file it includes with -r, in order."""
    files = [requirements]
    for line in requirements.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("-r "):
            files += requirement_files(requirements.parent / line.split(maxsplit=1)[1])
    return files


def _key(requirements: Sequence[Path]) -> str:
    digest = hashlib.sha256(f"{PYTHON_VERSION} {' '.join(PLATFORMS)}".encode())
    for top in requirements:
        for path in requirement_files(top):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _platform_options() -> list[str]:
    options = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for platform in PLATFORMS:
        options += ["--platform", platform]
    return options


def _requirement_options(requirements: Sequence[Path]) -> list[str]:
    return [option for path in requirements for option in ("-r", str(path))]


def _pip(arguments: list[str], what: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        raise ShippedEnvironmentError(f"pip could not {what}:\n{done.stderr[-3000:]}")


@contextlib.contextmanager
def _building(target: Path):
    """Held while ``target`` is built: another process building the same entry (two test
    workers, two CLI runs) waits for it and then finds it complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def resolve_wheels(requirements: Sequence[Path]) -> list[Path]:
    """The wheels pip resolves the requirement files to for the Lambda platform, downloaded once."""
    target = CACHE / "wheels" / _key(requirements)
    if (target / ".complete").exists():
        return sorted(target.glob("*.whl"))
    with _building(target):
        return _download_wheels(requirements, target)


def _download_wheels(requirements: Sequence[Path], target: Path) -> list[Path]:
    if not (target / ".complete").exists():
        target.mkdir(parents=True, exist_ok=True)
        _pip(["download", "--quiet", *_platform_options(), "--dest", str(target),
              *_requirement_options(requirements)],
             f"resolve {', '.join(p.name for p in requirements)} for Lambda's python{PYTHON_VERSION}")
        (target / ".complete").touch()
    return sorted(target.glob("*.whl"))


def site(requirements: Sequence[Path]) -> Path:
    """A folder holding exactly what installing the requirement files together ships, as
    `pip install -r ... -r ...` lays it out, for Lambda's platform; built once per content."""
    target = CACHE / "sites" / _key(requirements)
    if (target / ".complete").exists():
        return target
    wheels = resolve_wheels(requirements)
    with _building(target):
        if not (target / ".complete").exists():
            _install_site(requirements, wheels, target)
    return target


def _install_site(requirements: Sequence[Path], wheels: list[Path], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        # From the downloaded wheels only: what was resolved is what is installed.
        _pip(["install", "--quiet", "--no-index", "--find-links", str(wheels[0].parent) if wheels else str(staging),
              "--no-compile", "--target", str(staging), *_platform_options(),
              *_requirement_options(requirements)],
             f"install {', '.join(p.name for p in requirements)} into a site folder")
        (staging / ".complete").touch()
        if target.exists():  # a half-built folder of an interrupted earlier attempt
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def runtime_site() -> Path:
    """What the python3.12 runtime provides beside the function: boto3 and botocore."""
    return site([RUNTIME_REQUIREMENTS])


@functools.cache
def python312() -> str:
    """A Python 3.12 interpreter: $PYTHON312, else the first python3.12 that runs (on PATH, or
    under ~/.pyenv, where a pyenv shim alone may not run it)."""
    candidates = [os.environ.get("PYTHON312"), shutil.which("python3.12")]
    candidates += sorted(str(p) for p in (Path.home() / ".pyenv" / "versions").glob("3.12*/bin/python3.12"))
    candidates += ["/usr/local/bin/python3.12", "/usr/bin/python3.12"]
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run([candidate, "-c", "import sys; print(sys.executable)"],
                                  capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    raise ShippedEnvironmentError(
        "no Python 3.12 found to run the functions as Lambda's python3.12 runtime does: "
        "install one, or set PYTHON312=/path/to/python3.12"
    )
