"""One local SparkSession for the process, started early: the JVM takes 10+ s to come up."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

LOG_CONFIG = Path(__file__).with_name("log4j2.properties")

_session: Future | None = None
_lock = threading.Lock()


def _build():
    from pyspark.sql import SparkSession

    # The driver binds to the loopback address; saying so keeps Spark from warning about it.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers (a Glue job's mapInPandas) run this interpreter, which has pandas and
    # pyarrow, as Glue's executors run the job's Python; not the first python3 on the PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("cdnow-offline-glue")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        # Local mode computes in the driver: its heap bounds a job offline (a benchmark at scale
        # sets CDNOW_SPARK_DRIVER_MEMORY; Glue's workers have their own).
        .config("spark.driver.memory", os.environ.get("CDNOW_SPARK_DRIVER_MEMORY", "2g"))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}")
        .getOrCreate()
    )
    return session


def start_session_in_background() -> Future:
    """Start building the session on a thread; `session()` waits for it."""
    global _session
    with _lock:
        if _session is None:
            _session = Future()

            def build() -> None:
                try:
                    _session.set_result(_build())
                except BaseException as exc:  # noqa: BLE001 - re-raised to whoever waits
                    _session.set_exception(exc)

            threading.Thread(target=build, name="spark-start", daemon=True).start()
    return _session


def session():
    return start_session_in_background().result()
