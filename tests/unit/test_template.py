"""The template passes both linters and checkov, and the state machine survives AWS's transient errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LINT_ENV = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}


def test_cfn_lint_reports_nothing(root):
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    done = subprocess.run([str(cfn_lint), "template.yaml"], cwd=root, capture_output=True, text=True, env=LINT_ENV)
    assert done.returncode == 0, done.stdout + done.stderr


def test_sam_validate_lint_passes(root):
    sam = root / ".venv-sam" / "bin" / "sam"
    assert sam.exists(), "aws-sam-cli lives in .venv-sam: run `make install`"
    done = subprocess.run([str(sam), "validate", "--lint"], cwd=root, capture_output=True, text=True, env=LINT_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout + done.stderr


def test_checkov_fails_no_check(root):
    """Every check checkov fails is skipped in the template with its reason (Metadata.checkov)."""
    checkov = root / ".venv-checkov" / "bin" / "checkov"
    assert checkov.exists(), "checkov lives in .venv-checkov: run `make install`"
    done = subprocess.run(
        [str(checkov), "--file", "template.yaml", "--framework", "cloudformation", "--skip-download",
         "--output", "json"],
        cwd=root, capture_output=True, text=True, env=LINT_ENV,
    )
    report = json.loads(done.stdout)
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert not failed and done.returncode == 0, failed
    skipped = report["results"]["skipped_checks"]
    assert skipped and all(c["check_result"].get("suppress_comment") for c in skipped)
    assert report["summary"]["passed"] > 50


@pytest.fixture(scope="module")
def definition(root):
    return json.loads((root / "statemachine" / "pipeline.asl.json").read_text())


def test_every_failure_path_reaches_the_failure_notification(definition):
    states = definition["States"]
    for name in ("Ingest", "Transform", "Features", "Features on Spark", "Features from Spark", "Models", "Publish"):
        catch = states[name]["Catch"]
        assert catch[0]["ErrorEquals"] == ["States.ALL"]
        assert states[catch[0]["Next"]]["Next"] == "Failure message"
    # A model's failure is caught inside its branch, returned, and routed by name after the Parallel
    # (Collect models reshapes the branches' results into one per model).
    assert states["Models"]["Next"] == "Collect models" and states["Collect models"]["Next"] == "Check models"
    routes = {c["Variable"]: c["Next"] for c in states["Check models"]["Choices"] if "Variable" in c}
    tasks = {name: (branch, state) for branch in states["Models"]["Branches"]
             for name, state in branch["States"].items() if state["Type"] == "Task"}
    assert set(tasks) == {"Segment", "Churn", "Value"}
    for model, (branch, task) in tasks.items():
        (catch,) = task["Catch"]
        caught = branch["States"][catch["Next"]]
        assert catch["ErrorEquals"] == ["States.ALL"] and caught["End"] is True
        returned = caught["Parameters"]
        # Churn's branch returns the failure itself; the Segment-then-Value branch returns it
        # under the model's name, beside the other model's result.
        failure = returned if "failed_state" in returned else returned[model.lower()]
        assert failure["failed_state"] == model
        failed = routes[f"$.models.{model.lower()}.failed_state"]
        assert states[failed]["Parameters"]["failed_state"] == model
        assert states[failed]["Next"] == "Failure message"
    # The Spark path's Score job and its second run of the model steps fail the same way.
    for name in ("Score on Spark", "Models from Spark"):
        (catch,) = states[name]["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"] and states[catch["Next"]]["Next"] == "Failure message"
    for branch in states["Models from Spark"]["Branches"]:
        model = branch["StartAt"].removesuffix(" from Spark")
        (catch,) = branch["States"][branch["StartAt"]]["Catch"]
        assert branch["States"][catch["Next"]]["Parameters"]["failed_state"] == model
    assert states["Models from Spark"]["Next"] == "Check models"
    assert states["Check models"]["Default"] == "Publish"
    assert states["Failure message"]["Next"] == "Held the dataset?"
    assert states["Notify failure"]["Next"] == "Run failed"


def test_a_dataset_run_gives_its_lease_back_on_every_path_that_announces_it(root, definition):
    """Success, failure (composed or plain notice): the lease goes back before the notification, a
    failed release still notifies; the lease lasts as long as the execution can."""
    from cdnow_offline.template import load_template

    states = definition["States"]
    for notify, check, release in (("Notify success", "Holds the dataset?", "Free the dataset"),
                                   ("Notify failure", "Held the dataset?", "Free the dataset after failure")):
        into = {name for name, state in states.items() if state.get("Next") == notify}
        assert into == {release}
        assert states[check]["Default"] == notify and states[check]["Choices"][0]["Next"] == release
        assert states[release]["Resource"] == "arn:aws:states:::dynamodb:deleteItem"
        assert states[release]["Parameters"]["ConditionExpression"] == "holder = :me"
        assert states[release]["Catch"][0]["Next"] == notify
    assert {n for n, s in states.items() if s.get("Next") == "Holds the dataset?"} == {"Report", "Report failed"}
    assert {n for n, s in states.items() if s.get("Next") == "Held the dataset?"} == {"Failure message",
                                                                                      "Plain failure notice"}
    assert states["Wait for the dataset"]["Next"] == "Ingest"
    environment = load_template(root / "template.yaml")["Resources"]["IngestFunction"]["Properties"]["Environment"]
    assert int(environment["Variables"]["LEASE_SECONDS"]) == definition["TimeoutSeconds"]


def test_models_run_in_parallel_and_tasks_have_timeouts(definition):
    states = definition["States"]
    branches = [b["StartAt"] for b in states["Models"]["Branches"]]
    # Value follows Segment in its branch (it reads the segments for their value intervals).
    assert branches == ["Segment", "Churn"]
    assert states["Models"]["Branches"][0]["States"]["Segment"]["Next"] == "Value"
    tasks = [s for s in states.values() if s["Type"] == "Task"]
    tasks += [s for parallel in ("Models", "Models from Spark") for b in states[parallel]["Branches"]
              for s in b["States"].values() if s["Type"] == "Task"]
    assert len(tasks) == 20 and all("TimeoutSeconds" in task for task in tasks)
    for name in ("Transform", "Features on Spark", "Score on Spark"):
        assert states[name]["Resource"] == "arn:aws:states:::glue:startJobRun.sync"
    # The Spark path's model steps after the Score job: one branch each, in parallel.
    assert [b["StartAt"] for b in states["Models from Spark"]["Branches"]] == [
        "Segment from Spark", "Churn from Spark", "Value from Spark"]


def _tasks(definition):
    states = definition["States"]
    tasks = {name: s for name, s in states.items() if s["Type"] == "Task"}
    for parallel in ("Models", "Models from Spark"):
        for branch in states[parallel]["Branches"]:
            tasks.update({name: s for name, s in branch["States"].items() if s["Type"] == "Task"})
    return tasks


def test_lambda_tasks_retry_lambda_service_errors_with_backoff_and_jitter(definition):
    lambda_tasks = {n: t for n, t in _tasks(definition).items() if t["Resource"] == "arn:aws:states:::lambda:invoke"}
    assert set(lambda_tasks) == {"Ingest", "Features", "Features from Spark", "Segment", "Churn", "Value", "Publish",
                                 "Report", "Failure message", "Segment from Spark", "Churn from Spark",
                                 "Value from Spark"}
    for name, task in lambda_tasks.items():
        (retry,) = task["Retry"]
        assert {"Lambda.ServiceException", "Lambda.TooManyRequestsException",
                "Lambda.SdkClientException"} <= set(retry["ErrorEquals"]), name
        assert retry["BackoffRate"] > 1 and retry["JitterStrategy"] == "FULL" and retry["MaxAttempts"] >= 3, name
        # A handler's own error (bad input, leakage) is not retried: it reaches the Catch.
        assert "States.ALL" not in retry["ErrorEquals"] and "States.TaskFailed" not in retry["ErrorEquals"], name


@pytest.mark.parametrize("task", ["Transform", "Features on Spark", "Score on Spark"])
def test_glue_task_retries_concurrency_and_throttling_only(definition, task):
    (retry,) = definition["States"][task]["Retry"]
    assert {"Glue.ConcurrentRunsExceededException", "Glue.ThrottlingException"} <= set(retry["ErrorEquals"])
    assert all(e.startswith("Glue.") for e in retry["ErrorEquals"])  # a failed job run fails the run
    assert retry["JitterStrategy"] == "FULL" and retry["MaxDelaySeconds"] <= 300


def test_a_run_planned_for_spark_runs_the_features_job_then_features_again(root, definition):
    """Features plans; the Choice sends a run planned for Spark to the Glue job, then to Features
    with the plan; both paths reach Models with the result under $.steps.features."""
    from cdnow_offline.template import load_template

    states = definition["States"]
    assert states["Features"]["Next"] == "Features engine?"
    choice = states["Features engine?"]
    assert choice["Type"] == "Choice" and choice["Default"] == "Models"
    assert choice["Choices"] == [{"Variable": "$.steps.features.engine", "StringEquals": "spark",
                                  "Next": "Features on Spark"}]
    job = states["Features on Spark"]
    assert job["Parameters"] == {"JobName": "${FeaturesJobName}", "Arguments.$": "$.steps.features.job_arguments"}
    # Mirrors the Transform's Glue task; the plan stays in $.steps.features for the next state.
    assert job["ResultSelector"] == states["Transform"]["ResultSelector"] and job["ResultPath"] == "$.features_job"
    assert job["Retry"] == states["Transform"]["Retry"] and job["TimeoutSeconds"] == states["Transform"]["TimeoutSeconds"]
    assert job["Next"] == "Features from Spark"
    again = states["Features from Spark"]
    assert again["Parameters"]["FunctionName"] == states["Features"]["Parameters"]["FunctionName"]
    assert again["Parameters"]["Payload"] == {"run.$": "$.run", "spark.$": "$.steps.features"}
    for key in ("ResultSelector", "ResultPath", "Retry", "TimeoutSeconds"):
        assert again[key] == states["Features"][key], key
    assert again["Next"] == "Models"
    for name in ("Features on Spark", "Features from Spark"):
        assert states[name]["Catch"][0]["Next"] == "Features failed"
    resources = load_template(root / "template.yaml")["Resources"]
    assert resources["PipelineStateMachine"]["Properties"]["DefinitionSubstitutions"]["FeaturesJobName"] == {
        "Ref": "FeaturesJob"}


def test_the_features_job_is_the_transform_job_s_twin_with_its_own_role(root):
    from cdnow.domain.runs import DEFAULT_SPARK_FEATURES_MIN_ROWS
    from cdnow_offline.template import load_template

    template = load_template(root / "template.yaml")
    resources = template["Resources"]
    features, transform = resources["FeaturesJob"]["Properties"], resources["TransformJob"]["Properties"]
    assert features["Command"]["ScriptLocation"] == "glue/cdnow_features.py"
    assert features["Role"] == {"Fn::GetAtt": ["FeaturesJobRole", "Arn"]}
    for key in ("GlueVersion", "WorkerType", "NumberOfWorkers", "Timeout", "MaxRetries"):
        assert features[key] == transform[key], key
    assert resources["FeaturesJob"]["Metadata"] == resources["TransformJob"]["Metadata"]
    statements = resources["FeaturesJobRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    text = json.dumps(statements)
    assert "RawBucket" not in text and "glue:" not in text
    # The threshold: a parameter whose default is the code's, passed to the Features function.
    parameter = template["Parameters"]["SparkFeaturesMinRows"]
    assert parameter["Default"] == DEFAULT_SPARK_FEATURES_MIN_ROWS and "10.5 M rows" in parameter["Description"]
    variables = resources["FeaturesFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["SPARK_FEATURES_MIN_ROWS"] == {"Ref": "SparkFeaturesMinRows"}
    # The state machine may run it as it runs the Transform job.
    policy = resources["PipelineStateMachine"]["Properties"]["Policies"][0]["Statement"]
    grants = {s["Sid"]: s for s in policy}
    assert grants["RunTheFeaturesJob"]["Action"] == grants["RunTheTransformJob"]["Action"]
    assert grants["RunTheFeaturesJob"]["Resource"]["Fn::Sub"].endswith(":job/${FeaturesJob}")


def test_every_task_times_out_after_its_target_does(root, definition):
    """A Task's TimeoutSeconds above its function's Timeout (or the Glue job's) lets the target's
    own error and cause reach the Catch; a tie races it with States.Timeout, whose cause is empty."""
    from cdnow_offline.template import load_template

    template = load_template(root / "template.yaml")
    resources = template["Resources"]
    global_timeout = template.get("Globals", {}).get("Function", {}).get("Timeout", 3)  # Lambda's default: 3 s
    substitutions = resources["PipelineStateMachine"]["Properties"]["DefinitionSubstitutions"]

    def target(placeholder: str) -> dict:
        reference = substitutions[placeholder.removeprefix("${").removesuffix("}")]
        logical_id = reference["Fn::GetAtt"][0] if "Fn::GetAtt" in reference else reference["Ref"]
        return resources[logical_id]

    limits = {}
    for name, task in _tasks(definition).items():
        if task["Resource"] == "arn:aws:states:::lambda:invoke":
            function = target(task["Parameters"]["FunctionName"])
            assert function["Type"] == "AWS::Serverless::Function", name
            limits[name] = function["Properties"].get("Timeout", global_timeout)
        elif task["Resource"].startswith("arn:aws:states:::glue:startJobRun"):
            job = target(task["Parameters"]["JobName"])
            assert job["Type"] == "AWS::Glue::Job", name
            limits[name] = job["Properties"].get("Timeout", 2880) * 60  # minutes; Glue's default: 48 h
        else:
            # No limit of their own.
            assert task["Resource"] in ("arn:aws:states:::sns:publish", "arn:aws:states:::dynamodb:deleteItem"), name
    assert set(limits) == {"Ingest", "Transform", "Features", "Features on Spark", "Features from Spark", "Segment",
                           "Churn", "Value", "Score on Spark", "Segment from Spark", "Churn from Spark",
                           "Value from Spark", "Publish", "Report", "Failure message"}
    short = {name: (_tasks(definition)[name]["TimeoutSeconds"], limit) for name, limit in limits.items()
             if _tasks(definition)[name]["TimeoutSeconds"] < limit + 60}
    assert not short, f"TimeoutSeconds less than 60 s above the target's own limit: {short}"


def test_the_execution_has_a_timeout_beyond_its_tasks_worst_case(definition):
    # Each Parallel's longest branch: Segment then Value, and one of the three from Spark.
    parallel = ("Segment", "Churn", "Segment from Spark", "Churn from Spark")
    longest = sum(t["TimeoutSeconds"] for n, t in _tasks(definition).items() if n not in parallel)
    assert definition["TimeoutSeconds"] >= longest
def test_report_runs_after_publish_and_a_failed_report_still_announces_the_run(definition):
    states = definition["States"]
    assert states["Publish"]["Next"] == "Report" and states["Report"]["Next"] == "Holds the dataset?"
    assert states["Report"]["Retry"] == states["Publish"]["Retry"]
    catch = states["Report"]["Catch"]
    assert catch[0]["ErrorEquals"] == ["States.ALL"] and catch[0]["Next"] == "Report failed"
    assert states["Report failed"]["Type"] == "Pass" and states["Report failed"]["Next"] == "Holds the dataset?"


def test_both_notifications_carry_status_and_run_id_attributes(definition):
    states = definition["States"]
    for name in ("Notify success", "Notify failure"):
        assert set(states[name]["Parameters"]["MessageAttributes"]) == {"status", "run_id"}, name
    # one message per protocol: the e-mail text and the JSON summary
    for name in ("Notify success", "Notify failure"):
        assert states[name]["Parameters"]["MessageStructure"] == "json", name


def test_report_function_is_an_image_with_scoped_s3_access(root):
    from cdnow_offline.template import load_template

    resources = load_template(root / "template.yaml")["Resources"]
    report = resources["ReportFunction"]
    assert report["Properties"]["PackageType"] == "Image"  # it reads parquet: pandas + pyarrow
    assert report["Metadata"]["DockerBuildArgs"] == {"REQUIREMENTS": "data", "FUNCTION": "report"}
    statements = resources["ReportFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    for statement in statements:
        assert all("*" not in action for action in statement["Action"])
        assert statement["Resource"] != "*"
    writes = [st for st in statements if "s3:PutObject" in st["Action"]]
    assert [st["Resource"] for st in writes] == [{"Fn::Sub": "${CuratedBucket.Arn}/reports/*"}]
    machine = resources["PipelineStateMachine"]["Properties"]
    assert machine["DefinitionSubstitutions"]["ReportFunctionArn"] == {"Fn::GetAtt": ["ReportFunction", "Arn"]}
    invoke = next(st for p in machine["Policies"] for st in p.get("Statement", [])
                  if st.get("Sid") == "InvokeThePipelineFunctions")
    assert {"Fn::GetAtt": ["ReportFunction", "Arn"]} in invoke["Resource"]
