"""Powertools logger, tracer and metrics, created once for every function of the layer.

Each handler appends the run_id, so every log line of a run can be found by it.
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
