"""The runtime loop of one offline Lambda execution environment (standard library only).

Started by `lambda_runner.ShippedEnvironment` as `python3.12 -I -S lambda_bootstrap.py SPEC`:
isolated, without the interpreter's own site-packages, so the only packages importable are the
function's code folders, its shipped site folders and the runtime's (SPEC names them, in Lambda's
order). Like Lambda's runtime it imports the handler once (init) and then serves invocations
one at a time: each request is a JSON line on stdin, each response a JSON line on the file
descriptor SPEC names (stdout and stderr stay the function's own, as its log).
"""

import importlib
import json
import os
import site
import sys
import time
import traceback


class LambdaContext:
    def __init__(self, request: dict):
        self.function_name = request["function_name"]
        self.invoked_function_arn = request["invoked_function_arn"]
        self.memory_limit_in_mb = int(request["memory_limit_in_mb"])
        self.function_version = "$LATEST"
        self.aws_request_id = request["aws_request_id"]
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"offline/{self.aws_request_id}"
        self._deadline = time.monotonic() + float(request["timeout_s"])

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _error(error_type: str, message: str, exc: BaseException | None = None) -> dict:
    return {"errorType": error_type, "errorMessage": message,
            "stackTrace": traceback.format_exception(exc) if exc is not None else []}


def _load(spec: dict):
    sys.path[:0] = spec["code_paths"] + spec["sites"]
    for folder in spec["sites"]:
        site.addsitedir(folder)  # .pth files of what pip installed (the folder is already on the path)
    module_name, _, attribute = spec["handler"].rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - reported as Lambda reports an init failure
        return None, _error("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}", exc)
    handler = getattr(module, attribute, None)
    if handler is None:
        return None, _error("Runtime.HandlerNotFound", f"Handler '{attribute}' missing on module '{module_name}'")
    return handler, None


def main() -> None:
    spec = json.loads(sys.argv[1])
    responses = os.fdopen(spec["response_fd"], "w", encoding="utf-8")
    handler, init_error = _load(spec)
    for line in sys.stdin:
        request = json.loads(line)
        if init_error is not None:
            response = {"error": init_error}
        else:
            try:
                result = handler(request["event"], LambdaContext(request))
                response = {"result": json.dumps(result, default=str)}
            except Exception as exc:  # noqa: BLE001 - every handler error becomes Lambda's error payload
                response = {"error": _error(type(exc).__name__, str(exc), exc)}
        sys.stdout.flush()
        sys.stderr.flush()
        responses.write(json.dumps(response) + "\n")
        responses.flush()


if __name__ == "__main__":
    main()
