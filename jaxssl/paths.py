"""Where a run's files live: a local folder or a URL (``gs://``, ``s3://``...), one path type.

Everything a run reads or writes (the workdir, checkpoints, metrics, TensorBoard events,
``config.json`` / ``run_info.json``, evaluation results, plots, exports, ``train.init_from``)
goes through :func:`resolve`, which returns an ``etils.epath.Path``, the path type orbax and
tensorflow-datasets use:

* a **local path** is made absolute against the working directory (``os.path.abspath``), as
  before: ``runs/x`` and ``/data/runs/x`` behave exactly as plain folders;
* a **URL** whose scheme epath serves (:data:`SCHEMES`: ``gs://``, ``s3://``, ``az://``,
  ``hf://``) is used as it is, never joined to the working directory; any other
  ``scheme://`` is refused (it would otherwise become a local folder named ``scheme:``).

epath reaches URLs through ``tf.io.gfile`` when TensorFlow is installed and through fsspec
(gcsfs, s3fs) otherwise; ``EPATH_USE_TF=false`` selects fsspec (the tests do, to point gcsfs
at a local storage emulator). Object stores have no directories, so :func:`makedirs` creates
nothing there (a ``gs://`` "folder" appears with its first object), and an object cannot be
appended to: :class:`AppendFile` rewrites the whole object (from a background thread, every
few seconds, and at each flush), as ``tf.io.gfile`` does for an appended GCS file. fsspec's listing cache is turned off for object stores (unless
configured otherwise): other hosts and tensorstore write into the same folders, and a cached
listing would hide their steps and commit markers from this process.

:func:`check_writable` writes, reads back and deletes a probe object from every process,
within :data:`CHECK_TIMEOUT_S`, so that an unreachable bucket, missing credentials or a
missing client library fail in one line before any device work instead of hanging in the
client's retries.
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
import uuid
from typing import IO, Union

from etils import epath

try:
    import fsspec.config

    for _protocol in ("gs", "gcs", "s3", "s3a"):
        fsspec.config.conf.setdefault(_protocol, {}).setdefault("use_listings_cache", False)
except ImportError:  # epath without fsspec: tf.io.gfile or local paths only
    pass

PathLike = Union[str, os.PathLike]

#: URL schemes etils.epath serves (``gs://``, ``s3://``, ``az://``, ``hf://``).
SCHEMES = ("gs", "s3", "az", "hf")

#: Seconds :func:`check_writable` waits for the remote filesystem
#: (``JAXSSL_STORAGE_CHECK_TIMEOUT_S`` overrides it).
CHECK_TIMEOUT_S = 30.0

# What each scheme needs beside epath, and what to check when it cannot be reached.
_CLIENTS = {
    "gs": ("pip install gcsfs google-cloud-storage (or pip install -e '.[gcs]'; "
           "tensorflow's tf.io.gfile also serves gs:// when installed)",
           "the network, the bucket name and the credentials (gcloud auth application-default "
           "login, GOOGLE_APPLICATION_CREDENTIALS, or the VM's service account with "
           "storage.objects.create/get/delete on the bucket)"),
    "s3": ("pip install s3fs",
           "the network, the bucket name and the AWS credentials (AWS_ACCESS_KEY_ID / "
           "AWS_SECRET_ACCESS_KEY or ~/.aws/credentials, AWS_ENDPOINT_URL for other S3 services)"),
    "az": ("pip install adlfs",
           "the network, the container name and the Azure credentials "
           "(AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCOUNT_KEY)"),
    "hf": ("pip install huggingface_hub",
           "the network, the repository name and the token (HF_TOKEN)"),
}


class StorageError(OSError):
    """A path cannot be used: unsupported scheme, unreachable or unwritable storage.

    The message is one line naming the path, its scheme and what to install or check.
    """


def scheme(path: PathLike) -> str | None:
    """``'gs'`` for ``gs://bucket/x`` (any ``name://`` prefix); ``None`` for a local path."""
    text = os.fspath(path)
    head, sep, _ = text.partition("://")
    if sep and head and head.replace("+", "").replace("-", "").replace(".", "").isalnum() \
            and "/" not in head:
        return head.lower()
    return None


