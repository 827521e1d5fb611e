"""Model data URL → a verified, extracted model directory: what SageMaker does before a container starts.

SageMaker downloads ModelDataUrl, extracts it into /opt/ml/model, and the toolkit pip-installs
code/requirements.txt (spec §1.1–1.5). `prepare_model` does the same into the content-addressed
cache: fetch (sources), check the pins before anything is extracted, extract (extract), install
requirements (requirements). A second prepare of an unchanged source downloads and extracts
nothing: an S3 object is known by its ETag, a local file by path+size+mtime, an http(s) URL by
its strong ETag (asked with If-None-Match).

Every tree extracted into the cache is sealed read-only with a manifest, and verified against it
before it is reused (`trees`, `manifest`): a changed tree is discarded and extracted again, never
served. The PreparedModel holds a lease on its trees until `release()`, so that the cache budget
never evicts a tree in use.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from moorage.artifacts.cache import ArtifactCache
from moorage.artifacts.extract import TreeWriter, extract_archive, tree_digest
from moorage.artifacts.manifest import seal
from moorage.artifacts.policy import check_bucket
from moorage.artifacts.requirements import install_requirements
from moorage.artifacts.sources import (
    ByteSink,
    Deadline,
    EmbeddedS3Objects,
    FileDownload,
    Location,
    ProgressCallback,
    S3Objects,
    display_url,
    fetch_http,
    format_bytes,
    parse_location,
    read_local_file,
    resolve_local_path,
)
from moorage.artifacts.trees import TreeLease, Trees
from moorage.errors import ArtifactError, ArtifactSourceError, IntegrityError
from moorage.settings import ArtifactPolicy

__all__ = ["DEFAULT_TIMEOUT_S", "ModelSource", "PreparedModel", "ProgressCallback", "prepare_model"]

DEFAULT_TIMEOUT_S = 600.0
# The SDK sets SAGEMAKER_SUBMIT_DIRECTORY to this for the current layout; no toolkit reads it (spec §1.3).
_INFORMATIONAL_SUBMIT_DIRECTORY = "/opt/ml/model/code"

_logger = logging.getLogger("moorage.artifacts")


def _log_to_logger(line: str) -> None:
    _logger.info("%s", line)


@dataclass(frozen=True)
class ModelSource:
    """Where a model's data comes from, and what it must hash to."""

    url: str  # s3://bucket/key, https://..., http://..., file:///abs/path, or a local path
    # "prefix": ModelDataSource S3Prefix with CompressionType None: every object under the prefix
    # becomes a file, no extraction.
    kind: Literal["archive", "prefix"] = "archive"
    etag: str | None = None  # S3 ETag pin (ModelDataSource.S3DataSource.ETag); quotes are ignored
    sha256: str | None = None  # hex pin: of the archive, or of the tree manifest for a prefix/directory


@dataclass(frozen=True)
class PreparedModel:
    model_dir: Path  # what /opt/ml/model would be
    code_dir: Path | None  # model_dir/code if present, else the legacy submit directory, else None
    deps_dir: Path | None  # where code/requirements.txt was installed; None when there is none
    digest: str  # "sha256:<hex>" (archive), "tree:<hex>" (S3 prefix) or "dir:<path>" (in place)
    # Shared locks on the cached trees used (none for a directory used in place).
    leases: tuple[TreeLease, ...] = field(default=(), compare=False, repr=False)

    def release(self) -> None:
        """The model stopped serving: its trees may now be freed or evicted (blocking file work)."""
        for lease in self.leases:
            lease.release()


