"""SIGINT and SIGTERM, one mechanism for every script and the training loop. Pure Python.

A signal either stops the work at once or is remembered until a safe point:

- at once (`raising`, which the scripts' shell `cli.run` enters): the handler raises `interrupt(signum)`
  where Python is, KeyboardInterrupt for SIGINT and errors.Terminated for SIGTERM. Both unwind through
  code that catches errors, and the shell reports them in one line, exit 130 or 143.
- at a safe point (`deferred`): inside the section the handler only records the signal (`received`);
  the section's code may act on it (the training loop finishes its step, saves and raises
  PreemptedError), and whatever is still pending when the outermost section ends is raised there.

What must never be cut is a section of its own: under `raising` every import is one (an exception raised
while a C extension starts becomes an ImportError, or leaves JAX half made and the process dies with
SIGSEGV at exit), as is the training loop and a sweep stopping its runs. So is a garbage-collector
callback or a `__del__` (JAX registers a gc callback that runs many times a second while it traces): an
exception raised there is printed as 'Exception ignored' and lost, so a signal that finds Python there is
delivered again a moment later (`_unraisable`).

Handlers are the process's and only the main thread may set them; elsewhere both are no-ops, and imports
in other threads are not sections.
"""
from __future__ import annotations

import builtins
import gc
import os
import signal
import threading
from typing import Dict, Optional

from sparsenet_jax import errors

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_AGAIN_S = 0.05  # how soon a signal that found Python in a gc callback or __del__ is delivered again
_sections = 0  # deferred sections open
_pending: Optional[int] = None  # the first signal received inside them, not yet raised
_raised: Optional[int] = None  # the last signal raised since `raising` began


def interrupt(signum: int) -> KeyboardInterrupt:
  """The exception a signal stops the work with: its message names the signal."""
  name = signal.Signals(signum).name
  return (errors.Terminated if signum == signal.SIGTERM else KeyboardInterrupt)(f'{name} received')


def _unraisable(frame) -> bool:
  """Python runs `frame` (or what called it) for the garbage collector or a `__del__`, where an exception
  is printed and dropped instead of raised."""
  callbacks = {getattr(cb, '__code__', None) for cb in gc.callbacks}
  while frame is not None:
    if frame.f_code in callbacks or frame.f_code.co_name == '__del__':
      return True
    frame = frame.f_back
  return False


def _handle(signum, frame):
  global _pending, _raised
  if _sections:
    _pending = _pending or signum
  elif _unraisable(frame):
    threading.Timer(_AGAIN_S, os.kill, (os.getpid(), signum)).start()
  else:
    _raised = signum
    raise interrupt(signum)


def _install(signums) -> Dict[int, object]:
  previous = {}
  for signum in signums:
    try:
      previous[signum] = signal.signal(signum, _handle)
    except ValueError:  # not the main thread
      pass
  return previous


def _restore(previous: Dict[int, object]) -> None:
  for signum, handler in previous.items():
    signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: set outside Python


def _leave() -> None:
  """The end of a section: a pending signal is raised when it was the outermost."""
  global _sections, _pending
  _sections -= 1
  if _sections == 0 and _pending is not None:
    signum, _pending = _pending, None
    raise interrupt(signum)


def _sectioned(original):
  """`__import__` with each import of the main thread a section."""
  main = threading.main_thread()

  def __import__(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002  (import's own names)
    global _sections
    if threading.current_thread() is not main:
      return original(name, globals, locals, fromlist, level)
    _sections += 1
    try:
      return original(name, globals, locals, fromlist, level)
    finally:
      _leave()
  return __import__


class raising:  # pylint: disable=invalid-name  (used as a context manager, like contextlib's)
  """SIGINT and SIGTERM raise `interrupt` while inside, except in sections (every import is one); the
  previous handlers afterwards. `raised`: the signal last raised, so that the shell knows an error for
  what an interrupt became where it landed."""

  def __enter__(self):
    global _raised
    _raised = None
    self._previous = _install(SIGNALS)
    self._import = builtins.__import__
    builtins.__import__ = _sectioned(self._import)
    return self

  @property
  def raised(self) -> Optional[int]:
    return _raised

  def __exit__(self, *exc):
    builtins.__import__ = self._import
    _restore(self._previous)


class deferred:  # pylint: disable=invalid-name
  """A section that a signal does not cut: `received` names the signal that arrived in it (None before);
  on leaving the outermost section a pending signal is raised, unless an exception already leaves it.
  `signums`: the signals the section takes over (a multi-process run leaves SIGTERM to JAX)."""

  def __init__(self, signums=SIGNALS):
    self._signums = signums

  def __enter__(self):
    global _sections
    self._previous = _install(self._signums)
    _sections += 1
    return self

  @property
  def received(self) -> Optional[str]:
    return signal.Signals(_pending).name if _pending else None

  def __exit__(self, exc_type, exc, tb):
    global _pending
    _restore(self._previous)
    if exc_type is not None and _sections == 1:
      _pending = None  # the section stopped on its own (PreemptedError) or failed: that is what is reported
    _leave()
