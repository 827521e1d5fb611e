"""Response streaming: handlers that yield, and the parts travelling as they are produced.

A handler whose predict_fn, output_fn or transform_fn returns an iterator or generator (sync or async)
streams: each item goes out at once, as one HTTP/1.1 chunk on the container's /invocations and as one
PayloadPart event on InvokeEndpointWithResponseStream. moorage's own extension (SageMaker's PyTorch
toolkit never streams; spec §c.4). The pieces, one room each:

- `frames`: the worker-protocol messages of a stream (new frame kinds beside worker/protocol.py's);
- `parts`: what a handler's iterator becomes (bytes items, async generators driven, joined when the
  caller wants one body);
- `producer`: the worker side, plain blocking code: sends parts as credit allows, stops on Cancel;
- `relay`: the server side: the parts of one live stream, credit back to the worker, timeouts;
- `responses`: the HTTP edges: event-stream framing with SageMaker's in-stream errors, or chunks.
"""