def prepare_model(
    source: ModelSource,
    *,
    submit_directory: str | None,
    cache_dir: Path,
    policy: ArtifactPolicy,
    s3_endpoint_url: str | None = None,
    s3_local_root: Path | None = None,
    log: Callable[[str], None] = _log_to_logger,
    progress: ProgressCallback | None = None,
    timeout_s: float | None = None,
    holder: str | None = None,
) -> PreparedModel:
    """Fetch, verify and extract `source` (and a legacy submit directory), then install requirements.

    `holder` (a model name) keeps the trees until `trees.release_holder` is called for it (DeleteModel).
    Call `release()` on the result when the model stops serving.

    `s3_local_root`: the directory of moorage's embedded S3 store; when given, s3:// URLs are read from it
    directly instead of over HTTP at `s3_endpoint_url`. `timeout_s` bounds each fetch, retries included,
    and the pip run. Raises ArtifactSourceError,
    IntegrityError, UnsafeArchiveError, RequirementsError or ArtifactError (local disk trouble).
    """
    limit_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
    cache = ArtifactCache(cache_dir)
    trees = _Trees(
        cache,
        policy,
        s3_endpoint_url=s3_endpoint_url,
        log=log,
        progress=progress,
        timeout_s=limit_s,
        s3_local_root=s3_local_root,
    )
    model_dir, digest, lease = trees.prepare(source, Deadline(limit_s))
    leases = [lease] if lease is not None else []
    try:
        code_dir = model_dir / "code" if (model_dir / "code").is_dir() else None
        legacy = (submit_directory or "").strip()
        if legacy and legacy.rstrip("/") != _INFORMATIONAL_SUBMIT_DIRECTORY:
            if code_dir is not None:
                log(
                    f"SAGEMAKER_SUBMIT_DIRECTORY={display_url(legacy)} is not used: "
                    "the model has a code/ directory"
                )
            else:
                # The pre-1.2 layout: handler code lives in a separate sourcedir.tar.gz (spec §1.4).
                code_dir, _, code_lease = trees.prepare(ModelSource(legacy), Deadline(limit_s))
                leases.extend([code_lease] if code_lease is not None else [])
                log(f"using the handler code from SAGEMAKER_SUBMIT_DIRECTORY={display_url(legacy)}")
        deps_dir = None
        if code_dir is not None and (code_dir / "requirements.txt").is_file():
            deps_dir = install_requirements(
                code_dir / "requirements.txt", cache=cache, log=log, timeout_s=limit_s
            )
        if holder is not None:
            for held in leases:
                trees.records.hold(held.digest, holder)
    except BaseException:
        for held in leases:
            held.release()
        raise
    return PreparedModel(
        model_dir=model_dir, code_dir=code_dir, deps_dir=deps_dir, digest=digest, leases=tuple(leases)
    )