def is_remote(path: PathLike) -> bool:
    """Whether ``path`` is a URL (``gs://``, ``s3://``...) rather than a local path."""
    if isinstance(path, epath.Path):
        return bool(getattr(path, "_uri_scheme", None))
    return scheme(path) is not None


def resolve(path: PathLike) -> epath.Path:
    """``path`` as an ``epath.Path``: local paths made absolute, URLs kept as they are.

    Raises :class:`StorageError` for a ``scheme://`` epath does not serve (e.g. ``http://``),
    which would otherwise be written to a local folder named after the scheme.
    """
    if isinstance(path, epath.Path) and is_remote(path):
        return path
    text = os.fspath(path)
    s = scheme(text)
    if s is None:
        return epath.Path(os.path.abspath(text))
    if s not in SCHEMES:
        raise StorageError(
            f"{text}: the scheme {s}:// is not supported; use a local path or one of "
            f"{', '.join(f'{x}://' for x in SCHEMES)} (etils.epath)")
    return epath.Path(text)


def makedirs(path: PathLike) -> None:
    """Create a local folder (and its parents); nothing for a URL (object stores have no
    folders, and ``gcsfs.makedirs`` would try to create a missing bucket)."""
    if not is_remote(path):
        os.makedirs(os.fspath(path), exist_ok=True)


