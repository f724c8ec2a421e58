"""Powertools logger, tracer and metrics, created once for every function of the layer, and the
one wrapper every handler has.

Every log line of a run carries its `run_id` (the EMF metrics line too, as metadata), and the
trace is annotated with it, so a run can be followed across the functions by that one key.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# A library's or a model's warning (a fit that did not converge, say) is a log line like any
# other: JSON, with the run's id, in the function's log stream; not bare text on stderr (and,
# offline, not on the user's terminal). The run's summary already carries what it means.
logging.captureWarnings(True)
_warnings_logger = logging.getLogger("py.warnings")
_warnings_logger.handlers = [logger.registered_handler]
_warnings_logger.propagate = False


def bind_run(run_id: str) -> None:
    """From here on, this invocation's log lines, metrics line and trace name the run."""
    logger.append_keys(run_id=run_id)
    metrics.add_metadata(key="run_id", value=run_id)
    tracer.put_annotation(key="run_id", value=run_id)


def handler(step: Callable[[dict, Any], dict]) -> Callable[[dict, Any], dict]:
    """Wrap a function's handler: Lambda's context on every log line, the keys cleared at the start
    of each invocation (a warm container must not log the previous run's id), the run of the event
    bound before the step runs, a trace segment, and the metrics flushed when it returns."""

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    @functools.wraps(step)
    def wrapped(event: dict, context: Any) -> dict:
        run = event.get("run") if isinstance(event, dict) else None
        if isinstance(run, dict) and run.get("run_id"):
            bind_run(run["run_id"])
        return step(event, context)

    return wrapped