class _Trees:
    """Turns one ModelSource into a directory in the cache (or a local directory used in place)."""

    def __init__(
        self,
        cache: ArtifactCache,
        policy: ArtifactPolicy,
        *,
        s3_endpoint_url: str | None,
        log: Callable[[str], None],
        progress: ProgressCallback | None,
        timeout_s: float,
        s3_local_root: Path | None = None,
    ) -> None:
        self._cache = cache
        self.records = Trees(cache, policy, log)
        self._timeout_s = timeout_s
        self._policy = policy
        self._s3_endpoint_url = s3_endpoint_url
        self._s3_local_root = s3_local_root
        self._s3_client: S3Objects | EmbeddedS3Objects | None = None
        self._log = log
        self._progress = progress

    def prepare(self, source: ModelSource, deadline: Deadline) -> tuple[Path, str, TreeLease | None]:
        """The tree's path, its digest, and a lease on it (None for a directory used in place)."""
        location = parse_location(source.url)
        if source.kind == "prefix" and location.scheme != "s3":
            raise ArtifactSourceError(
                f"uncompressed (S3Prefix) model data needs an s3:// URL, not {source.url!r}"
            )
        if source.etag and (location.scheme != "s3" or source.kind == "prefix"):
            raise ArtifactSourceError(
                f"an ETag pin applies to one s3:// object only, not to {source.url!r}; "
                "pin other model data with its sha256"
            )
        try:
            if location.scheme == "s3":
                check_bucket(location, self._policy)
                if source.kind == "prefix":
                    return self._s3_prefix(location, source, deadline)
                return self._s3_object(location, source, deadline)
            if location.scheme == "http":
                return self._http(location, source, deadline)
            path = resolve_local_path(location, self._policy)
            if path.is_dir():
                return self._directory(path, source)
            return self._local_file(path, source, deadline)
        except OSError as exc:
            raise ArtifactError(
                f"could not prepare {display_url(source.url)} in {self._cache.root}: {exc.strerror or exc}"
            ) from exc

    # --- one function per kind of source ---------------------------------------------------------

    def _directory(self, path: Path, source: ModelSource) -> tuple[Path, str, TreeLease | None]:
        if source.sha256:
            self._check_sha256(source, tree_digest(path), str(path))
        self._log(f"using the model directory {path} in place")
        return path, f"dir:{path}", None

    def _local_file(self, path: Path, source: ModelSource, deadline: Deadline) -> tuple[Path, str, TreeLease]:
        stat = path.stat()
        identity = f"file\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}"

        def fill(sink: ByteSink) -> None:
            read_local_file(path, sink, limit=self._policy.max_download_bytes, deadline=deadline)
            after = path.stat()
            if (after.st_size, after.st_mtime_ns) != (stat.st_size, stat.st_mtime_ns):
                raise ArtifactSourceError(f"{path} changed while it was being read; prepare it again")

        return self._archive(identity, str(path), source, fill)

    def _s3_object(
        self, location: Location, source: ModelSource, deadline: Deadline
    ) -> tuple[Path, str, TreeLease]:
        url = f"s3://{location.bucket}/{location.key}"
        if not location.key or location.key.endswith("/"):
            raise ArtifactSourceError(f"{url} does not name an object: use s3://bucket/path/model.tar.gz")
        store = self._s3()
        head = store.head(location.bucket, location.key, deadline=deadline)
        pinned = (source.etag or "").strip().strip('"')
        if pinned and pinned != head.etag.strip('"'):
            raise IntegrityError(
                f"checksum mismatch for {url}: its ETag is {head.etag}, but the model pins ETag "
                f"{pinned}; nothing was downloaded or extracted"
            )
        identity = f"s3\0{store.endpoint}\0{location.bucket}\0{location.key}\0{head.etag}"

        def fill(sink: ByteSink) -> None:
            store.download(
                location.bucket, head, sink, limit=self._policy.max_download_bytes, deadline=deadline
            )

        return self._archive(identity, url, source, fill)

    def _http(
        self, location: Location, source: ModelSource, deadline: Deadline
    ) -> tuple[Path, str, TreeLease]:
        shown = display_url(location.url)
        identity = f"http\0{location.url}"
        with self._cache.lock(identity):
            known_etag, known_digest = self._http_note(identity)
            # The conditional request is only worth making for a tree that is still intact.
            known = self._reuse(source, known_digest, shown) if known_digest is not None else None
            with self._cache.workspace() as work:
                self._log(f"fetching {shown}")
                try:
                    with FileDownload(
                        work / "archive",
                        limit=self._policy.max_download_bytes,
                        url=shown,
                        progress=self._progress,
                    ) as download:
                        started = time.monotonic()
                        outcome = fetch_http(
                            location.url,
                            download,
                            policy=self._policy,
                            deadline=deadline,
                            known_etag=known_etag if known is not None else None,
                            log=self._log,
                        )
                except BaseException:
                    if known is not None:
                        known.release()
                    raise
                if outcome.not_modified and known is not None:
                    self._log(
                        f"{shown} is unchanged (ETag {known_etag}): nothing to download, using {known_digest}"
                    )
                    return self._cache.model_path(known.digest), known.digest, known
                if known is not None:
                    known.release()
                self._log(_downloaded(shown, download.size, started))
                digest, lease = self._verify_and_extract(download, work, shown, source)
                if outcome.etag:
                    self._cache.write_note(identity, f"{outcome.etag}\n{digest}")
        return self._cache.model_path(digest), digest, lease

    def _s3_prefix(
        self, location: Location, source: ModelSource, deadline: Deadline
    ) -> tuple[Path, str, TreeLease]:
        prefix = location.key if not location.key or location.key.endswith("/") else f"{location.key}/"
        url = f"s3://{location.bucket}/{prefix}"
        store = self._s3()
        objects = store.list_prefix(
            location.bucket, prefix, deadline=deadline, max_objects=self._policy.max_members
        )
        if not objects:
            raise ArtifactSourceError(f"{url} holds no objects")
        listing = hashlib.sha256(
            "".join(f"{o.key}\0{o.etag}\0{o.size}\n" for o in objects).encode()
        ).hexdigest()
        identity = f"s3prefix\0{store.endpoint}\0{location.bucket}\0{prefix}\0{listing}"
        with self._cache.lock(identity):
            known = self._reuse(source, self._cache.read_note(identity), url)
            if known is not None:
                self._log(f"{url} is unchanged since it was prepared as {known.digest}: nothing to download")
                return self._cache.model_path(known.digest), known.digest, known
            total = sum(o.size for o in objects)
            if total > self._policy.max_download_bytes:
                raise ArtifactSourceError(
                    f"{url} holds {format_bytes(total)}, more than the "
                    f"{format_bytes(self._policy.max_download_bytes)} download limit "
                    "(MOORAGE_MAX_ARTIFACT_BYTES)"
                )
            with self._cache.workspace() as work:
                self._log(f"downloading {len(objects)} objects ({format_bytes(total)}) under {url}")
                started = time.monotonic()
                writer = TreeWriter(
                    work / "tree",
                    source=url,
                    policy=self._policy,
                    progress=self._progress,
                    phase="download",
                    expected_bytes=total,
                )
                for obj in objects:
                    relative = obj.key[len(prefix) :]
                    writer.admit(relative)
                    if relative.endswith("/") or not relative:  # a "folder" marker object
                        writer.directory(relative)
                        continue
                    writer.expect(obj.size, relative)
                    with writer.file(relative) as sink:
                        store.download(
                            location.bucket,
                            obj,
                            sink,
                            limit=self._policy.max_download_bytes,
                            deadline=deadline,
                        )
                self._log(_downloaded(url, writer.bytes_written, started))
                digest = f"tree:{writer.tree_digest()}"
                self._check_sha256(source, digest.partition(":")[2], url)
                lease = self._install(digest, writer.root, writer.file_hashes(), url)
            self._cache.write_note(identity, digest)
        return self._cache.model_path(digest), digest, lease

    # --- shared steps ----------------------------------------------------------------------------

    def _archive(
        self, identity: str, label: str, source: ModelSource, fill: Callable[[ByteSink], None]
    ) -> tuple[Path, str, TreeLease]:
        """Download (`fill`) and extract an archive, unless `identity` was prepared before and its
        tree is intact."""
        with self._cache.lock(identity):
            known = self._reuse(source, self._cache.read_note(identity), label)
            if known is not None:
                self._log(
                    f"{label} is unchanged since it was prepared as {known.digest}: nothing to download"
                )
                return self._cache.model_path(known.digest), known.digest, known
            with self._cache.workspace() as work:
                self._log(f"downloading {label}")
                started = time.monotonic()
                with FileDownload(
                    work / "archive",
                    limit=self._policy.max_download_bytes,
                    url=label,
                    progress=self._progress,
                ) as download:
                    fill(download)
                self._log(_downloaded(label, download.size, started))
                digest, lease = self._verify_and_extract(download, work, label, source)
            self._cache.write_note(identity, digest)
        return self._cache.model_path(digest), digest, lease

    def _reuse(self, source: ModelSource, digest: str | None, label: str) -> TreeLease | None:
        """A lease on the tree a note names, if it is still there and unchanged (pins checked first)."""
        digest = (digest or "").strip()
        if not digest or not self._cache.model_path(digest).is_dir():
            return None
        self._check_sha256(source, digest.partition(":")[2], label)
        return self.records.reuse(digest, label)

    def _verify_and_extract(
        self, download: FileDownload, work: Path, label: str, source: ModelSource
    ) -> tuple[str, TreeLease]:
        """Check the sha256 pin BEFORE extracting, then extract once per content digest."""
        digest = f"sha256:{download.hexdigest()}"
        self._check_sha256(source, download.hexdigest(), label)
        with self._cache.lock(f"model:{digest}"):
            lease = self.records.reuse_locked(digest, label)
            if lease is not None:
                self._log(f"{label} has the same content as an earlier model ({digest}): nothing to extract")
                return digest, lease
            stats = extract_archive(
                download.path, work / "tree", source=label, policy=self._policy, progress=self._progress
            )
            lease = self._publish_locked(digest, work / "tree", stats.file_hashes)
        self._log(f"extracted {label}: {stats.files} files, {format_bytes(stats.bytes_written)} ({digest})")
        self.records.collect()
        return digest, lease

    def _install(self, digest: str, tree: Path, hashes: dict[str, str], label: str) -> TreeLease:
        """Publish a finished tree unless an intact one is there already; lease it; keep the budget."""
        with self._cache.lock(f"model:{digest}"):
            lease = self.records.reuse_locked(digest, label)  # prepared by someone else meanwhile
            if lease is None:
                lease = self._publish_locked(digest, tree, hashes)
        self.records.collect()
        return lease

    def _publish_locked(self, digest: str, tree: Path, hashes: dict[str, str]) -> TreeLease:
        """Seal `tree` read-only, move it into place with its manifest and lease it (lock held)."""
        self.records.publish(digest, tree, seal(tree, hashes))
        return self.records.lease(digest)

    def _http_note(self, identity: str) -> tuple[str | None, str | None]:
        note = self._cache.read_note(identity)
        if not note or "\n" not in note:
            return None, None
        etag, _, digest = note.partition("\n")
        return etag, digest.strip()

    def _check_sha256(self, source: ModelSource, actual: str, label: str) -> None:
        if source.sha256 is None:
            return
        pinned = source.sha256.strip().lower().removeprefix("sha256:")
        if pinned != actual:
            raise IntegrityError(
                f"checksum mismatch for {label}: its sha256 is {actual}, but the model pins {pinned}; "
                "nothing was extracted"
            )

    def _s3(self) -> S3Objects | EmbeddedS3Objects:
        if self._s3_client is None:
            if self._s3_local_root is not None:
                self._s3_client = EmbeddedS3Objects(self._s3_local_root)
            else:
                self._s3_client = S3Objects(self._s3_endpoint_url, log=self._log, timeout_s=self._timeout_s)
        return self._s3_client


def _downloaded(label: str, size: int, started: float) -> str:
    elapsed = time.monotonic() - started
    rate = f", {format_bytes(int(size / elapsed))}/s" if elapsed > 0.5 else ""
    return f"downloaded {label}: {format_bytes(size)} in {elapsed:.1f} s{rate}"
