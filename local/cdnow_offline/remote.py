"""A run against a stack, deployed or emulated, through the calls a deployed stack answers.

The stack is known by its outputs (``RawBucketName``, ``CuratedBucketName``, ``StateMachineArn``,
``DatabaseName``): ``cloudformation_outputs`` reads them from CloudFormation for a deployed
stack; the offline provisioner returns the same dict for the emulated one. Everything after
that is plain S3 and Step Functions calls, so ``cdnow run --stack NAME`` and ``cdnow run
--local`` follow a run the same way: put the file under incoming/, find the execution that the
upload started, print each state with its elapsed time and the counts its output makes known,
then fetch the run summary, the report and the charts.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import boto3
from cdnow.presentation import formatting as fmt

from cdnow.presentation.messages import readable_cause

from .results import REPORT, SUMMARY, rows_text

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
# A delivery whose content its dataset already holds: the execution succeeded and computed nothing.
ALREADY_DELIVERED = "ALREADY_DELIVERED"
REQUIRED_OUTPUTS = ("RawBucketName", "CuratedBucketName", "StateMachineArn", "DatabaseName")


class StackNotFound(LookupError):
    """The stack does not exist or lacks an output the CLI needs."""


def cloudformation_outputs(stack_name: str) -> dict[str, str]:
    """A deployed stack's outputs, from CloudFormation."""
    from botocore.exceptions import ClientError

    try:
        stacks = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        raise StackNotFound(f"stack {stack_name}: {exc.response['Error'].get('Message', exc)}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    check_outputs(stack_name, outputs)
    return outputs


def check_outputs(stack_name: str, outputs: Mapping[str, str]) -> None:
    missing = [key for key in REQUIRED_OUTPUTS if key not in outputs]
    if missing:
        raise StackNotFound(f"stack {stack_name} has no output {', '.join(missing)}: is it this project's template?")


# --------------------------------------------------------------------------- live progress


def _count(value) -> str:
    return f"{int(value):,}"


def progress_note(state: str, output: dict) -> str | None:
    """What a state's output makes known, in a few words (None when it tells nothing new).

    Keyed by the state names of statemachine/pipeline.asl.json; a missing key means the output
    changed shape, which must never break following a run, so it just gives no note.
    """
    try:
        if state == "Ingest":
            run = output.get("run", output)
            if "waiting" in run:
                waiting = run["waiting"]
                holder = (waiting.get("holder") or "an earlier delivery").rsplit(":", 1)[-1]
                ahead = f", {waiting['ahead']} ahead in the queue" if waiting.get("ahead") else ""
                return (f"dataset {run['dataset']} is busy (held by {holder}{ahead}): "
                        f"trying again in {waiting['seconds']} s")
            if "duplicate_of" in run:
                return f"this event is handled by {run['duplicate_of'].rsplit(':', 1)[-1]}: nothing to do"
            return f"run {run['run_id']}"
        if state == "Transform":
            return f"Glue job run {output['transform']['job_run_id']} {output['transform']['state']}"
        if state == "Features" and output["steps"]["features"].get("engine") == "spark":
            features = output["steps"]["features"]
            return (f"{rows_text(features['rows'])}; planned for the Features Glue job "
                    f"as of {features['analysis_date']}")
        if state == "Features on Spark":
            return f"Glue job run {output['features_job']['job_run_id']} {output['features_job']['state']}"
        if state == "Score on Spark":
            return f"Glue job run {output['score_job']['job_run_id']} {output['score_job']['state']}"
        if state in ("Segment from Spark", "Churn from Spark", "Value from Spark"):
            # The Spark path's model steps after the Score job: the same result as the Lambda path's.
            state = state.removesuffix(" from Spark")
        if state in ("Features", "Features from Spark"):
            features = output["steps"]["features"]
            rows = features["rows"]
            return (f"{rows_text(rows)}; {_count(features['customers'])} customers "
                    f"as of {features['analysis_date']}")
        if state in ("Segment", "Value") and "result" in output.get(state.lower(), {}):
            # In the Segment-then-Value branch a model's result sits under its name.
            output = output[state.lower()]["result"]
        if state in ("Segment", "Churn", "Value") and output.get("skipped"):
            return f"skipped: {output['skipped']}"
        if state in ("Segment", "Churn", "Value") and "fitted" in output:
            # The Spark path's first run of a model step: fitted on the sample, nothing scored.
            return f"fitted on {_count(output['fitted']['customers'])} sampled customers"
        if state == "Segment":
            segments = sorted(output["segments"].items(), key=lambda item: item[1]["segment_rank"])
            sizes = ", ".join(f"{name} {_count(s['customers'])}" for name, s in segments)
            return f"{len(segments)} segments: {sizes}"
        if state == "Churn":
            metrics = output["metrics"]
            return (f"ROC AUC {metrics['cv_roc_auc_mean']:.3f} \u00b1 {metrics['cv_roc_auc_sd']:.3f} "
                    f"cross-validated; {metrics['share_high_risk']:.1%} at high risk")
        if state == "Value":
            # The Value output has no summary to read the currency from; its metrics may name it.
            metrics = output["metrics"]
            return f"expected 12-month value {fmt.money(metrics['total_clv_12m'], fmt.currency_of(metrics))}"
        if state == "Publish":
            return f"{len(output['published']['summary']['tables'])} tables published"
        if state == "Report":
            return f"report at {output['report']['uri']}"
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return None


class ExecutionFollower:
    """Prints each state as it is entered and left, with its elapsed time and what its output
    makes known, until the execution ends. Only Step Functions calls: works on AWS as offline."""

    def __init__(self, execution_arn: str, echo: Callable[[str], None], poll_s: float = 0.3,
                 heartbeat_s: float = 30.0):
        self.execution_arn = execution_arn
        self.echo = echo
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.outputs: dict[str, dict] = {}  # state name -> its last output, parsed
        self._sfn = boto3.client("stepfunctions")
        self._seen: set[int] = set()
        self._entered: dict[str, float] = {}
        self._last_news = time.monotonic()

    def _events(self) -> list[dict]:
        events, token = [], None
        while True:
            page = self._sfn.get_execution_history(
                executionArn=self.execution_arn, maxResults=1000, **({"nextToken": token} if token else {}))
            events += page["events"]
            token = page.get("nextToken")
            if not token:
                return events

    def _poll(self) -> None:
        for event in self._events():
            if event["id"] in self._seen:
                continue
            self._seen.add(event["id"])
            self._last_news = time.monotonic()
            kind = event["type"]
            stamp = event["timestamp"].timestamp()
            if kind.endswith("StateEntered"):
                name = event["stateEnteredEventDetails"]["name"]
                self._entered[name] = stamp
                self.echo(f"  -> {name}")
            elif kind.endswith("StateExited"):
                details = event["stateExitedEventDetails"]
                name = details["name"]
                elapsed = stamp - self._entered.pop(name, stamp)
                try:
                    output = json.loads(details.get("output") or "null")
                except ValueError:
                    output = None
                self.outputs[name] = output
                note = progress_note(name, output) if isinstance(output, dict) else None
                self.echo(f"  <- {name} ({elapsed:.1f} s)" + (f": {note}" if note else ""))
            elif kind in ("TaskFailed", "LambdaFunctionFailed", "ExecutionFailed"):
                details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
                cause = readable_cause(details.get("cause")) or ""
                self.echo(f"  !! {kind}: {details.get('error', '')}: {cause[:300]}")
        self._heartbeat()

    def _heartbeat(self) -> None:
        """A line now and then while a long state (a Glue job on AWS) runs without news."""
        now = time.monotonic()
        if self._entered and now - self._last_news >= self.heartbeat_s:
            running = ", ".join(f"{name} {time.time() - since:.0f} s" for name, since in self._entered.items())
            self.echo(f"  .. running: {running}")
            self._last_news = now

    def wait(self, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            self._poll()
            execution = self._sfn.describe_execution(executionArn=self.execution_arn)
            if execution["status"] in TERMINAL:
                self._poll()
                return execution
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution still {execution['status']} after {timeout_s:.0f} s")
            time.sleep(self.poll_s)


# --------------------------------------------------------------------------- starting a run


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    etag: str
    not_before: datetime  # server time, a little before the object was written


def upload_input(outputs: Mapping[str, str], input_file: Path, options: Mapping | None = None,
                 dataset: str | None = None) -> Upload:
    """Put the file under incoming/ (in the dataset's folder, if one is named) in the raw bucket:
    the upload starts the run (EventBridge). The run's options ride on the upload as its
    ``cdnow-options`` metadata."""
    from cdnow.domain.runs import INCOMING_PREFIX, OPTIONS_METADATA_KEY, encode_options_metadata

    s3 = boto3.client("s3")
    folder = f"{INCOMING_PREFIX}{dataset}/" if dataset else INCOMING_PREFIX
    bucket, key = outputs["RawBucketName"], f"{folder}{input_file.name}"
    extra = {"Metadata": {OPTIONS_METADATA_KEY: encode_options_metadata(dict(options))}} if options else None
    s3.upload_file(str(input_file), bucket, key, ExtraArgs=extra)
    head = s3.head_object(Bucket=bucket, Key=key)
    # LastModified is the server's clock, to the second: no skew with the execution's startDate.
    return Upload(bucket, key, head["ETag"].strip('"'), head["LastModified"] - timedelta(seconds=1))


def names_upload(execution_input: dict, upload: Upload) -> bool:
    """Whether an execution's input is the upload: an S3 event (EventBridge) or {bucket, key}."""
    if "detail" in execution_input:
        detail = execution_input.get("detail") or {}
        obj = detail.get("object") or {}
        etag = obj.get("etag")
        return ((detail.get("bucket") or {}).get("name") == upload.bucket and obj.get("key") == upload.key
                and (etag is None or etag.strip('"') == upload.etag))
    return execution_input.get("bucket") == upload.bucket and execution_input.get("key") == upload.key


def _executions_since(sfn, state_machine_arn: str, since: datetime):
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        for execution in page["executions"]:
            if execution["startDate"] < since:
                return
            yield execution


def find_execution(outputs: Mapping[str, str], upload: Upload, timeout_s: float = 60, poll_s: float = 0.5) -> str:
    """The execution the upload started: on the stack's state machine, started after the upload,
    whose input names the object."""
    sfn = boto3.client("stepfunctions")
    checked: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # Newest first (AWS and the emulator alike): stop at the first one older than the upload.
        for execution in _executions_since(sfn, outputs["StateMachineArn"], upload.not_before):
            arn = execution["executionArn"]
            if arn in checked:
                continue
            checked.add(arn)
            described = sfn.describe_execution(executionArn=arn)
            if names_upload(json.loads(described.get("input") or "{}"), upload):
                return arn
        time.sleep(poll_s)
    raise TimeoutError(f"no execution of {outputs['StateMachineArn']} started for s3://{upload.bucket}/{upload.key} "
                       f"within {timeout_s:.0f} s: is the EventBridge rule of the stack enabled?")


# --------------------------------------------------------------------------- results


def failure_summary(execution: dict, state_outputs: Mapping[str, dict]) -> dict:
    """What failed and why, from the "<state> failed" step the Catch went to (its output names
    the failed state, the error and the run), else from the execution itself."""
    failed = next((out for name, out in state_outputs.items()
                   if name.endswith(" failed") and isinstance(out, dict) and "failed_state" in out), None) or {}
    error = failed.get("error") or {}
    run = failed.get("run") or {}
    run_id = run.get("run_id")
    # The counts known when it failed, as the failure notice carries them.
    try:
        rows = json.loads(state_outputs["Failure message"]["notice"]["message"]["default"]).get("rows")
    except (KeyError, TypeError, ValueError):
        rows = None
    return {
        "run_id": None if run_id in (None, "none") else run_id,
        "status": execution["status"],
        "failed_state": failed.get("failed_state"),
        "error": error.get("Error", execution.get("error")),
        "cause": readable_cause(error.get("Cause", execution.get("cause"))),
        "input_uri": run.get("input_uri"),
        "execution_arn": execution["executionArn"],
        "rows": rows,
    }


def run_folder(out_root: Path, summary: Mapping, execution_arn: str) -> Path:
    """out/<run_id>/, or out/no-run-<execution name>/ when the run never got an id (Ingest failed)."""
    name = summary.get("run_id") or f"no-run-{execution_arn.rsplit(':', 1)[-1]}"
    return out_root / name


def download_charts(outputs: Mapping[str, str], run_id: str, run_dir: Path) -> None:
    from cdnow.adapters.storage import split_s3_uri
    from cdnow.domain.runs import RunLayout

    bucket, prefix = split_s3_uri(RunLayout(outputs["CuratedBucketName"], run_id).charts)
    s3 = boto3.client("s3")
    charts_dir = run_dir / "charts"
    charts_dir.mkdir(parents=True, exist_ok=True)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            s3.download_file(bucket, item["Key"], str(charts_dir / item["Key"].rsplit("/", 1)[-1]))


def download_report(outputs: Mapping[str, str], run_id: str, run_dir: Path) -> Path | None:
    """The run's report (reports/<run_id>.html) to run_dir/report.html; None when there is none."""
    from botocore.exceptions import ClientError
    from cdnow.adapters.storage import split_s3_uri
    from cdnow.domain.runs import RunLayout

    bucket, key = split_s3_uri(RunLayout(outputs["CuratedBucketName"], run_id).report)
    path = run_dir / REPORT
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        boto3.client("s3").download_file(bucket, key, str(path))
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "403"):
            return None
        raise
    return path


def report_link(outputs: Mapping[str, str], run_id: str, expires_s: int = 3600) -> str:
    from cdnow.adapters.storage import presign_get
    from cdnow.domain.runs import RunLayout

    return presign_get(RunLayout(outputs["CuratedBucketName"], run_id).report, expires_s)


def published_runs(outputs: Mapping[str, str]) -> list[dict]:
    """The stack's ``runs`` table, newest first (only published runs are in it)."""
    from cdnow.adapters.storage import read_published_table

    frame = read_published_table(outputs["DatabaseName"], "runs")
    if frame is None or frame.empty:
        return []
    frame = frame.sort_values(["published_at", "run_id"], ascending=False)
    return [{key: (None if value != value else value) for key, value in row.items()}  # NaN -> None
            for row in frame.to_dict("records")]


def published_summary(outputs: Mapping[str, str], run_id: str) -> dict | None:
    from botocore.exceptions import ClientError
    from cdnow.adapters.storage import read_json
    from cdnow.domain.runs import RunLayout

    try:
        return read_json(RunLayout(outputs["CuratedBucketName"], run_id).run_summary)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "403"):
            return None
        raise


