"""Serverless variants: zero instances while idle, one started when a request arrives (and the async
queue's scale to zero, which takes the same path through Application Auto Scaling)."""
