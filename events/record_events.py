"""Re-record the step events (features, models, publish, report) from a real offline run on the sample.

    .venv/bin/python events/record_events.py

Runs the whole state machine on data/CDNOW_sample.txt in the offline stack, takes each step's
Lambda payload from the execution history, and writes it with the bucket names replaced by
RAW_BUCKET / CURATED_BUCKET (tests/integration/test_handlers.py checks their shape).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3

from cdnow_offline.emulator import Emulator

ROOT = Path(__file__).resolve().parents[1]
STACK = "cdnow-events"


def main() -> None:
    with Emulator(ROOT) as emulator:
        stack = emulator.provision(STACK)
        raw, curated = stack.outputs["RawBucketName"], stack.outputs["CuratedBucketName"]
        boto3.client("s3").upload_file(str(ROOT / "data" / "CDNOW_sample.txt"), raw, "incoming/CDNOW_sample.txt")
        relay = stack.execution_relay
        while not relay.started:
            time.sleep(0.2)
        sfn = boto3.client("stepfunctions")
        while sfn.describe_execution(executionArn=relay.started[0])["status"] == "RUNNING":
            time.sleep(0.5)
        events = sfn.get_execution_history(executionArn=relay.started[0], maxResults=1000)["events"]
    entered = {e["stateEnteredEventDetails"]["name"]: e["stateEnteredEventDetails"]["input"]
               for e in events if "stateEnteredEventDetails" in e}
    publish = json.loads(entered["Publish"].replace(raw, "RAW_BUCKET").replace(curated, "CURATED_BUCKET"))
    run, features = publish["run"], publish["steps"]["features"]
    payloads = {
        "features": {"run": run},
        "models": {"run": run, "features": features},
        "publish": {"run": run, "transform": publish["transform"], "features": features,
                    "models": publish["models"]},
        "report": {"run": run},
    }
    for name, payload in payloads.items():
        (ROOT / "events" / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote events/{name}.json")


if __name__ == "__main__":
    main()