@dataclass
class StackRun:
    status: str
    summary: dict
    execution_arn: str
    run_dir: Path
    report: Path | None = None
    seconds: float = 0.0
    outputs: dict = field(default_factory=dict)


def run_on_stack(outputs: Mapping[str, str], input_file: Path, out_root: Path,
                 echo: Callable[[str], None] = print, timeout_s: float = 3600, poll_s: float = 1.0,
                 options: Mapping | None = None, dataset: str | None = None) -> StackRun:
    """Upload (with the run's ``options`` as the object's metadata), find the execution, follow
    it, and write what the run made to out_root/<run_id>/: run_summary.json, report.html and
    charts/ (on success), run_summary.json (on failure)."""
    started = time.monotonic()
    upload = upload_input(outputs, input_file, options, dataset)
    echo(f"Put {input_file} at s3://{upload.bucket}/{upload.key}")
    execution_arn = find_execution(outputs, upload)
    return follow_run(outputs, execution_arn, out_root, echo, timeout_s, poll_s, started)


def replay_on_stack(outputs: Mapping[str, str], dataset: str, out_root: Path, erase_customers: list[str] = (),
                    echo: Callable[[str], None] = print, timeout_s: float = 3600, poll_s: float = 1.0) -> StackRun:
    """Start a replay of the dataset's history (erasing ``erase_customers`` from it first), follow
    it and write the run's folder as ``run_on_stack`` does."""
    started = time.monotonic()
    execution_input = {"bucket": outputs["RawBucketName"], "dataset": dataset, "replay": True}
    if erase_customers:
        execution_input["erase_customers"] = list(erase_customers)
    # Named for what it does (and every execution needs a name of its own: moto names every
    # unnamed one "None").
    name = f"{'erase' if erase_customers else 'replay'}-{dataset}"[:43] + f"-{uuid.uuid4()}"
    execution_arn = boto3.client("stepfunctions").start_execution(
        stateMachineArn=outputs["StateMachineArn"], name=name, input=json.dumps(execution_input))["executionArn"]
    return follow_run(outputs, execution_arn, out_root, echo, timeout_s, poll_s, started)