def write_text(path: PathLike, text: str) -> None:
    """Write (replace) a small text file, local or remote."""
    path = resolve(path)
    makedirs(path.parent)
    path.write_text(text)


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write (replace) a file, local or remote."""
    path = resolve(path)
    makedirs(path.parent)
    path.write_bytes(data)


def move(src: PathLike, dst: PathLike) -> None:
    """Move a folder: ``shutil.move`` locally; copy every object then delete on a URL."""
    src, dst = resolve(src), resolve(dst)
    if not is_remote(src) and not is_remote(dst):
        makedirs(dst.parent)
        shutil.move(os.fspath(src), os.fspath(dst))
        return
    base = os.fspath(src)
    for f in _files(src):
        target = dst / os.fspath(f)[len(base):].lstrip("/")
        makedirs(target.parent)
        f.copy(target, overwrite=True)
    src.rmtree()


def _files(path: epath.Path):
    """Every file under ``path`` (recursively), as paths that keep the URL scheme."""
    for child in sorted(path.iterdir()):
        if child.is_dir():
            yield from _files(child)
        else:
            yield child


def remote_flush_s() -> float:
    """Seconds between uploads of an appended remote file (``JAXSSL_REMOTE_FLUSH_S``, default
    5: GCS allows about one update per second of the same object)."""
    return float(os.environ.get("JAXSSL_REMOTE_FLUSH_S", 5.0))


class AppendFile:
    """A file opened for appending, local or remote: ``write``, ``flush``, ``close``.

    Local: ``open(path, 'a')`` (line-buffered text, or bytes with ``binary``), as a plain file
    always was. Remote (object stores cannot append): the existing object is read once, what
    is written is kept in memory, and the whole object is replaced by a background thread
    every ``flush_every_s`` seconds (default :func:`remote_flush_s`) when something new was
    written, and at once by :meth:`flush` and :meth:`close`. Writing never waits for the
    network; a killed process loses at most the last ``flush_every_s`` seconds. A failed
    background upload prints one warning and is retried; :meth:`flush` raises it.
    """

    def __init__(self, path: PathLike, flush_every_s: float | None = None, binary: bool = False):
        self.path = resolve(path)
        self.remote = is_remote(self.path)
        self._binary = binary
        if not self.remote:
            makedirs(self.path.parent)
            self._file: IO = (open(os.fspath(self.path), "ab") if binary
                              else open(os.fspath(self.path), "a", buffering=1))
            return
        self._flush_every_s = remote_flush_s() if flush_every_s is None else flush_every_s
        self._buffer = io.BytesIO() if binary else io.StringIO()
        if self.path.exists():
            self._buffer.write(self.path.read_bytes() if binary else self.path.read_text())
        self._lock = threading.Lock()  # guards the buffer and the counters
        self._upload_lock = threading.Lock()  # one upload at a time, in order
        self._written = self._uploaded = 0
        self._warned = False
        self._closed = threading.Event()
        self._uploader = threading.Thread(target=self._upload_loop, daemon=True,
                                          name=f"jaxssl-upload-{self.path.name}")
        self._uploader.start()

    def write(self, data) -> None:
        if not self.remote:
            self._file.write(data)
            return
        with self._lock:
            self._buffer.write(data)
            self._written += 1

    def _upload(self) -> None:
        with self._upload_lock:
            with self._lock:
                version, content = self._written, self._buffer.getvalue()
            if version == self._uploaded:
                return
            if self._binary:
                self.path.write_bytes(content)
            else:
                self.path.write_text(content)
            self._uploaded = version

    def _upload_loop(self) -> None:
        while not self._closed.wait(self._flush_every_s):
            try:
                self._upload()
                self._warned = False
            except Exception as e:  # noqa: BLE001 - retried; flush() raises it
                if not self._warned:
                    print(f"warning: uploading {self.path} failed ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:200]}); retrying every "
                          f"{self._flush_every_s:g} s", flush=True)
                    self._warned = True

    def flush(self) -> None:
        if self.remote:
            self._upload()
        else:
            self._file.flush()

    def close(self) -> None:
        if not self.remote:
            self._file.close()
            return
        self._closed.set()
        self._uploader.join()
        self._upload()


def check_timeout_s() -> float:
    return float(os.environ.get("JAXSSL_STORAGE_CHECK_TIMEOUT_S", CHECK_TIMEOUT_S))


def check_writable(path: PathLike, what: str = "--workdir",
                   timeout_s: float | None = None) -> None:
    """Raise :class:`StorageError` (one line) unless this process can write ``path``.

    A URL gets a probe object (``.jaxssl-probe-<host>-<pid>-<random>``) written, read
    back and deleted, in a daemon thread given ``timeout_s`` (default
    :func:`check_timeout_s`): the storage client's own retries (minutes for gcsfs without a
    network) are cut short and the error says which path, scheme, package and credentials to
    check. A local path is left to the first write, as before (nothing is probed).
    """
    path = resolve(path)
    if not is_remote(path):
        return
    s = scheme(os.fspath(path))
    install, check = _CLIENTS[s]
    timeout_s = check_timeout_s() if timeout_s is None else timeout_s
    probe = path / f".jaxssl-probe-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    outcome: dict = {}

    def attempt():
        try:
            payload = f"jaxssl write probe {time.time()}"
            probe.write_text(payload)
            if probe.read_text() != payload:
                raise OSError("the probe object read back differs from what was written")
            probe.unlink()
            outcome["ok"] = True
        except BaseException as e:  # noqa: BLE001 - reported below with the fix
            outcome["error"] = e

    thread = threading.Thread(target=attempt, name="jaxssl-storage-check", daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(timeout_s)
    if outcome.get("ok"):
        return
    where = f"{what}={path} ({s}://)"
    if "error" not in outcome:
        raise StorageError(
            f"{where}: no answer within {timeout_s:.0f} s to writing {probe.name} (client: "
            f"{_client(path)}); check {check}; JAXSSL_STORAGE_CHECK_TIMEOUT_S sets the wait")
    err = outcome["error"]
    text = " ".join(str(err).split())[:300]
    if isinstance(err, ImportError):
        raise StorageError(f"{where}: the client library is missing ({type(err).__name__}: "
                           f"{text}); {install}") from None
    raise StorageError(
        f"{where}: cannot write a probe object after {time.monotonic() - start:.0f} s "
        f"({type(err).__name__}: {text}); check {check}; client: {_client(path)}") from None


def _client(path: epath.Path) -> str:
    try:
        backend = type(path._backend).__name__  # noqa: SLF001 - which client epath picked
    except Exception:  # noqa: BLE001
        return "etils.epath"
    return {"_TfBackend": "tf.io.gfile", "_FileSystemSpecBackend": "fsspec"}.get(
        backend, backend) + " via etils.epath"


__all__ = ["SCHEMES", "CHECK_TIMEOUT_S", "StorageError", "scheme", "is_remote", "resolve",
           "makedirs", "write_text", "write_bytes", "move", "AppendFile", "remote_flush_s",
           "check_writable", "check_timeout_s"]
