"""Data capture: sampled requests and answers of real-time endpoints, written to S3 as JSON Lines."""
