"""SNS notifications of async results, published with boto3 to the SNS API the server is configured for.

`AWS_ENDPOINT_URL_SNS` (or `AWS_ENDPOINT_URL`) names it, else boto3 reaches AWS itself. Publishing runs
on a thread (boto3 blocks) and is retried with backoff; a notification that still cannot be published
is logged and counted (NotificationFailures). It never touches the result: the result object is
published before any notification is attempted.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from moorage import server_credentials

__all__ = ["Notifier", "message"]

log = logging.getLogger("moorage.asyncinf")

INCLUDE_LIMIT = 128 * 1024  # IncludeInferenceResponseIn: only responses up to 128 KB are included


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def message(
    *,
    region: str,
    endpoint: str,
    inference_id: str,
    received: float,
    finished: float,
    input_location: str | None,
    request_content_type: str | None,
    succeeded: bool,
    location: str,
    response_content_type: str | None,
    failure_reason: str | None,
    response: bytes | None,
) -> dict[str, Any]:
    """SageMaker's documented success message (spec §c.3); the failure message adds `failureReason` and
    `failureLocation` (its exact fields are unconfirmed). `response`, when given (≤128 KB), is included as
    `responseBody` {content, encoding} (UTF-8 text when it decodes, else BASE64)."""
    response_parameters: dict[str, Any] = {"contentType": response_content_type or "application/octet-stream"}
    response_parameters["outputLocation" if succeeded else "failureLocation"] = location
    if response is not None and len(response) <= INCLUDE_LIMIT:
        try:
            response_parameters["responseBody"] = {"content": response.decode("utf-8"), "encoding": "UTF-8"}
        except UnicodeDecodeError:
            content = base64.b64encode(response).decode()
            response_parameters["responseBody"] = {"content": content, "encoding": "BASE64"}
    request_parameters: dict[str, Any] = {"endpointName": endpoint}
    if request_content_type is not None:
        request_parameters["contentType"] = request_content_type
    if input_location is not None:
        request_parameters["inputLocation"] = input_location
    body: dict[str, Any] = {
        "awsRegion": region,
        "eventTime": _iso(finished),
        "receivedTime": _iso(received),
        "invocationStatus": "Completed" if succeeded else "Failed",
        "requestParameters": request_parameters,
        "responseParameters": response_parameters,
        "inferenceId": inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    if failure_reason is not None:
        body["failureReason"] = failure_reason
    return body


class Notifier:
    def __init__(self, environ: Mapping[str, str], attempts: int, backoff_s: float) -> None:
        self._endpoint = environ.get("AWS_ENDPOINT_URL_SNS") or environ.get("AWS_ENDPOINT_URL")
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._clients: dict[str, Any] = {}

    def _client(self, region: str) -> Any:
        client = self._clients.get(region)
        if client is None:
            client = server_credentials.session().client(
                "sns",
                region_name=region,
                endpoint_url=self._endpoint,
                config=Config(retries={"mode": "standard", "max_attempts": 1}),
            )
            self._clients[region] = client
        return client

    def publish(self, topic_arn: str, body: Mapping[str, Any], inference_id: str) -> bool:
        """Publish on this thread, retrying; False (logged) when every attempt failed."""
        region = topic_arn.split(":")[3] or "us-east-1"
        text = json.dumps(body)
        for attempt in range(1, self._attempts + 1):
            try:
                self._client(region).publish(TopicArn=topic_arn, Message=text)
                return True
            except (BotoCoreError, ClientError) as exc:
                log.warning(
                    "inference %s: SNS publish to %s failed (attempt %d of %d): %s",
                    inference_id,
                    topic_arn,
                    attempt,
                    self._attempts,
                    exc,
                )
                if attempt < self._attempts:
                    time.sleep(self._backoff_s * 2 ** (attempt - 1))
        return False
