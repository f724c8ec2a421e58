"""Every function's handler, as Lambda calls it, writes JSON log lines that all carry the run_id of
the run it is working on, and never the run_id of the invocation before it (a warm container)."""

from __future__ import annotations

import importlib.util
import io
import json
from dataclasses import dataclass

import pytest

from cdnow import pipeline
from cdnow.adapters import observability

FUNCTIONS = ("ingest", "features", "segment", "churn", "value", "publish")
# What each step returns, so the handler runs without AWS (the steps have their own tests).
STEP_RESULTS = {
    "ingest": lambda request, **_: {"run_id": f"run-of-{request.key}", "input_uri": request.input_uri},
    "build_features": lambda run, database, spark_min_rows: {"customers": 3, "analysis_date": "1998-07-01",
                                                             "rows": {}, "engine": "lambda"},
    "segment": lambda run, database, features, fitted: {"segments": {"Champions": {"customers": 3}}},
    "churn": lambda run, analysis_date, transactions_uri, features, fitted: {"metrics": {"roc_auc": 0.8}},
    "value": lambda run, analysis_date, transactions_uri, features, fitted: {"metrics": {"total_clv_12m": 12.5}},
    "publish": lambda run, database, features, models: [{"table": "runs"}],
    "run_summary": lambda run, features, models, tables: {"run_id": run["run_id"]},
    "record_summary": lambda run, summary: None,
}


@dataclass
class Context:
    function_name: str
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:f"
    aws_request_id: str = "request-1"


def event_for(function: str, run_id: str) -> dict:
    if function == "ingest":
        return {"bucket": "raw", "key": run_id}
    run = {"run_id": run_id, "curated_bucket": "curated"}
    features = {"analysis_date": "1998-07-01", "customers": 3}
    return {"run": run, "features": features, "models": {}}


@pytest.fixture
def log_lines(monkeypatch, capsys):
    """The JSON lines the shared logger (its stream) and the metrics (stdout: EMF) write."""
    for name, result in STEP_RESULTS.items():
        monkeypatch.setattr(pipeline, name, result)
    monkeypatch.setenv("CURATED_BUCKET", "curated")
    monkeypatch.setenv("GLUE_DATABASE", "db")
    monkeypatch.setattr(observability.metrics, "namespace", "Test")
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    buffer = io.StringIO()
    stream_handler = observability.logger.registered_handler
    saved = stream_handler.setStream(buffer)
    observability.logger.setLevel("INFO")

    def lines() -> list[dict]:
        text = buffer.getvalue() + capsys.readouterr().out
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    yield lines
    stream_handler.setStream(saved)


def load_handler(root, function: str):
    path = root / "functions" / function / "app.py"
    spec = importlib.util.spec_from_file_location(f"test_observed_{function}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_line_carries_this_invocations_run_id(root, function, log_lines):
    handler = load_handler(root, function)
    handler(event_for(function, "first"), Context(function))
    handler(event_for(function, "second"), Context(function))
    lines = log_lines()
    logged = [line for line in lines if "message" in line]
    metric_lines = [line for line in lines if "_aws" in line]
    assert len(logged) == 2 and len(metric_lines) == 2, lines
    expected = ["run-of-first", "run-of-second"] if function == "ingest" else ["first", "second"]
    assert [line["run_id"] for line in logged] == expected
    assert [line["run_id"] for line in metric_lines] == expected
    assert all(line["function_name"] == function for line in logged)


def test_a_warm_container_never_logs_the_previous_runs_id(root, log_lines, monkeypatch):
    """Ingest logs before it knows the run: those lines must not carry the previous invocation's."""
    handler = load_handler(root, "ingest")
    handler(event_for("ingest", "first"), Context("ingest"))

    def refuse(request, **_):
        observability.logger.warning("checking the object")
        raise ValueError("the file is empty")

    monkeypatch.setattr(pipeline, "ingest", refuse)
    with pytest.raises(ValueError):
        handler(event_for("ingest", "second"), Context("ingest"))
    logged = [(line["message"], line.get("run_id")) for line in log_lines() if "message" in line]
    assert logged == [("run started", "run-of-first"), ("checking the object", None)]


def test_a_warning_is_a_log_line_of_the_run_not_text_on_stderr(root):
    """In a process of its own, as on Lambda (pytest records warnings itself while a test runs)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import importlib.util, warnings
        from cdnow import pipeline

        def churn_that_warns(run, analysis_date, transactions_uri, features, fitted):
            warnings.warn("maximum-likelihood fit did not converge: ABNORMAL", RuntimeWarning)
            return {{"metrics": {{"roc_auc": 0.8}}}}

        pipeline.churn = churn_that_warns
        spec = importlib.util.spec_from_file_location("churn_app", {str(root / "functions" / "churn" / "app.py")!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        class Context:
            function_name, memory_limit_in_mb, aws_request_id = "churn", 256, "request-1"
            invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:churn"

        module.lambda_handler({{"run": {{"run_id": "first", "curated_bucket": "curated"}},
                               "features": {{"analysis_date": "1998-07-01"}}}}, Context())
    """)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root / "layers" / "shared"), "POWERTOOLS_SERVICE_NAME": "churn",
           "POWERTOOLS_METRICS_NAMESPACE": "Test", "POWERTOOLS_TRACE_DISABLED": "1", "GLUE_DATABASE": "db",
           "CURATED_BUCKET": "curated", "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    warned = [line for line in lines if "did not converge" in str(line.get("message"))]
    assert len(warned) == 1 and warned[0]["run_id"] == "first" and warned[0]["level"] == "WARNING"
    assert "did not converge" not in done.stderr
