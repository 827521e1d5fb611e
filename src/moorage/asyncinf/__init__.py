"""Asynchronous inference: InvokeEndpointAsync's durable queue, its dispatcher, its S3 results and SNS
notifications (spec sagemaker-beyond-realtime.md §c.3)."""
