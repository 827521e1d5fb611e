"""AddTags, ListTags, DeleteTags for models, endpoint configs and endpoints.

Tags are addressed by ARN. The ARN's name part is lower-cased (spec §3.2) and names are unique
case-insensitively, so the ARN finds the resource whatever case it was created with.
"""

from __future__ import annotations

from moorage.control.arns import ControlContext, ResourceKind, not_found, parse_arn
from moorage.control.records import JsonObject
from moorage.control.store import Store
from moorage.control.validation import validate
from moorage.errors import ValidationException

__all__ = ["MAX_TAGS_PER_RESOURCE", "add_tags", "delete_tags", "list_tags", "refuse_reserved_keys"]

MAX_TAGS_PER_RESOURCE = 50  # SageMaker's limit per resource (the model caps AddTags.Tags at 50 too)
_RESERVED_PREFIX = "aws:"  # AWS keeps tag keys with this prefix for itself


def add_tags(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("AddTags", request)
    kind, name = _resource(ctx, request["ResourceArn"])
    tags = request["Tags"]
    refuse_reserved_keys(tags)

    def within_limit(after: list[JsonObject]) -> None:
        if len(after) > MAX_TAGS_PER_RESOURCE:
            raise ValidationException(
                f"A resource can have at most {MAX_TAGS_PER_RESOURCE} tags; this request would give "
                f'"{request["ResourceArn"]}" {len(after)}.'
            )

    if store.add_tags(kind, name, tags, within_limit) is None:
        raise not_found(ctx, kind, name)
    return {"Tags": tags}


def list_tags(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("ListTags", request)
    arn = request["ResourceArn"]
    kind, name = _resource(ctx, arn)
    tags = store.get_tags(kind, name)
    if tags is None:
        raise not_found(ctx, kind, name)
    start = 0
    if "NextToken" in request:
        cursor = store.decode_token(request["NextToken"])
        if cursor.get("arn") != arn.lower() or not isinstance(cursor.get("offset"), int):
            raise ValidationException(
                "Invalid pagination token: the NextToken was not issued for this request."
            )
        start = cursor["offset"]
    end = start + request.get("MaxResults", MAX_TAGS_PER_RESOURCE)
    result: JsonObject = {"Tags": tags[start:end]}
    if end < len(tags):
        result["NextToken"] = store.encode_token({"arn": arn.lower(), "offset": end})
    return result


def delete_tags(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("DeleteTags", request)
    kind, name = _resource(ctx, request["ResourceArn"])
    if not store.delete_tags(kind, name, request["TagKeys"]):
        raise not_found(ctx, kind, name)
    return {}


def refuse_reserved_keys(tags: list[JsonObject]) -> None:
    """Tag keys that start with "aws:" belong to AWS; no API call may set them."""
    reserved = [tag["Key"] for tag in tags if tag["Key"].lower().startswith(_RESERVED_PREFIX)]
    if reserved:
        raise ValidationException(
            f"Tag keys starting with '{_RESERVED_PREFIX}' are reserved for AWS use: {', '.join(reserved)}."
        )


def _resource(ctx: ControlContext, arn: str) -> tuple[ResourceKind, str]:
    """The kind and name an ARN names; a ValidationException for anything moorage does not host."""
    parsed = parse_arn(arn)
    kind = parsed.kind if parsed is not None else None
    if parsed is None or kind is None:
        raise ValidationException(
            f'Could not find resource "{arn}": moorage tags models, endpoint configs and endpoints only.'
        )
    if not ctx.owns(parsed):
        # Another region or account: nothing by that ARN can exist on this server.
        raise ValidationException(f'Could not find {kind.label} "{arn}".')
    return kind, parsed.name
