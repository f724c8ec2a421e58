"""The Lambda adapter: moto's Lambda invoke runs the real handler in this process.

moto runs Lambda code only in Docker; with `use_docker: false` its `LambdaSimpleBackend.invoke`
never runs code at all. This adapter replaces that one method: it imports the function's
handler (its code folder and its layers on the path, as Lambda lays them out), calls it with the
event, a Lambda context and the function's own environment, and returns its JSON, or Lambda's
error payload with `X-Amz-Function-Error: Unhandled` so the state machine's Retry/Catch see the
exception's type name as the error, as on AWS. The function's `Timeout` holds in-process too: an
invocation past it returns Lambda's `Sandbox.Timedout` error (its thread runs on, unseen).

Parallel branches invoke functions at the same time in the server's request threads, so each
invocation sees its function's variables through a per-thread view of `os.environ`: swapping the
process environment leaked one function's variables into another (notes/offline-aws.md).

With `shipped=True` each function runs instead in an execution environment of its own, as it runs
on Lambda: a Python 3.12 process per function (`lambda_bootstrap.py`, kept warm between
invocations), whose path holds nothing but the function's code, the packages its artifact ships
and the runtime's (`shipped.py`), with only its own environment, and with its `Timeout` and
`MemorySize` enforced: an invocation past either is killed and reported as Lambda reports it
(`Sandbox.Timedout`, `Runtime.OutOfMemory`); a handler that cannot be imported fails as
`Runtime.ImportModuleError`.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import select
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from moto.awslambda_simple.models import LambdaSimpleBackend

from .identities import Identities

_DELETED = object()
# The layer's modules the pipeline imports inside its step functions (so that Ingest, a zip
# without pandas, never loads them): what an image function's first invocation imports.
LAZY_LAYER_MODULES = (
    "cdnow.domain.features",
    "cdnow.domain.history",
    "cdnow.domain.segments",
    "cdnow.domain.churn",
    "cdnow.domain.clv",
    "cdnow.presentation.figures",
    "cdnow.presentation.report",
    "cdnow.presentation.messages",
    "cdnow.adapters.history",
    "cdnow.adapters.glue_code",
)


class ThreadLocalEnviron(MutableMapping):
    """os.environ with a per-thread overlay: a handler's variables are visible to its thread only."""

    def __init__(self, base: MutableMapping[str, str]):
        self._base = base
        self._local = threading.local()

    def _overlay(self) -> dict[str, Any] | None:
        return getattr(self._local, "overlay", None)

    def enter(self, variables: dict[str, str]) -> None:
        self._local.overlay = dict(variables)

    def leave(self) -> None:
        self._local.overlay = None

    def __getitem__(self, key: str) -> str:
        overlay = self._overlay()
        if overlay is not None and key in overlay:
            value = overlay[key]
            if value is _DELETED:
                raise KeyError(key)
            return value
        return self._base[key]

    def __setitem__(self, key: str, value: str) -> None:
        overlay = self._overlay()
        if overlay is None:
            self._base[key] = value
        else:
            overlay[key] = value

    def __delitem__(self, key: str) -> None:
        overlay = self._overlay()
        if overlay is None:
            del self._base[key]
        else:
            self[key]  # KeyError when absent, as os.environ does
            overlay[key] = _DELETED

    def __iter__(self) -> Iterator[str]:
        overlay = self._overlay() or {}
        seen = set()
        for key in list(overlay) + list(self._base):
            if key not in seen and overlay.get(key) is not _DELETED:
                seen.add(key)
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict[str, str]:
        return dict(self)


def thread_local_environ() -> ThreadLocalEnviron:
    """Install the per-thread environment once for the process and return it."""
    if not isinstance(os.environ, ThreadLocalEnviron):
        os.environ = ThreadLocalEnviron(os.environ)  # os.getenv reads this same module global
    return os.environ


@dataclass
class LocalFunction:
    """A deployed function's code as it sits in the checkout, and what its artifact installs:
    `requirements` holds one group of requirement files per `pip install` its build runs (a
    layer's requirements.txt; the files an image's Dockerfile installs together)."""

    name: str
    code_dir: Path
    handler: str
    layer_dirs: list[Path] = field(default_factory=list)
    memory_mb: int = 128
    timeout_s: int = 3
    requirements: list[list[Path]] = field(default_factory=list)


@dataclass
class LambdaContext:
    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_s: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _started: float = field(default_factory=time.monotonic)

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"offline/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self._started)) * 1000))


