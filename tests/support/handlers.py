"""Handlers written the way SageMaker users write them, for driving faults from a test.

FAULT_HANDLER's behaviour is chosen per request by a JSON body such as {"action": "sleep", "seconds": 3};
its model_fn fails when the model's environment says so (FAULT_LOAD=raise|sleep).
"""

from __future__ import annotations

import textwrap

FAULT_HANDLER = textwrap.dedent("""
    import json
    import os
    import signal
    import time

    from sagemaker_inference import errors


    def model_fn(model_dir):
        mode = os.environ.get("FAULT_LOAD", "")
        if mode == "raise":
            raise RuntimeError("model_fn refused to load: FAULT_LOAD=raise")
        if mode == "sleep":
            time.sleep(float(os.environ.get("FAULT_LOAD_SECONDS", "30")))
        return {"loaded_from": model_dir, "version": os.environ.get("MODEL_VERSION", "1")}


    def input_fn(body, content_type):
        request = json.loads(body)
        if request.get("action") == "raise" and request.get("where") == "input_fn":
            raise ValueError("boom in input_fn")
        return request


    def predict_fn(request, model):
        action = request.get("action")
        if action == "raise" and request.get("where") == "predict_fn":
            raise ValueError("boom in predict_fn")
        if action == "status":
            status, message = int(request["status"]), request.get("message", "bad input")
            raise errors.GenericInferenceToolkitError(status, message)
        if action == "sleep":
            time.sleep(float(request["seconds"]))
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
        return json.dumps(prediction), "application/json"
""")
