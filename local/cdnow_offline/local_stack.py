"""A long-lived offline stack: `cdnow local up` serves the emulator with the stack provisioned on a
loopback port until `cdnow local down`, so files can be dropped the way they are on AWS (the AWS
CLI with --endpoint-url, or `cdnow … --stack local`) and a dataset's history lives from one
command to the next.

`up` starts this module as a process of its own (it outlives the command), waits until the stack
is provisioned and prints how to reach it. The process writes a state file (its pid, the endpoint,
the administrator's key and the stack's outputs) that `--stack local` and `down` read; `down`
stops the process, and everything the stack held goes with it (moto keeps it in memory).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

LOCAL_STACK = "local"
DEFAULT_PORT = 4599
STATE_ENV = "CDNOW_LOCAL_STATE"
READY_TIMEOUT_S = 180


class LocalStackError(Exception):
    """The local stack is not there, or did not come up."""


def state_file() -> Path:
    """Where the running local stack is described (CDNOW_LOCAL_STATE, else ~/.cache/cdnow/)."""
    override = os.environ.get(STATE_ENV)
    return Path(override) if override else Path.home() / ".cache" / "cdnow" / "local-stack.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state() -> dict | None:
    """The running local stack's state, or None (a state file whose process is gone is removed)."""
    path = state_file()
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not _alive(int(state.get("pid", 0))):
        path.unlink(missing_ok=True)
        return None
    return state


def up(root: Path, port: int, echo=print) -> dict:
    """Start the local stack's process unless one runs; return its state once it is ready."""
    state = read_state()
    if state is not None:
        echo(f"The local stack already runs at {state['endpoint']} (pid {state['pid']}).")
        return state
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.with_suffix(".log")
    echo(f"Starting the local stack on port {port} (moto, local Spark; log: {log})...")
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "cdnow_offline.local_stack", "--root", str(root), "--port", str(port),
             "--state", str(path)],
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise LocalStackError(f"the local stack stopped while starting (exit {process.returncode}): "
                                  + " | ".join(tail))
        state = read_state()
        if state is not None and state.get("pid") == process.pid:
            return state
        time.sleep(0.5)
    process.terminate()
    raise LocalStackError(f"the local stack was not ready within {READY_TIMEOUT_S} s (log: {log})")


def down(echo=print) -> bool:
    """Stop the local stack's process; False when none runs."""
    state = read_state()
    if state is None:
        return False
    os.kill(int(state["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _alive(int(state["pid"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(int(state["pid"])):
        os.kill(int(state["pid"]), signal.SIGKILL)
    state_file().unlink(missing_ok=True)
    echo(f"Stopped the local stack at {state['endpoint']}; what it held is gone.")
    return True


def use(state: dict) -> dict[str, str]:
    """Point this process's AWS clients at the local stack, as its administrator; its outputs."""
    os.environ.update({
        "AWS_ENDPOINT_URL": state["endpoint"],
        "AWS_ACCESS_KEY_ID": state["credentials"]["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": state["credentials"]["SecretAccessKey"],
        "AWS_DEFAULT_REGION": state["region"],
    })
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(name, None)
    import boto3

    boto3.setup_default_session(region_name=state["region"])
    return state["outputs"]


def local_outputs(stack: str) -> dict[str, str]:
    """``--stack local``: the running local stack's outputs (this process then talks to it)."""
    state = read_state()
    if state is None:
        raise LocalStackError("no local stack runs: start one with `cdnow local up`")
    return use(state)


def _serve(root: Path, port: int, path: Path) -> None:
    from .emulator import REGION, Emulator

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    with Emulator(root, port=port) as emulator:
        stack = emulator.provision(LOCAL_STACK)
        state = {"pid": os.getpid(), "endpoint": emulator.endpoint, "region": REGION, "stack": LOCAL_STACK,
                 "credentials": emulator.identities.administrator, "outputs": stack.outputs}
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2))
        temporary.replace(path)
        print(f"ready at {emulator.endpoint}", flush=True)
        stopping.wait()
        print("stopping", flush=True)
    path.unlink(missing_ok=True)


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description="the local stack's process (cdnow local up starts it)")
    arguments.add_argument("--root", type=Path, required=True)
    arguments.add_argument("--port", type=int, required=True)
    arguments.add_argument("--state", type=Path, required=True)
    parsed = arguments.parse_args()
    _serve(parsed.root, parsed.port, parsed.state)