class LocalLambdaRunner:
    """Runs registered functions' handlers, in-process or each in its shipped environment; one
    instance serves the whole emulator."""

    def __init__(self, identities: Identities, environment_overrides: dict[str, str] | None = None,
                 shipped: bool = False, runtime_environment: dict[str, str] | None = None) -> None:
        """`environment_overrides` win over every function's own variables (offline log level).
        `runtime_environment` is what Lambda's runtime sets for every function (region; offline,
        the endpoint too): in-process it is the process's environment, a shipped environment gets
        it explicitly, with nothing else of this process. Each function runs with credentials of
        its own role from `identities`, as Lambda sets them (identities.py)."""
        self.functions: dict[str, LocalFunction] = {}
        self.shipped = shipped
        self._identities = identities
        self._overrides = dict(environment_overrides or {})
        self._runtime_environment = dict(runtime_environment or {})
        self._modules: dict[str, ModuleType] = {}
        self._import_lock = threading.Lock()
        self._environ = thread_local_environ()
        self._environments: dict[str, list[ShippedEnvironment]] = {}
        self._pool_lock = threading.Lock()
        self._sites: dict[str, list[Path]] = {}
        # Set by stop: an init thread still running then freezes nothing (the emulator unfreezes
        # after stopping the runner, so a later freeze would hold this init's objects until the
        # next emulator of the process stops).
        self._stopped = False
        self._freeze_lock = threading.Lock()

    def register(self, function: LocalFunction) -> None:
        self.functions[function.name] = function
        if self.shipped:  # resolve what it ships now, not inside the first invocation's time limit
            from . import shipped

            self._sites[function.name] = [shipped.site(group) for group in function.requirements] + [
                shipped.runtime_site()
            ]

    def peak_memory_mb(self) -> dict[str, float]:
        """Shipped environments: each function's largest resident set so far (MiB, polled while
        it serves an invocation), over every environment it ran in."""
        with self._pool_lock:
            return {name: max(e.peak_memory_mb for e in pool) for name, pool in self._environments.items() if pool}

    def stop(self) -> None:
        """End every execution environment (the emulator stops them with itself)."""
        with self._freeze_lock:
            self._stopped = True
        with self._pool_lock:
            environments = [e for pool in self._environments.values() for e in pool]
            self._environments.clear()
        for environment in environments:
            environment.stop()

    def install(self) -> None:
        runner = self

        def invoke(backend: LambdaSimpleBackend, function_name, qualifier, body, headers, response_headers):
            fn = backend.get_function(function_name, qualifier)
            return runner.invoke(fn, body, response_headers)

        LambdaSimpleBackend.invoke = invoke

    def initialize_in_background(self, modules: tuple[str, ...] = LAZY_LAYER_MODULES) -> threading.Thread:
        """In-process only: run every registered function's init phase (its handler module's
        import) and import ``modules`` on a background thread, as Lambda runs a function's init
        before its first invocation. Offline, the Models steps would otherwise import
        scikit-learn and scipy inside their first invocations, at the same time, in one process.
        A module that fails to import here fails again, as it should, when its step imports it."""

        def initialize() -> None:
            # Module-level code reads only what every function shares (Powertools' level from the
            # overrides); each function's own variables are read inside its handler.
            self._environ.enter(dict(self._overrides))
            try:
                for function in list(self.functions.values()):
                    try:
                        self._handler(function)
                    except Exception:  # noqa: BLE001 - its invocation fails with the same error
                        pass
                for module in modules:
                    try:
                        importlib.import_module(module)
                    except Exception:  # noqa: BLE001 - the step importing it fails with the error
                        pass
            finally:
                self._environ.leave()
            with self._freeze_lock:
                if not self._stopped:
                    gc.freeze()  # the modules just imported live as long as the process (emulator.provision)

        thread = threading.Thread(target=initialize, name="lambda-init", daemon=True)
        thread.start()
        return thread

    def _handler(self, function: LocalFunction):
        module_file, _, attribute = function.handler.rpartition(".")
        with self._import_lock:
            module = self._modules.get(function.name)
            if module is None:
                for layer in function.layer_dirs:
                    if str(layer) not in sys.path:
                        sys.path.insert(0, str(layer))
                # A unique module name per function: every handler file is called app.py.
                name = f"offline_function_{function.name.replace('-', '_')}"
                spec = importlib.util.spec_from_file_location(
                    name, function.code_dir / f"{module_file.replace('.', '/')}.py"
                )
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
                self._modules[function.name] = module
        return getattr(module, attribute)

    def invoke(self, fn: Any, body: bytes | str | None, response_headers: dict) -> bytes:
        function = self.functions.get(fn.function_name)
        if function is None:
            raise KeyError(f"function {fn.function_name} has no local code registered")
        event = json.loads(body) if body else {}
        context = LambdaContext(
            function_name=fn.function_name,
            invoked_function_arn=fn.function_arn,
            memory_limit_in_mb=function.memory_mb,
            timeout_s=function.timeout_s,
        )
        variables = {
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "LAMBDA_TASK_ROOT": str(function.code_dir),
            **self._identities.role_environment(fn.role),
            **(fn.environment_vars or {}),
            **self._overrides,
        }
        if self.shipped:
            result, error = self._invoke_shipped(function, fn, event, context, variables)
        else:
            result, error = self._invoke_in_process(function, fn, event, context, variables)
        if error is not None:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(error).encode()
        return result.encode()

    def _invoke_in_process(self, function, fn, event, context, variables) -> tuple[str | None, dict | None]:
        """The handler on a thread of its own, given the function's Timeout as Lambda gives it: past
        it the caller gets Lambda's Sandbox.Timedout error (the thread cannot be killed; it runs to
        its end unseen, as a timed-out invocation's code does until Lambda freezes it)."""
        outcome: list[tuple[str | None, dict | None]] = []

        def call() -> None:
            self._environ.enter(variables)
            try:
                with self._identities.acting_as(fn.role):
                    outcome.append((json.dumps(self._handler(function)(event, context), default=str), None))
            except Exception as exc:  # noqa: BLE001 - every handler error becomes Lambda's error payload
                outcome.append((None, {"errorMessage": str(exc), "errorType": type(exc).__name__,
                                       "stackTrace": traceback.format_exception(exc)}))
            finally:
                self._environ.leave()

        worker = threading.Thread(target=call, name=f"lambda-{fn.function_name}", daemon=True)
        worker.start()
        worker.join(context.timeout_s)
        if not outcome:
            return None, {"errorType": "Sandbox.Timedout", "errorMessage":
                          f"RequestId: {context.aws_request_id} Error: Task timed out after "
                          f"{context.timeout_s:.2f} seconds"}
        return outcome[0]

    def _invoke_shipped(self, function, fn, event, context, variables) -> tuple[str | None, dict | None]:
        # Lambda serves one invocation per execution environment at a time: a busy one means a
        # second environment, an idle one is reused warm.
        with self._pool_lock:
            pool = self._environments.setdefault(function.name, [])
            environment = next((e for e in pool if not e.busy and e.alive), None)
            if environment is None:
                environment = ShippedEnvironment(
                    function, self._sites[function.name],
                    {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": "UTC",
                     **self._runtime_environment, **variables, "_HANDLER": function.handler},
                )
                pool.append(environment)
            environment.busy = True
        try:
            return environment.invoke(event, context, fn.function_arn)
        finally:
            environment.busy = False


_BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
_MEMORY_POLL_S = 0.05


class ShippedEnvironment:
    """One execution environment of a function: a Python 3.12 process serving its invocations.

    The process starts on the first invocation (the handler's import is its init) and stays warm.
    Its time limit covers init and invocation, as a first invocation's does on Lambda; its memory
    is the resident size of the process, polled, against the function's `MemorySize`.
    """

    def __init__(self, function: LocalFunction, sites: list[Path], environment: dict[str, str]):
        self.function = function
        self._sites = sites
        self._environment = environment
        self._process: subprocess.Popen | None = None
        self._responses = None
        self.busy = False
        self.peak_memory_mb = 0.0

    @property
    def alive(self) -> bool:
        return self._process is None or self._process.poll() is None

    def _start(self) -> None:
        from .shipped import python312

        read_fd, write_fd = os.pipe()
        spec = {
            "code_paths": [str(self.function.code_dir)] + [str(p) for p in self.function.layer_dirs
                                                           if p != self.function.code_dir],
            "sites": [str(p) for p in self._sites],
            "handler": self.function.handler,
            "response_fd": write_fd,
        }
        try:
            self._process = subprocess.Popen(
                [python312(), "-I", "-S", str(_BOOTSTRAP), json.dumps(spec)],
                stdin=subprocess.PIPE, env=self._environment, cwd=self.function.code_dir,
                pass_fds=(write_fd,), text=True,
            )
        finally:
            os.close(write_fd)
        self._responses = os.fdopen(read_fd, "r", encoding="utf-8")

    def invoke(self, event: Any, context: LambdaContext, function_arn: str) -> tuple[str | None, dict | None]:
        if self._process is None:
            self._start()
        request = {
            "event": event, "function_name": context.function_name, "invoked_function_arn": function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb, "timeout_s": context.timeout_s,
            "aws_request_id": context.aws_request_id,
        }
        request_id = context.aws_request_id
        try:
            self._process.stdin.write(json.dumps(request, default=str) + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            return None, self._exited(request_id)
        deadline = time.monotonic() + context.timeout_s
        while True:
            ready, _, _ = select.select([self._responses], [], [], _MEMORY_POLL_S)
            if ready:
                line = self._responses.readline()
                if not line:
                    return None, self._exited(request_id)
                response = json.loads(line)
                if "error" in response:
                    return None, response["error"]
                return response["result"], None
            resident = _resident_mb(self._process.pid)
            self.peak_memory_mb = max(self.peak_memory_mb, resident)
            if resident > self.function.memory_mb:
                self.stop()
                return None, {"errorType": "Runtime.OutOfMemory", "errorMessage":
                              f"RequestId: {request_id} Error: Runtime exited with error: signal: killed "
                              f"({resident:.0f} MB resident, over the function's {self.function.memory_mb} MB)"}
            if time.monotonic() > deadline:
                self.stop()
                return None, {"errorType": "Sandbox.Timedout", "errorMessage":
                              f"RequestId: {request_id} Error: Task timed out after {context.timeout_s:.2f} seconds"}
            if self._process.poll() is not None:
                return None, self._exited(request_id)

    def _exited(self, request_id: str) -> dict:
        code = self._process.wait()
        return {"errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}"}

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._responses is not None:
            self._responses.close()
            self._responses = None


def _resident_mb(pid: int) -> float:
    """The process's resident set (what Lambda's memory limit counts), in MiB as `MemorySize` is;
    0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
