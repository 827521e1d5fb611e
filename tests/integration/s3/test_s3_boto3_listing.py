"""Listings through boto3's own paginators: ListObjectsV2 / ListObjects with prefix, delimiter, pages."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

KEYS = [
    "a/1",
    "a/2",
    "a/sub/3",
    "b",
    "c/x/y/z",
    "c/x/w",
    "d e/f",
    "d+e/g",
    "z",
]


@pytest.fixture
def filled(s3: Any) -> Any:
    s3.create_bucket(Bucket="listing")
    for key in KEYS:
        s3.put_object(Bucket="listing", Key=key, Body=key.encode())
    return s3


def _collect(pages: Any) -> tuple[list[str], list[str], int]:
    keys: list[str] = []
    prefixes: list[str] = []
    count = 0
    for page in pages:
        count += 1
        keys += [item["Key"] for item in page.get("Contents", [])]
        prefixes += [item["Prefix"] for item in page.get("CommonPrefixes", [])]
    return keys, prefixes, count


@pytest.mark.parametrize("page_size", [1, 2, 3, 1000])
def test_v2_pages_with_delimiter_cover_everything_once(filled: Any, page_size: int) -> None:
    paginator = filled.get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket="listing", Delimiter="/", PaginationConfig={"PageSize": page_size})
    keys, prefixes, count = _collect(pages)
    assert keys == ["b", "z"]
    assert prefixes == ["a/", "c/", "d e/", "d+e/"]
    assert count == -(-6 // page_size)  # each page holds up to page_size keys and prefixes together


@pytest.mark.parametrize("page_size", [1, 2, 1000])
def test_v1_pages_with_delimiter_cover_everything_once(filled: Any, page_size: int) -> None:
    paginator = filled.get_paginator("list_objects")
    pages = paginator.paginate(Bucket="listing", Delimiter="/", PaginationConfig={"PageSize": page_size})
    keys, prefixes, _ = _collect(pages)
    assert (keys, prefixes) == (["b", "z"], ["a/", "c/", "d e/", "d+e/"])


def test_prefix_and_nested_delimiter(filled: Any) -> None:
    under_a = filled.list_objects_v2(Bucket="listing", Prefix="a/", Delimiter="/")
    assert [item["Key"] for item in under_a["Contents"]] == ["a/1", "a/2"]
    assert [item["Prefix"] for item in under_a["CommonPrefixes"]] == ["a/sub/"]
    under_c = filled.list_objects_v2(Bucket="listing", Prefix="c/x/", Delimiter="/")
    assert [item["Key"] for item in under_c["Contents"]] == ["c/x/w"]
    assert [item["Prefix"] for item in under_c["CommonPrefixes"]] == ["c/x/y/"]
    spaced = filled.list_objects_v2(Bucket="listing", Prefix="d e/")
    assert [item["Key"] for item in spaced["Contents"]] == ["d e/f"]
    assert filled.list_objects_v2(Bucket="listing", Prefix="nothing")["KeyCount"] == 0


def test_pages_without_delimiter(filled: Any) -> None:
    paginator = filled.get_paginator("list_objects_v2")
    keys, prefixes, count = _collect(paginator.paginate(Bucket="listing", PaginationConfig={"PageSize": 4}))
    assert keys == sorted(KEYS, key=lambda key: key.encode())
    assert (prefixes, count) == ([], 3)
    first = filled.list_objects_v2(Bucket="listing", MaxKeys=4)
    assert (first["IsTruncated"], first["KeyCount"], first["MaxKeys"]) == (True, 4, 4)
    assert "NextContinuationToken" in first


def test_start_after_and_fetch_owner(filled: Any) -> None:
    after = filled.list_objects_v2(Bucket="listing", StartAfter="c/x/w", FetchOwner=True)
    assert [item["Key"] for item in after["Contents"]] == ["c/x/y/z", "d e/f", "d+e/g", "z"]
    assert after["Contents"][0]["Owner"]["DisplayName"] == "moorage"
    assert "Owner" not in filled.list_objects_v2(Bucket="listing")["Contents"][0]


def test_entries_carry_size_etag_and_storage_class(filled: Any) -> None:
    item = filled.list_objects_v2(Bucket="listing", Prefix="b")["Contents"][0]
    head = filled.head_object(Bucket="listing", Key="b")
    assert (item["Size"], item["ETag"], item["StorageClass"]) == (1, head["ETag"], "STANDARD")
    assert abs((item["LastModified"] - head["LastModified"]).total_seconds()) < 1  # header: whole seconds


def test_bad_continuation_token_is_refused(filled: Any) -> None:
    with pytest.raises(ClientError) as error:
        filled.list_objects_v2(Bucket="listing", ContinuationToken="!!not-a-token!!")
    assert error.value.response["Error"]["Code"] == "InvalidArgument"


def test_list_buckets_pages(s3: Any) -> None:
    for name in ("bucket-a", "bucket-b", "bucket-c", "other"):
        s3.create_bucket(Bucket=name)
    first = s3.list_buckets(MaxBuckets=2, Prefix="bucket-")
    assert [bucket["Name"] for bucket in first["Buckets"]] == ["bucket-a", "bucket-b"]
    rest = s3.list_buckets(MaxBuckets=2, Prefix="bucket-", ContinuationToken=first["ContinuationToken"])
    assert [bucket["Name"] for bucket in rest["Buckets"]] == ["bucket-c"]
    assert "ContinuationToken" not in rest
