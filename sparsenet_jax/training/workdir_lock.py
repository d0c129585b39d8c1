"""One writer per workdir: a command that trains in a workdir, evaluates into it or exports from it holds
WORKDIR/lock.json while it works; a second one is refused with a line naming the holder. Pure Python (no
JAX), so a sweep checks its runs' workdirs without starting a backend.

The lock is two things at once. An flock on the file: the kernel drops it when its holder dies, however
it dies (kill -9 included), so on one host it never outlives its process. And the file's content, who
holds it (`Holder`: host, pid, the process's start time from /proc, what it does, since when), which the
holder's heartbeat thread touches every HEARTBEAT_S; a filesystem shared by hosts may not pass flocks
between them (NFS without lock support), and then the content decides. A lock nobody holds any more is
stale and taken over with one warning: on this host its process is gone, or its pid is another process's
now (another start time); from another host, its heartbeat is older than STALE_S.

A refused command changes nothing in the workdir: it opens the file, reads it and closes it. The file is
removed on release, so a workdir with no command in it holds none; readers of a run (record, checkpoints,
the report) never look at it.
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from typing import Optional

from sparsenet_jax.errors import WorkdirError

LOCK = 'lock.json'
HEARTBEAT_S = 30  # how often a holder touches its lock file
STALE_S = 300  # a lock of another host whose heartbeat is older than this is taken over
_READ_TRIES = 20  # a holder writes its record right after taking the flock: a refused reader waits for it


def check_writable(workdir: str) -> None:
  """Fails at start, not at the first save, when the workdir cannot hold a run (made when it is not there):
  before the lock, so a read-only workdir is said to be one."""
  probe = os.path.join(workdir, f'.write_test_{os.getpid()}')
  try:
    os.makedirs(workdir, exist_ok=True)
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f'cannot write to workdir {workdir}: {e.strerror or e}') from None


def process_start(pid: int) -> Optional[int]:
  """When process `pid` started (clock ticks after boot, /proc/PID/stat), or None when it is not running
  (or the system has no /proc): with the pid, it names one process, even after the pid is reused."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      stat = f.read()
  except OSError:
    return None
  return int(stat.rsplit(')', 1)[1].split()[19])  # field 22; the command name before ')' may hold spaces


@dataclasses.dataclass(frozen=True)
class Holder:
  """Who holds a workdir's lock: JSON in the lock file."""
  host: str
  pid: int
  process_start: Optional[int]
  purpose: str  # train, eval, export
  since: float  # time.time() when it took the lock

  @classmethod
  def me(cls, purpose: str) -> 'Holder':
    return cls(socket.gethostname(), os.getpid(), process_start(os.getpid()), purpose, time.time())

  def describe(self) -> str:
    since = time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(self.since))
    return f'process {self.pid} on host {self.host} ({self.purpose}, started {since})'

  def gone(self, heartbeat_age: float) -> Optional[str]:
    """Why this holder no longer holds the lock (its lock is stale), or None while it may."""
    if self.host != socket.gethostname():
      if heartbeat_age > STALE_S:
        return f'its heartbeat is {heartbeat_age:.0f} s old (the limit is {STALE_S} s)'
      return None
    start = process_start(self.pid)
    if start is None and not _running(self.pid):
      return f'process {self.pid} is gone'
    if start is not None and self.process_start is not None and start != self.process_start:
      return f'process {self.pid} is another process now'
    return None


