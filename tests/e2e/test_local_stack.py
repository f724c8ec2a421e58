"""`cdnow local up` / `down`: a long-lived offline stack in a process of its own, reached the way
AWS is (an S3 upload with the printed endpoint and key; `cdnow … --stack local`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import boto3
import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cdnow(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cdnow_offline.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.fixture
def local_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["CDNOW_LOCAL_STATE"] = str(tmp_path / "state" / "local-stack.json")
    yield env
    cdnow("local", "down", env=env)


def test_a_local_stack_takes_uploads_until_it_is_stopped(local_env, root, tmp_path):
    port = _free_port()
    started = cdnow("local", "up", "--port", str(port), env=local_env)
    assert started.returncode == 0, started.stderr
    assert f"The local stack runs at http://localhost:{port}" in started.stdout
    state = json.loads((tmp_path / "state" / "local-stack.json").read_text())
    again = cdnow("local", "up", env=local_env)  # one stack: a second up finds it
    assert again.returncode == 0 and "already runs" in again.stdout

    # A file dropped as a user's export job drops it: S3 on the endpoint, with the printed key.
    s3 = boto3.client("s3", endpoint_url=state["endpoint"], region_name=state["region"],
                      aws_access_key_id=state["credentials"]["AccessKeyId"],
                      aws_secret_access_key=state["credentials"]["SecretAccessKey"])
    raw = state["outputs"]["RawBucketName"]
    s3.upload_file(str(root / "data" / "CDNOW_sample.txt"), raw, "incoming/shop/sample.txt")
    deadline = time.monotonic() + 240
    while True:
        listed = cdnow("runs", "--stack", "local", "--json", env=local_env)
        assert listed.returncode == 0, listed.stderr
        runs = json.loads(listed.stdout)
        if runs or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert [(run["dataset"], run["rows_read"]) for run in runs] == [("shop", 6_919)]

    stopped = cdnow("local", "down", env=local_env)
    assert stopped.returncode == 0 and "Stopped the local stack" in stopped.stdout
    assert not (tmp_path / "state" / "local-stack.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(state["pid"], 0)
    gone = cdnow("runs", "--stack", "local", env=local_env)
    assert gone.returncode == 2 and "cdnow local up" in gone.stderr
