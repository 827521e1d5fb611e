"""SageMaker's multi-model container API on `moorage serve-model --multi-model ROOT` (spec §c.1).

    POST   /models                  {"model_name": n, "url": u} (or ?model_name=&url=): 200; 409 if loaded;
                                    507 if memory is short
    GET    /models[?next_page_token=t]  {"models": [{"modelName", "modelUrl"}], "nextPageToken"?}
    GET    /models/{name}           {"modelName", "modelUrl"}; 404 if not loaded
    DELETE /models/{name}           200 once its worker is gone; 404 if not loaded
    POST   /models/{name}/invoke    the handler's answer, as /invocations; 404 if not loaded

Errors are TorchServe's JSON shape (`{"code", "type", "message"}`), as from SageMaker's PyTorch container.
"""

from __future__ import annotations

import json
import urllib.parse

from moorage.api.container import container_response, invoke_message, torchserve_error
from moorage.errors import ModelError, MoorageError, PayloadTooLarge
from moorage.httpd import Request, Response, StreamingResponse
from moorage.multimodel.container import ContainerModels, ModelConflict, ModelNotFound
from moorage.multimodel.host import InsufficientMemory
from moorage.settings import MAX_PAYLOAD_BYTES

__all__ = ["ModelsApi"]

_JSON = [("Content-Type", "application/json")]
_NOT_FOUND = "Requested resource is not found, please refer to API document."


def _json(document: object) -> Response:
    return Response(200, json.dumps(document, indent=2).encode() + b"\n", list(_JSON))


class ModelsApi:
    def __init__(self, models: ContainerModels) -> None:
        self.models = models

    @staticmethod
    def claims(path: str) -> bool:
        return path == "/models" or path.startswith("/models/")

    async def __call__(self, request: Request) -> Response | StreamingResponse:
        try:
            return await self._route(request)
        except PayloadTooLarge as exc:
            response = torchserve_error(413, "RequestEntityTooLarge", exc.message)
            response.close = True
            return response
        except ModelConflict as exc:
            return torchserve_error(409, "ConflictStatusException", exc.message)
        except ModelNotFound as exc:
            return torchserve_error(404, "ModelNotFoundException", exc.message)
        except InsufficientMemory as exc:
            return torchserve_error(507, "InsufficientMemoryException", exc.message)
        except ModelError as exc:  # model_fn failed, or the archive could not be prepared
            return torchserve_error(500, "InternalServerException", exc.original_message or exc.message)
        except MoorageError as exc:
            status = exc.status if 400 <= exc.status < 500 else 500
            kind = "BadRequestException" if status == 400 else "InternalServerException"
            return torchserve_error(status, kind, exc.message)

    async def _route(self, request: Request) -> Response | StreamingResponse:
        parts = [urllib.parse.unquote(part) for part in request.path.split("/")[2:]]
        method = request.method
        if not parts and method == "POST":
            return await self._load(request)
        if not parts and method == "GET":
            token = dict(request.query()).get("next_page_token")
            chosen, following = self.models.page(token)
            page: dict[str, object] = {"models": [{"modelName": m.name, "modelUrl": m.url} for m in chosen]}
            if following is not None:
                page["nextPageToken"] = following
            return _json(page)
        if len(parts) == 1 and method == "GET":
            found = self.models.describe(parts[0])
            return _json({"modelName": found.name, "modelUrl": found.url})
        if len(parts) == 1 and method == "DELETE":
            await self.models.unload(parts[0])
            return _json({"status": f'Model "{parts[0]}" unloaded'})
        if len(parts) == 2 and parts[1] == "invoke" and method == "POST":
            body = await request.body(MAX_PAYLOAD_BYTES)
            outcome = await self.models.invoke(parts[0], invoke_message(request, body))
            return container_response(outcome)
        return torchserve_error(404, "ResourceNotFoundException", _NOT_FOUND)

    async def _load(self, request: Request) -> Response:
        fields = dict(request.query())
        body = await request.body(64 * 1024)
        if body.strip():
            try:
                document = json.loads(body)
            except ValueError:
                document = None
            if not isinstance(document, dict):
                return torchserve_error(
                    400, "BadRequestException", 'The body must be {"model_name": ..., "url": ...}.'
                )
            fields.update({key: str(value) for key, value in document.items()})
        name, url = fields.get("model_name", ""), fields.get("url", "")
        if not url:
            return torchserve_error(400, "BadRequestException", "Parameter url is required.")
        await self.models.load(name, url)
        return _json({"status": f'Model "{name}" loaded'})
