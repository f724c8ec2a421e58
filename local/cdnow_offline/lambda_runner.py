"""The Lambda adapter: moto's Lambda invoke runs the real handler in this process.

moto runs Lambda code only in Docker; with `use_docker: false` its `LambdaSimpleBackend.invoke`
never runs code at all. This adapter replaces that one method: it imports the function's
handler (its code folder and its layers on the path, as Lambda lays them out), calls it with the
event, a Lambda context and the function's own environment, and returns its JSON, or Lambda's
error payload with `X-Amz-Function-Error: Unhandled` so the state machine's Retry/Catch see the
exception's type name as the error, as on AWS.

Parallel branches invoke functions at the same time in the server's request threads, so each
invocation sees its function's variables through a per-thread view of `os.environ`: swapping the
process environment leaked one function's variables into another (notes/offline-aws.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
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

_DELETED = object()


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
    """A deployed function's code as it sits in the checkout."""

    name: str
    code_dir: Path
    handler: str
    layer_dirs: list[Path] = field(default_factory=list)
    memory_mb: int = 128
    timeout_s: int = 3


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
    """Runs registered functions' handlers in-process; one instance serves the whole emulator."""

    def __init__(self, environment_overrides: dict[str, str] | None = None) -> None:
        """`environment_overrides` win over every function's own variables (offline log level)."""
        self.functions: dict[str, LocalFunction] = {}
        self._overrides = dict(environment_overrides or {})
        self._modules: dict[str, ModuleType] = {}
        self._import_lock = threading.Lock()
        self._environ = thread_local_environ()

    def register(self, function: LocalFunction) -> None:
        self.functions[function.name] = function

    def install(self) -> None:
        runner = self

        def invoke(backend: LambdaSimpleBackend, function_name, qualifier, body, headers, response_headers):
            fn = backend.get_function(function_name, qualifier)
            return runner.invoke(fn, body, response_headers)

        LambdaSimpleBackend.invoke = invoke

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
            **(fn.environment_vars or {}),
            **self._overrides,
        }
        self._environ.enter(variables)
        try:
            result = self._handler(function)(event, context)
            return json.dumps(result, default=str).encode()
        except Exception as exc:  # noqa: BLE001 - every handler error becomes Lambda's error payload
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {
                    "errorMessage": str(exc),
                    "errorType": type(exc).__name__,
                    "stackTrace": traceback.format_exception(exc),
                }
            ).encode()
        finally:
            self._environ.leave()