def _running(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True


def _read(fd: int) -> Optional[Holder]:
  """The record in an open lock file; None when it is empty or not a record."""
  try:
    data = json.loads(os.pread(fd, 4096, 0).decode() or 'null')
    return Holder(str(data['host']), int(data['pid']), data.get('process_start'), str(data['purpose']),
                  float(data['since']))
  except (ValueError, TypeError, KeyError, UnicodeDecodeError, OSError):
    return None


def _busy(workdir: str, holder: Optional[Holder]) -> WorkdirError:
  who = holder.describe() if holder else 'a process that has not written its record yet'
  return WorkdirError(f'workdir {workdir} is busy: {who} holds {os.path.join(workdir, LOCK)}; wait for it '
                      'to finish or stop it (a lock whose process is gone is taken over)')


class Lock:
  """What `acquire` took: `release()` (or leaving the `with`) removes the file and drops the flock; without
  a file descriptor (nothing to lock) it does nothing."""

  def __init__(self, path: str, fd: int = -1):
    self.path, self._fd = path, fd
    self._stop = threading.Event()
    if fd >= 0:
      threading.Thread(target=self._beat, name='workdir-lock-heartbeat', daemon=True).start()

  def _beat(self):
    while not self._stop.wait(HEARTBEAT_S):
      try:
        os.utime(self._fd)
      except OSError:  # the flock still holds on this host; another host may take the lock over later
        pass

  def release(self) -> None:
    if self._fd < 0:
      return
    self._stop.set()
    try:
      if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:  # still ours (a run may delete its workdir)
        os.unlink(self.path)
    except OSError:
      pass
    os.close(self._fd)  # drops the flock: after the unlink, so a waiter never takes a removed file
    self._fd = -1

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()


def acquire(workdir: str, purpose: str) -> Lock:
  """Takes `workdir`'s lock for `purpose`, or raises WorkdirError naming its holder. Nothing is held when
  there is nothing to guard: no workdir (the caller's reader says so) or one this process may not write
  (nothing it does writes there; a live holder still refuses it)."""
  path = os.path.join(workdir, LOCK)
  if not os.path.isdir(workdir):
    return Lock(path)
  for _ in range(5):  # the file was released (removed) between our open and our flock: again
    created = True
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
      created = False
      try:
        fd = os.open(path, os.O_RDWR)
      except FileNotFoundError:
        continue
      except PermissionError:  # a lock file this process cannot write: refused only by a live holder
        if holder(workdir) is not None:
          raise _busy(workdir, holder(workdir)) from None
        return Lock(path)
      except OSError as e:  # a directory in its place
        raise WorkdirError(f'cannot lock workdir {workdir}: {path}: {e.strerror or e}') from None
    except OSError as e:
      if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return Lock(path)
      raise WorkdirError(f'cannot lock workdir {workdir}: {e.strerror or e}') from None
    try:
      lock = _take(workdir, path, fd, created, purpose)
    except BaseException:
      os.close(fd)
      raise
    if lock is not None:
      return lock
    os.close(fd)
  raise WorkdirError(f'cannot lock workdir {workdir}: {path} keeps being replaced')


def _take(workdir: str, path: str, fd: int, created: bool, purpose: str) -> Optional[Lock]:
  """The lock on open `fd`, or None when `path` is no longer that file; WorkdirError when it is busy."""
  if not _flock(fd, fcntl.LOCK_EX):
    raise _busy(workdir, _wait_for_record(fd))
  try:
    if os.stat(path).st_ino != os.fstat(fd).st_ino:
      return None
  except FileNotFoundError:
    return None
  if not created:
    holder = _read(fd)
    why = holder.gone(time.time() - os.fstat(fd).st_mtime) if holder else 'it names no holder'
    if why is None:
      raise _busy(workdir, holder)
    was = f' ({holder.describe()})' if holder else ''
    print(f'warning: took over the stale lock {path}{was}: {why}', file=sys.stderr, flush=True)
  record = json.dumps(dataclasses.asdict(Holder.me(purpose))).encode()
  os.ftruncate(fd, 0)
  os.pwrite(fd, record, 0)
  os.fsync(fd)
  return Lock(path, fd)


def _flock(fd: int, kind: int) -> bool:
  """False when another process holds it; True when taken, or when the filesystem has no flocks (then
  the record decides)."""
  try:
    fcntl.flock(fd, kind | fcntl.LOCK_NB)
  except BlockingIOError:
    return False
  except OSError:  # ENOLCK, EOPNOTSUPP: no locks on this filesystem
    pass
  return True


def _wait_for_record(fd: int) -> Optional[Holder]:
  for _ in range(_READ_TRIES):
    holder = _read(fd)
    if holder is not None:
      return holder
    time.sleep(0.05)
  return None


def holder(workdir: str) -> Optional[Holder]:
  """Who holds `workdir` now, by the lock file's record alone and without taking anything (a sweep deciding
  what to start, while a run may be taking the lock); None when nobody does: no lock file, no record yet,
  or a stale one."""
  try:
    fd = os.open(os.path.join(workdir, LOCK), os.O_RDONLY)
  except OSError:
    return None
  try:
    found = _read(fd)
    if found is None or found.gone(time.time() - os.fstat(fd).st_mtime):
      return None
    return found
  finally:
    os.close(fd)
