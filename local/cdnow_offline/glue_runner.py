"""The Glue adapter: moto's Glue job runs run the real script in local Spark.

moto records job runs but never runs a script. This adapter patches `FakeJob.start_job_run` (the
job's method, which the backend's calls) to hold the run at RUNNING (moto_defects.hold_glue_job_run)
and run the job's script on a thread, in one SparkSession kept for the whole process (a JVM per
job costs 10-20 s), then set the run's state itself, with the error on failure
(moto_defects.glue_job_runs_have_no_error_message returns it as Glue's `ErrorMessage`).
The job's `Timeout` (minutes, the run's own when it gives one) is enforced as Glue does: past it
the run is TIMEOUT, its Spark jobs are cancelled, and nothing it wrote is uploaded.

Offline Spark cannot read s3:// (no hadoop-aws jar can be fetched), so the adapter stages: each
argument naming an existing S3 object is downloaded to a staging folder, and so is each argument
naming a prefix (ending in "/") with objects under it, whole (a table's parquet files, such as
the Transform's rows the Features job reads; an output prefix that holds an earlier attempt's
files is downloaded too, and Spark's overwrite replaces them). The script reads and writes through
the `spark_path` mapping it is given (identity on Glue), and the files Spark wrote are uploaded
back, replacing what was under each written prefix, as Spark's overwrite does on S3; a staged
input is never uploaded.
A job's `--extra-py-files` (comma-separated s3:// objects: the Score job's cdnow archive) are
staged like any input and added to the session's Python path with `addPyFile`, as Glue puts them
on the driver's and the executors' path; Spark keeps one file per name, and the archives are
named by their content, so each name is added once.
Everything else the script does (its boto3 calls included) is the code that runs on Glue.
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from cdnow.adapters.storage import split_s3_uri
from moto.glue.models import FakeJob, FakeJobRun

from .identities import Identities
from .moto_defects import hold_glue_job_run

_SPARK_SIDE_FILES = (".crc",)
# moto's own method, kept before any patching so that a second install never wraps the first.
_MOTO_START_JOB_RUN = FakeJob.start_job_run


# Each object staged with one GET: moto serves a ranged GET by reading the whole object first,
# so boto3's 8 MB ranges made staging quadratic in the object's size (a 2.6 GB file: hundreds
# of full reads).
_ONE_REQUEST = TransferConfig(multipart_threshold=1 << 62, use_threads=False)


def _py_file_uris(extra_py_files: str) -> list[str]:
    return [part.strip() for part in str(extra_py_files).split(",") if part.strip()]


class LocalGlueRunner:
    def __init__(self, spark: Callable[[], Any], identities: Identities, staging_root: Path | None = None):
        """`spark` returns the shared SparkSession (it may block until the JVM is up); the job
        (its staging included) runs with credentials of the job's role from `identities`."""
        self._spark = spark
        self._identities = identities
        if staging_root is None:
            staging_root = Path(tempfile.mkdtemp(prefix="cdnow-glue-"))
            # Its py-files stay on the process's SparkSession's path while the process lives:
            # removed when the process ends (each run's own staging goes when the run ends).
            atexit.register(shutil.rmtree, staging_root, ignore_errors=True)
        self._staging_root = staging_root
        self.scripts: dict[str, Path] = {}
        self._modules: dict[Path, ModuleType] = {}
        self._lock = threading.Lock()
        self._py_files: set[str] = set()

    def register(self, job_name: str, script: Path) -> None:
        self.scripts[job_name] = script

    def install(self) -> None:
        runner = self

        def start_job_run(job: FakeJob, *args, **kwargs) -> str:
            run_id = _MOTO_START_JOB_RUN(job, *args, **kwargs)
            job_run = next(r for r in job.job_runs if r.job_run_id == run_id)
            hold_glue_job_run(job_run)  # only this adapter moves the state now
            threading.Thread(
                target=runner.run, args=(job.name, job_run, job.role), name=f"glue-{job.name}", daemon=True
            ).start()
            return run_id

        FakeJob.start_job_run = start_job_run

    def _script(self, job_name: str) -> ModuleType:
        script = self.scripts[job_name]
        with self._lock:
            if script not in self._modules:
                name = f"offline_glue_{script.stem}"
                spec = importlib.util.spec_from_file_location(name, script)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module  # dataclasses in the script look their module up
                spec.loader.exec_module(module)
                self._modules[script] = module
            return self._modules[script]

    def run(self, job_name: str, job_run: FakeJobRun, role: str) -> None:
        """Run the job's script on a thread of its own and end the run at its Timeout if the
        script has not ended by then."""
        finishing = threading.Lock()  # held while a finished script's outputs go up
        worker = threading.Thread(target=self._run, args=(job_name, job_run, role, finishing),
                                  name=f"glue-{job_name}-{job_run.job_run_id[:8]}", daemon=True)
        worker.start()
        worker.join(timeout=job_run.timeout * 60)
        with finishing:
            if job_run.status == "RUNNING":  # Glue's TIMEOUT: the run ends, what it wrote stays staged
                job_run.status = "TIMEOUT"
                job_run.completed_on = datetime.now(timezone.utc)
                self._spark().sparkContext.cancelJobGroup(job_run.job_run_id)

    def _run(self, job_name: str, job_run: FakeJobRun, role: str, finishing: threading.Lock) -> None:
        staging = Path(tempfile.mkdtemp(prefix=f"{job_run.job_run_id[:12]}-", dir=self._staging_root))
        try:
            with self._identities.acting_as(role):
                argv = [part for key, value in job_run.arguments.items() for part in (key, str(value))]
                # --extra-py-files is a comma-separated list (any other value is one location).
                values = [value for key, value in job_run.arguments.items() if key != "--extra-py-files"]
                values += _py_file_uris(job_run.arguments.get("--extra-py-files", ""))
                staged_inputs = self._stage_inputs(values, staging)

                def spark_path(uri: str) -> str:
                    bucket, key = split_s3_uri(uri)
                    # Not Path.as_uri(): it percent-encodes the '=' of run_id= folders.
                    return f"file://{staging / bucket / key}" + ("/" if uri.endswith("/") else "")

                spark = self._spark()
                self._add_py_files(spark, job_run.arguments.get("--extra-py-files", ""), staging)
                # This thread's Spark jobs, so that a timeout can cancel them (PySpark pins a
                # Python thread to a JVM thread of its own).
                spark.sparkContext.setJobGroup(job_run.job_run_id, f"{job_name} {job_run.job_run_id}",
                                               interruptOnCancel=True)
                self._script(job_name).main(argv, spark=spark, spark_path=spark_path)
                with finishing:
                    if job_run.status != "RUNNING":
                        return  # timed out meanwhile: nothing is uploaded
                    self._upload_outputs(staging, staged_inputs)
                    self._end(job_run, "SUCCEEDED")
        except Exception as exc:  # noqa: BLE001 - the failure is the job run's state, as on Glue
            with finishing:
                if job_run.status == "RUNNING":
                    traceback.print_exception(exc, limit=-3)
                    self._end(job_run, "FAILED", f"{type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _add_py_files(self, spark, extra_py_files: str, staging: Path) -> None:
        """Each staged `--extra-py-files` object on the session's Python path, once per name
        (copied out of the run's staging folder, which goes when the run ends)."""
        for uri in _py_file_uris(extra_py_files):
            bucket, key = split_s3_uri(uri)
            staged = staging / bucket / key
            if not staged.is_file():
                raise FileNotFoundError(f"--extra-py-files: {uri} does not exist")
            with self._lock:
                if staged.name in self._py_files:
                    continue
                kept = self._staging_root / "py-files" / staged.name
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(staged, kept)
                spark.sparkContext.addPyFile(str(kept))
                self._py_files.add(staged.name)

    @staticmethod
    def _end(job_run: FakeJobRun, state: str, error_message: str | None = None) -> None:
        job_run.error_message = error_message
        job_run.completed_on = datetime.now(timezone.utc)
        job_run.status = state

    @staticmethod
    def _stage_inputs(values, staging: Path) -> set[Path]:
        s3 = boto3.client("s3")
        staged: set[Path] = set()
        for value in values:
            if not (isinstance(value, str) and value.startswith("s3://")):
                continue
            bucket, key = split_s3_uri(value)
            if value.endswith("/"):
                # A prefix: every object under it (none: an output location). A denied listing
                # is the job's failure, as Spark's read would be on Glue.
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
                    for item in page.get("Contents", []):
                        if item["Key"].endswith("/"):
                            continue  # a "folder" marker object, not a file
                        target = staging / bucket / item["Key"]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        s3.download_file(bucket, item["Key"], str(target), Config=_ONE_REQUEST)
                        staged.add(target)
                continue
            try:
                s3.head_object(Bucket=bucket, Key=key)
            except s3.exceptions.ClientError as error:
                if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                    continue  # an output location or a prefix, not an input object
                raise  # a denied read (403) is the job's failure, as Spark's read would be on Glue
            target = staging / bucket / key
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target), Config=_ONE_REQUEST)
            staged.add(target)
        return staged

    @staticmethod
    def _upload_outputs(staging: Path, staged_inputs: set[Path]) -> None:
        s3 = boto3.client("s3")
        written = [
            p for p in staging.rglob("*")
            if p.is_file() and p not in staged_inputs and not p.name.endswith(_SPARK_SIDE_FILES)
        ]
        # Spark's overwrite replaces a whole output folder: clear each written folder first, so a
        # rerun of the same run never leaves the previous run's part files beside the new ones.
        for folder in {p.parent for p in written}:
            bucket, _, prefix = folder.relative_to(staging).as_posix().partition("/")
            paginator = s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix + "/"):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    # DeleteObjects answers 200 with an error per key it did not delete.
                    errors = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys}).get("Errors", [])
                    if errors:
                        raise PermissionError(f"s3://{bucket}/{errors[0]['Key']} (and {len(errors) - 1} more) "
                                              f"not replaced: {errors[0]['Code']}: {errors[0]['Message']}")
        for path in written:
            bucket, _, key = path.relative_to(staging).as_posix().partition("/")
            s3.upload_file(str(path), bucket, key)
