"""Handlers written the way SageMaker users write them, for driving faults from a test.

FAULT_HANDLER's behaviour is chosen per request by a JSON body such as {"action": "sleep", "seconds": 3};
its model_fn fails when the model's environment says so (FAULT_LOAD=raise|sleep, or raise_if_marker:
raise while the file FAULT_MARKER exists), or waits (FAULT_LOAD=block: until the file FAULT_RELEASE exists,
at most FAULT_LOAD_SECONDS). A request naming a "started" file creates it as predict_fn begins, so a
test waits for that evidence instead of sleeping. Traces for tests that must see whether user code ran:
FAULT_IMPORT_MARKER (written when the module is imported) and FAULT_LOAD_LOG (a line per model_fn call).
A body whose Content-Type is not JSON reaches input_fn untouched and is described back ("seen");
`application/x-refused` is refused by input_fn with a 415 (the toolkit's GenericInferenceToolkitError).
"""

from __future__ import annotations

import textwrap

FAULT_HANDLER = textwrap.dedent("""
    import json
    import os
    import signal
    import time

    from sagemaker_inference import errors

    if os.environ.get("FAULT_IMPORT_MARKER"):
        with open(os.environ["FAULT_IMPORT_MARKER"], "a") as marker:
            marker.write(f"imported by {os.getpid()}\\n")


    def model_fn(model_dir):
        if os.environ.get("FAULT_LOAD_LOG"):
            with open(os.environ["FAULT_LOAD_LOG"], "a") as trace:
                trace.write(f"{time.time()} {os.getpid()}\\n")
        mode = os.environ.get("FAULT_LOAD", "")
        if mode == "raise":
            raise RuntimeError("model_fn refused to load: FAULT_LOAD=raise")
        if mode == "raise_if_marker" and os.path.exists(os.environ["FAULT_MARKER"]):
            raise RuntimeError("model_fn refused to load: the fault marker exists")
        if mode == "sleep":
            time.sleep(float(os.environ.get("FAULT_LOAD_SECONDS", "30")))
        if mode == "block":
            deadline = time.monotonic() + float(os.environ.get("FAULT_LOAD_SECONDS", "60"))
            while not os.path.exists(os.environ["FAULT_RELEASE"]) and time.monotonic() < deadline:
                time.sleep(0.01)
        return {"loaded_from": model_dir, "version": os.environ.get("MODEL_VERSION", "1")}


    def input_fn(body, content_type):
        if content_type == "application/x-refused":
            raise errors.GenericInferenceToolkitError(415, f"input_fn does not take {content_type}")
        if content_type is None or not content_type.startswith("application/json"):
            return {"action": "seen", "content_type": content_type, "body_type": type(body).__name__,
                    "length": len(body)}
        request = json.loads(body)
        if request.get("action") == "raise" and request.get("where") == "input_fn":
            raise ValueError("boom in input_fn")
        return request


    def predict_fn(request, model):
        action = request.get("action")
        if request.get("started"):
            open(request["started"], "w").close()
        if action == "raise" and request.get("where") == "predict_fn":
            raise ValueError("boom in predict_fn")
        if action == "status":
            status, message = int(request["status"]), request.get("message", "bad input")
            raise errors.GenericInferenceToolkitError(status, message)
        if action == "sleep":
            time.sleep(float(request["seconds"]))
        if action == "block":  # until the test creates `release` (at most `seconds`)
            deadline = time.monotonic() + float(request.get("seconds", 30))
            while not os.path.exists(request["release"]) and time.monotonic() < deadline:
                time.sleep(0.01)
        if action == "spin":
            deadline = time.monotonic() + float(request["seconds"])
            while time.monotonic() < deadline:
                pass
        if action == "exit":
            os._exit(int(request.get("code", 3)))
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "alloc":
            blob = bytearray(int(request["bytes"]))
            return {"allocated": len(blob)}
        if action == "big":
            return {"big": "x" * int(request["bytes"])}
        return {"pid": os.getpid(), "version": model["version"], "echo": request}


    def output_fn(prediction, accept):
        if isinstance(prediction, dict) and prediction.get("echo", {}).get("where") == "output_fn":
            raise ValueError("boom in output_fn")
        if isinstance(prediction, dict) and prediction.get("echo", {}).get("action") == "bad_content_type":
            return json.dumps(prediction), "text/plain\\r\\nX-Evil: 1"
        if isinstance(prediction, dict) and prediction.get("echo", {}).get("action") == "content_type":
            return json.dumps(prediction), prediction["echo"]["value"]
        return json.dumps(prediction), "application/json"
""")
