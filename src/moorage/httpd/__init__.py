"""A small HTTP/1.1 server on httptools: parsing, limits, keep-alive, graceful stop.

No application logic lives here: the server hands a `Request` to an `App` and writes back what the
app returns. It imports nothing from the rest of moorage but settings and errors.
"""

from moorage.httpd.messages import App, Headers, Request, Response, StreamingResponse
from moorage.httpd.server import HttpServer

__all__ = ["App", "Headers", "HttpServer", "Request", "Response", "StreamingResponse"]
