"""S3's XML documents: building responses (results and errors) and reading request bodies.

Responses carry S3's namespace; botocore's parser ignores it, but other clients check it. Request
bodies are small (a DeleteObjects or CompleteMultipartUpload document) and read with a size cap; the
standard library's expat parser neither fetches external entities nor expands nested ones without
bound (expat ≥ 2.4 has amplification limits).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from moorage.s3.errors import MalformedXML

__all__ = [
    "PartSpec",
    "error_document",
    "iso_time",
    "node",
    "parse_complete_upload",
    "parse_delete",
    "parse_location_constraint",
    "render",
    "url_encode",
]

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

# Characters outside XML 1.0's Char production (https://www.w3.org/TR/xml/#charsets).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# A child is a finished element, a (tag, text) leaf, or None (left out).
Child = ET.Element | tuple[str, str | int | bool | None] | None


def node(tag: str, *children: Child | Iterable[Child]) -> ET.Element:
    """An element with its children in order; iterables of children are spliced in."""
    element = ET.Element(tag)
    for child in children:
        if child is None or isinstance(child, ET.Element | tuple):
            _add(element, child)
        else:
            for item in child:
                _add(element, item)
    return element


def _add(element: ET.Element, child: Child) -> None:
    if child is None:
        return
    if isinstance(child, ET.Element):
        element.append(child)
        return
    name, value = child
    if value is None:
        return
    leaf = ET.SubElement(element, name)
    leaf.text = ("true" if value else "false") if isinstance(value, bool) else str(value)


def render(root: ET.Element, *, namespace: bool = True) -> bytes:
    """The document as UTF-8 bytes that every XML 1.0 parser accepts, whatever the keys hold.

    S3 keys may hold any Unicode character, but XML 1.0 cannot carry NUL and most other C0
    controls, U+FFFE/U+FFFF or lone surrogates (security probe 2, #28: one such key made every
    un-encoded listing of its bucket unparseable). Those characters are written as U+FFFD, as MinIO
    does; `encoding-type=url` (which boto3 and the aws CLI always send) returns such keys exactly. A
    carriage return becomes `&#13;`, since a parser would otherwise read it back as a line feed.
    """
    if namespace:
        root.set("xmlns", NAMESPACE)
    text = ET.tostring(root, encoding="unicode")
    # Our tags and markup hold neither kind of character, so one pass over the whole text touches
    # only values. ElementTree escapes "\r" in attribute values but not in element text.
    text = _NOT_XML_CHAR.sub("\ufffd", text).replace("\r", "&#13;")
    return _DECLARATION + text.encode("utf-8")


def error_document(
    code: str, message: str, resource: str, request_id: str, fields: Iterable[tuple[str, str]]
) -> bytes:
    root = node(
        "Error",
        ("Code", code),
        ("Message", message),
        *fields,
        ("Resource", resource),
        ("RequestId", request_id),
    )
    return render(root, namespace=False)


def iso_time(epoch: float) -> str:
    """S3's timestamp form in XML: 2009-10-12T17:50:30.000Z."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def url_encode(value: str) -> str:
    """encoding-type=url: botocore decodes with unquote_plus, so "+" and " " must both be escaped."""
    return quote(value, safe="/")


# Request bodies -----------------------------------------------------------------------------------


def _parse(body: bytes) -> ET.Element:
    if not body.strip():
        raise MalformedXML("the request body is empty")
    try:
        return ET.fromstring(body)
    except ET.ParseError as error:
        raise MalformedXML(str(error)) from None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _text(element: ET.Element, name: str) -> str | None:
    found = _children(element, name)
    return None if not found else (found[0].text or "")


def parse_location_constraint(body: bytes) -> str | None:
    """CreateBucketConfiguration's LocationConstraint, or None for an empty body / no constraint."""
    if not body.strip():
        return None
    root = _parse(body)
    if _local(root.tag) != "CreateBucketConfiguration":
        raise MalformedXML("expected CreateBucketConfiguration")
    value = _text(root, "LocationConstraint")
    return value or None


def parse_delete(body: bytes) -> tuple[bool, list[str]]:
    """DeleteObjects: (quiet, keys). S3 takes at most 1000 keys per request."""
    root = _parse(body)
    if _local(root.tag) != "Delete":
        raise MalformedXML("expected Delete")
    quiet = (_text(root, "Quiet") or "false").strip().lower() == "true"
    keys: list[str] = []
    for item in _children(root, "Object"):
        key = _text(item, "Key")
        if key is None:
            raise MalformedXML("an Object without a Key")
        keys.append(key)
    if not keys or len(keys) > 1000:
        raise MalformedXML("a Delete request names between 1 and 1000 objects")
    return quiet, keys


@dataclass(frozen=True)
class PartSpec:
    part_number: int
    etag: str  # without quotes
    checksums: tuple[tuple[str, str], ...]  # (algorithm, base64) pairs the client listed


def parse_complete_upload(body: bytes) -> list[PartSpec]:
    root = _parse(body)
    if _local(root.tag) != "CompleteMultipartUpload":
        raise MalformedXML("expected CompleteMultipartUpload")
    parts: list[PartSpec] = []
    for item in _children(root, "Part"):
        number_text = _text(item, "PartNumber")
        etag = _text(item, "ETag")
        if number_text is None or etag is None:
            raise MalformedXML("each Part needs a PartNumber and an ETag")
        try:
            number = int(number_text.strip())
        except ValueError:
            raise MalformedXML(f"PartNumber {number_text!r} is not a number") from None
        checksums = tuple(
            (_local(child.tag).removeprefix("Checksum").upper(), (child.text or "").strip())
            for child in item
            if _local(child.tag).startswith("Checksum") and _local(child.tag) != "ChecksumType"
        )
        parts.append(PartSpec(number, etag.strip().strip('"'), checksums))
    if not parts:
        raise MalformedXML("a CompleteMultipartUpload request lists at least one Part")
    return parts
