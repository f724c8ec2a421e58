"""The ``cdnow`` package as the Glue jobs of the Spark path load it (``--extra-py-files``).

The Score job calls the layer's own scoring functions on Spark's executors, so the package must
reach Glue, and SAM does not package a job's extra Python files. The Features Lambda, which runs
the layer, ships its own copy: a zip of the package it imports, built the same way every time
(files in name order, fixed timestamps, no ``__pycache__``), stored under a key named by the
zip's SHA-256. So the Glue job always runs the very code the Lambdas run, a new layer version
uploads a new archive, and an unchanged one is uploaded once.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from functools import cache
from pathlib import Path

from . import storage

# Where the archives live in the curated bucket.
CODE_PREFIX = "code/"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


@cache
def package_archive() -> bytes:
    """The zip of the ``cdnow`` package this process imports: ``cdnow/...`` at the zip's root,
    as Python imports a package from a zip on its path."""
    package = Path(__file__).resolve().parents[1]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(package.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            name = path.relative_to(package.parent).as_posix()
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def archive_uri(curated_bucket: str) -> str:
    digest = hashlib.sha256(package_archive()).hexdigest()[:16]
    return f"s3://{curated_bucket}/{CODE_PREFIX}cdnow-{digest}.zip"


def shipped_package(curated_bucket: str) -> str:
    """The s3:// URI of this package's archive, uploaded when it is not there yet."""
    uri = archive_uri(curated_bucket)
    if storage.read_bytes_if_exists(uri, limit=1) is None:
        storage.write_bytes(uri, package_archive(), "application/zip")
    return uri
