"""Fetching canonical files once per data directory: checksums, a progress bar, atomic writes, a lock.

Nothing here knows a dataset: `cifar_svhn` names the files and decodes them. Every failure is a
`DataError` of one line, raised after the partial file is removed, so a retry starts clean.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, Iterator, Optional

from sparsenet_jax.data.base import DataError

DATA_DIR_ENV = 'SPARSENET_DATA_DIR'
DEFAULT_DATA_DIR = os.path.join('~', '.cache', 'sparsenet_jax', 'datasets')
DOWNLOADS = 'downloads'  # archives live in DATA_DIR/downloads until decoded
PART_SUFFIX = '.part'
TIMEOUT_S = 60  # per socket operation, not for the whole file
_CHUNK = 1 << 20


def data_dir(configured: Optional[str]) -> str:
  """`config.dataset.data_dir`, else $SPARSENET_DATA_DIR, else ~/.cache/sparsenet_jax/datasets."""
  return os.path.abspath(os.path.expanduser(configured or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR))


@dataclasses.dataclass(frozen=True)
class Remote:
  """One canonical file: where it comes from and what it must be, byte for byte."""
  filename: str
  url: str
  size: int  # bytes
  sha256: str

  def url_from(self, mirror: Optional[str]) -> str:
    """The canonical URL, or the same file name under `mirror`."""
    if not mirror:
      return self.url
    check_mirror(mirror)
    return f'{mirror.rstrip("/")}/{self.filename}'


def check_mirror(mirror: Optional[str]) -> None:
  """`config.dataset.mirror` (or prepare_data's --mirror) is None or a base URL a download can use."""
  if mirror is not None and urllib.parse.urlparse(mirror).scheme not in ('http', 'https', 'file'):
    raise DataError(f'dataset.mirror must be an http://, https:// or file:// base URL, got {mirror!r}')


def say(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def megabytes(size: int) -> str:
  return f'{size / 1e6:.1f} MB'


def reason(error: BaseException) -> str:
  """An exception as a short phrase on one line."""
  if isinstance(error, urllib.error.HTTPError):
    return f'HTTP {error.code} {error.reason}'
  if isinstance(error, urllib.error.URLError) and not isinstance(error.reason, str):
    error = error.reason
  text = (error.strerror if isinstance(error, OSError) and error.strerror else str(error)) or type(error).__name__
  return ' '.join(text.split())


@contextlib.contextmanager
def locked(directory: str, name: str) -> Iterator[None]:
  """Holds DIRECTORY/NAME.lock (fcntl, exclusive): one process prepares NAME, the others wait here."""
  path = os.path.join(directory, f'{name}.lock')
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise DataError(f'cannot create {path}: {reason(e)}; set dataset.data_dir to a writable directory') from e
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      say(f'waiting for another process preparing {name} in {directory} (lock {path})')
      fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)  # releases the lock; the file stays, so every process locks the same inode


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[IO[bytes]]:
  """A temporary file beside `path`, renamed to `path` only when the block completes; removed otherwise."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f'.{os.path.basename(path)}.',
                             suffix=PART_SUFFIX)
  try:
    with os.fdopen(fd, 'wb') as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def remove_partial(directory: str, filename: str) -> None:
  """Temporary files a killed process left for `filename` (call with the lock held)."""
  prefix = f'.{filename}.'
  for entry in os.listdir(directory) if os.path.isdir(directory) else ():
    if entry.startswith(prefix) and entry.endswith(PART_SUFFIX):
      os.remove(os.path.join(directory, entry))


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    while chunk := f.read(_CHUNK):
      digest.update(chunk)
  return digest.hexdigest()


def verify(path: str, remote: Remote) -> None:
  """A file someone placed by hand must be the canonical one."""
  size = os.path.getsize(path)
  if size != remote.size or sha256_of(path) != remote.sha256:
    raise DataError(f'{path} is not the canonical {remote.filename} ({size} bytes; expected {remote.size} '
                    f'bytes, sha256 {remote.sha256}); delete or replace it')


def fetch(remote: Remote, url: str, path: str) -> None:
  """Downloads `url` to `path`, refusing anything but `remote`'s exact bytes; `path` appears only if so."""
  say(f'downloading {url} ({megabytes(remote.size)}) to {os.path.dirname(path)}')
  request = urllib.request.Request(url, headers={'User-Agent': 'sparsenet_jax'})
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, atomic_file(path) as out:
      announced = response.headers.get('Content-Length')
      if announced is not None and announced.isdigit() and int(announced) != remote.size:
        raise DataError(f'{url} is not the canonical {remote.filename}: it has {announced} bytes, the canonical '
                        f'file {remote.size} (sha256 {remote.sha256}); refused, nothing was kept')
      digest, received = hashlib.sha256(), 0
      progress = _Progress(remote.filename, remote.size)
      while received <= remote.size and (chunk := response.read(_CHUNK)):  # more than the file: refused
        out.write(chunk)
        digest.update(chunk)
        received += len(chunk)
        progress.update(received)
      progress.close(received)
      if received < remote.size:
        raise DataError(f'{url} ended after {received} of {remote.size} bytes (the connection dropped, or '
                        'the server has another file); nothing was kept; run again to retry')
      if received > remote.size or digest.hexdigest() != remote.sha256:
        got = f'more than {remote.size} bytes' if received > remote.size else f'sha256 {digest.hexdigest()}'
        raise DataError(f'{url} is not the canonical {remote.filename} (expected sha256 {remote.sha256}, '
                        f'got {got}); refused, nothing was kept')
  except (OSError, http.client.HTTPException, ValueError) as e:
    if isinstance(e, DataError):
      raise
    raise DataError(f'downloading {url} to {os.path.dirname(path)} failed ({reason(e)}); nothing was kept; '
                    'run again to retry') from e


class _Progress:
  """`name  12.0/170.1 MB  5.2 MB/s  ETA 0:00:30` on stderr: redrawn in place on a terminal, a line per 10 s
  otherwise (logs)."""

  def __init__(self, name: str, total: int, stream=None):
    self.name, self.total = name, total
    self.stream = stream or sys.stderr
    self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
    self.start = self.last = time.monotonic()

  def line(self, done: int) -> str:
    elapsed = max(time.monotonic() - self.start, 1e-6)
    rate = done / elapsed
    eta = (self.total - done) / rate if rate > 0 else 0
    clock = time.strftime('%H:%M:%S', time.gmtime(max(eta, 0)))
    return (f'  {self.name}  {done / 1e6:.1f}/{self.total / 1e6:.1f} MB  {rate / 1e6:.1f} MB/s  '
            f'ETA {clock}')

  def update(self, done: int) -> None:
    now = time.monotonic()
    if now - self.last < (0.25 if self.tty else 10.0):
      return
    self.last = now
    self.stream.write(('\r' + self.line(done).ljust(79)) if self.tty else self.line(done) + '\n')
    self.stream.flush()

  def close(self, done: int) -> None:
    self.stream.write(('\r' + self.line(done).ljust(79) if self.tty else self.line(done)) + '\n')
    self.stream.flush()