def follow_run(outputs: Mapping[str, str], execution_arn: str, out_root: Path, echo: Callable[[str], None],
               timeout_s: float, poll_s: float, started: float) -> StackRun:
    """Follow the execution to its end and write the run's folder (see ``run_on_stack``)."""
    echo(f"Execution started: {execution_arn.rsplit(':', 1)[-1]}")
    follower = ExecutionFollower(execution_arn, echo, poll_s=poll_s)
    execution = follower.wait(timeout_s)
    status = execution["status"]
    if status == "SUCCEEDED":
        summary = json.loads(execution["output"])
        earlier = (summary.get("run") or {}).get("already_delivered")
        if earlier is not None:
            # The dataset holds this content already: the execution computed nothing.
            status = ALREADY_DELIVERED
            summary = {"status": status, "input_uri": summary["run"]["input_uri"],
                       "dataset": summary["run"]["dataset"], "already_delivered": earlier}
    else:
        summary = failure_summary(execution, follower.outputs)
    run_dir = run_folder(out_root, summary, execution_arn)
    if run_dir.is_dir():
        # A rerun replaces its folder: nothing of an earlier run of this run_id stays beside it.
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / SUMMARY).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    report = None
    if status == "SUCCEEDED":
        download_charts(outputs, summary["run_id"], run_dir)
        report = download_report(outputs, summary["run_id"], run_dir)
        if report is None:
            error = (follower.outputs.get("Report failed") or {}).get("report", {}).get("error", {})
            echo(f"  !! no report for this run: {error.get('Error', '?')}: {readable_cause(error.get('Cause'))}")
    return StackRun(status, summary, execution_arn, run_dir, report, time.monotonic() - started,
                    dict(outputs))
