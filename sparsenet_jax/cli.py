"""The shell of every `launch/` script: the scripts contain their work and raise; this module parses their
flags, reports what they raise and picks the exit code.

`run(main)` is `app.run(main)` with `parse` as its flags parser: a stray argument, an unknown flag or a
missing required one is `usage error: ... (see --help)`, a bad value `error: --flag ...`, a bad config
`config error: ...`, all exit 2 before anything is loaded or compiled. Every failure, from parsing or from
the work, is then one line on stderr, `label: message`, and an exit code, both from one table (`FAILURES`);
anything else is a bug and keeps its traceback. SIGINT and SIGTERM stop the work wherever it is
(`signals.raising`; sections that must not be cut defer them) and are reported the same way. Shared
flags (`define_compilation_cache`) and argument checks (`positive`, `non_negative`, `output_file`,
`require`) live here too. `quiet_logs` and `drop_closed_loop_reports` keep what only confuses off the
terminal.
"""
from __future__ import annotations

import difflib
import logging
import os
import sys
import threading
from typing import Any, Callable, List, Optional, Sequence, Tuple, Type

from absl import app
from absl import flags
from absl import logging as absl_logging

from sparsenet_jax import errors
from sparsenet_jax import signals

FLAGS = flags.FLAGS
flags.disclaim_key_flags()  # the flags defined below belong to the script that asks for them (its --help)
# The default persistent XLA compilation cache of the scripts that compile (main, bench).
COMPILATION_CACHE = (os.environ.get('JAX_COMPILATION_CACHE_DIR') or
                     os.path.expanduser('~/.cache/sparsenet_jax/xla'))

# What a user is told and the exit code a scheduler acts on, for each failure that is not a bug: the first
# row whose kind it is. 2: fix the command, its config or data; 3: the checkpoint (another workdir, or an
# older checkpoint); 4: the run diverged; 143, 130: stopped by a signal, the same command resumes; 1: I/O.
FAILURES: Tuple[Tuple[Type[BaseException], str, int], ...] = (
    (errors.UsageError, 'usage error', 2),
    (errors.ArgumentError, 'error', 2),
    (errors.ConfigError, 'config error', 2),  # and DriftError
    (errors.DataError, 'data error', 2),
    (errors.WorkdirError, 'workdir error', 2),
    (errors.ExportError, 'error', 2),
    (errors.CheckpointError, 'checkpoint error', 3),  # and IntegrityError
    (errors.NonFiniteLossError, 'stopped', 4),
    (errors.PreemptedError, 'interrupted', 143),
    (errors.Terminated, 'interrupted', 143),  # SIGTERM outside the loops that stop at a safe point
    (OSError, 'I/O error', 1),
    (KeyboardInterrupt, 'interrupted', 130),
)


def run(main: Callable[[List[str]], Optional[int]], positional: bool = False,
        config_flag: Optional[str] = None, input_errors: Tuple[Type[Exception], ...] = (),
        check_config: Optional[Callable[[Any, str], None]] = None) -> None:
  """`app.run(main)` in the shell; `main` may return an exit code. `positional`, `config_flag`,
  `check_config`: as `parse` takes them. `input_errors`: the built-in exceptions that this script's
  library raises for bad input (the tools' ValueError), reported as 'error', exit 2, ahead of FAILURES.
  An OSError is never one of them: in every script it is an 'I/O error', exit 1, worded by `os_error`
  (a path a script can check before working, such as --out's directory, it refuses as bad input)."""
  drop_closed_loop_reports()
  table = tuple((kind, 'error', 2) for kind in input_errors) + FAILURES

  def wrapped(argv):
    quiet_logs()
    return main(argv)
  shell = signals.raising()
  try:
    with shell:
      app.run(wrapped, flags_parser=lambda argv: parse(argv, positional, config_flag, check_config))
  except BaseException as e:  # pylint: disable=broad-except  (what is not in the table is raised again)
    failure = signals.interrupt(shell.raised) if shell.raised and isinstance(e, Exception) else e
    row = next(((label, code) for kind, label, code in table if isinstance(failure, kind)), None)
    if row is None:
      raise
    message = os_error(failure) if isinstance(failure, OSError) else first_line(failure)
    print(f'{row[0]}: {message}', file=sys.stderr, flush=True)
    sys.exit(row[1])


def first_line(e: BaseException) -> str:
  """What a user reads of an exception: its message's first line, or its name when it has none."""
  lines = str(e).strip().splitlines()
  return lines[0] if lines else type(e).__name__


def os_error(e: OSError) -> str:
  """An OSError as a sentence naming its path, without Python's `[Errno N]`: 'cannot use PATH: File
  exists'."""
  if not e.strerror:
    return first_line(e)
  paths = ' -> '.join(str(p) for p in (e.filename, e.filename2) if p is not None)
  return f'cannot use {paths}: {e.strerror}' if paths else e.strerror


def one_line(text: str) -> str:
  """The informative line of a traceback's text (config_flags wraps a config file's exception in one)."""
  lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
  causes = [line for line in lines if 'Error:' in line and not line.startswith('File ')]
  return (causes[-1] if causes else lines[0]) if lines else str(text)


# ----------------------------------------------------------------------------------------------------
# Flags and arguments.


def parse(argv: List[str], positional: bool = False, config_flag: Optional[str] = None,
          check_config: Optional[Callable[[Any, str], None]] = None) -> List[str]:
  """absl's parsing, each refusal raised as one of `errors`: an unknown flag, a missing required one or a
  stray argument a UsageError, a value that does not parse or that a validator refuses an ArgumentError,
  a config that does not load or an override it cannot take a ConfigError. `positional`: the script takes
  arguments after its flags. `config_flag`: the name of a config_flags flag, whose file is loaded and
  whose overrides are checked before absl parses anything; `check_config(config, path)`, when given,
  checks what the file returned before its overrides are. --help exits 0."""
  if config_flag:
    _check_config(argv, config_flag, check_config)
  try:
    rest = FLAGS(argv)
  except SystemExit:  # absl exits while parsing only after printing the help asked for (with status 1)
    raise SystemExit(0)
  except flags.Error as e:
    raise _failure(e, argv, config_flag)
  except Exception as e:  # config_flags setting an override: an index out of range, a tuple's item
    if not config_flag:
      raise
    raise errors.ConfigError(f'{type(e).__name__}: {first_line(e)}')
  if not positional and len(rest) > 1:
    raise errors.UsageError(f'unexpected argument{"s" if len(rest) > 2 else ""}: {" ".join(rest[1:])}')
  return rest


def _failure(e: flags.Error, argv: Sequence[str], config_flag: Optional[str]) -> errors.Failure:
  """absl's error as one of `errors`, told from absl's objects rather than from its text."""
  def config(name):
    return bool(config_flag) and name.startswith(f'{config_flag}.')
  if isinstance(e, flags.UnrecognizedFlagError):  # an override too, when --config=FILE is missing
    return (errors.ConfigError if config(e.flagname) else errors.UsageError)(str(e))
  if isinstance(e, flags.IllegalFlagValueError) and FLAGS.is_parsed():  # values parsed, a validator refused
    for name in FLAGS:
      for validator in FLAGS[name].validators:
        try:
          validator.verify(FLAGS)  # the refusal in the validator's own words, not in absl's summary
        except flags.ValidationError as refusal:
          if FLAGS[name].value is None:  # only mark_flags_as_required refuses None: cli's validators take it
            return errors.UsageError(f'--{name} is required')
          return errors.ArgumentError(str(refusal))
  if isinstance(e, flags.IllegalFlagValueError):  # a value that does not parse
    return (errors.ConfigError if config(_stopped_at(argv)) else errors.ArgumentError)(str(e))
  from_config_flags = type(e).__module__.startswith('ml_collections')  # an override before --config=FILE
  return (errors.ConfigError if from_config_flags else errors.ArgumentError)(str(e))


def _stopped_at(argv: Sequence[str]) -> str:
  """The flag whose value absl could not parse: it parses argv in order and marks each flag present once
  its value parsed, so the first one named that is not present."""
  for arg in argv[1:]:
    name = arg.lstrip('-').split('=')[0]
    if arg.startswith('-') and name in FLAGS and not FLAGS[name].present:
      return name
  return ''


def _check_config(argv: Sequence[str], name: str, check: Optional[Callable[[Any, str], None]] = None) -> None:
  """The file of --NAME=FILE[:ARG] exists, defines get_config and loads (by config_flags' own parser),
  `check` takes what it returned, and every --NAME.a.b override names one of its fields and gives a
  value (None is no value: a field left None takes its default); otherwise a ConfigError that says
  which, where config_flags would raise a KeyError or wrap the file's exception in a traceback's text."""
  flags_given = [(i, a.lstrip('-').split('=')[0]) for i, a in enumerate(argv) if a.startswith('-')]
  given = [i for i, flag in flags_given if flag == name]
  if not given:
    return  # absl refuses a missing required flag
  i = given[-1]
  spec = argv[i].split('=', 1)[1] if '=' in argv[i] else ''.join(argv[i + 1:i + 2])  # or --NAME FILE
  path = spec.split(':')[0]
  if not os.path.isfile(path):
    raise errors.ConfigError(f'config file {path} not found')
  try:
    config = FLAGS[name].parser.parse(spec)
    hasattr(config, 'keys')  # config_flags defers an IOError to the first access (its config's attributes)
  except Exception as e:  # whatever the config file raises
    if isinstance(e, AttributeError) and "has no attribute 'get_config'" in str(e):  # config_flags' call
      raise errors.ConfigError(f'config file {path} defines no get_config(), the function that returns '
                               'its config') from None
    raise errors.ConfigError(f'config file {path}: ' + one_line(f'{type(e).__name__}: {e}'))
  if check:
    check(config, path)
  overrides = [flag for _, flag in flags_given if flag.startswith(f'{name}.')]
  for flag in sorted({f for f in overrides if overrides.count(f) > 1}):
    if not _unknown_field(config, flag[len(name) + 1:]) and _field_type(config, flag[len(name) + 1:]) is tuple:
      raise errors.ConfigError(f'--{flag} given more than once: config_flags would join the tuples, not keep '
                               'the last; give it once')
  for j, flag in flags_given:
    unknown = flag.startswith(f'{name}.') and _unknown_field(config, flag[len(name) + 1:])
    if unknown:
      field, close = unknown
      hint = f'; did you mean "{close[0]}"?' if close else ''
      raise errors.ConfigError(f'unknown config field {field!r} in {argv[j]}{hint}')
    none = '=' in argv[j] and argv[j].split('=', 1)[1].lower() == 'none'
    if none and flag.startswith(f'{name}.') and _field_type(config, flag[len(name) + 1:]) is not str:
      raise errors.ConfigError(f'{argv[j]}: None is no value on the command line (a field left None takes its '
                               'default; for config.model, the preset\'s): give a value, and for DenseNet '
                               f'--{name}.model.connectivity=dense')


def _unknown_field(config: Any, path: str) -> Optional[Tuple[str, List[str]]]:
  """(the first field of dotted `path` that `config` lacks, the close names it has), or None."""
  node = config
  for part in path.split('.'):
    field = part.split('[')[0]  # config_flags also takes an index: blocks[0]
    names = list(node.keys()) if hasattr(node, 'keys') else []
    if field not in names:
      return field, difflib.get_close_matches(field, names, n=1)
    node = node[field]
  return None


def _field_type(config: Any, path: str) -> Optional[type]:
  """The type ml_collections parses a --NAME.a.b value as (str for a string field or placeholder)."""
  *parents, leaf = path.split('[')[0].split('.')
  node = config
  for part in parents:
    node = node[part]
  try:
    return node.get_type(leaf)
  except (AttributeError, KeyError):
    return None


def require(ok: Any, message: str) -> None:
  """A usage rule that flags alone cannot state (one of two flags, at least one argument)."""
  if not ok:
    raise errors.UsageError(message)


def _check(name: str, ok: Callable[[Any], bool], bound: str) -> None:
  def checker(value):
    if value is not None and not ok(value):
      shown = ','.join(value) if isinstance(value, list) else value
      raise flags.ValidationError(f'--{name} must be {bound}, got {shown}')
    return True
  flags.register_validator(name, checker)


def positive(*names: str) -> None:
  """Integer flags (or list flags of integers) that must be >= 1 when given."""
  _at_least(names, 1)


def non_negative(*names: str) -> None:
  """Integer flags (or list flags of integers) that must be >= 0 when given."""
  _at_least(names, 0)


def _at_least(names: Sequence[str], least: int) -> None:
  for name in names:
    listed = 'list' in FLAGS[name].flag_type()
    _check(name, lambda v: all(_int(x) is not None and _int(x) >= least for x in (v if isinstance(v, list) else [v])),
           f'integers >= {least}, comma-separated' if listed else f'>= {least}')


def output_file(*names: str) -> None:
  """Flags naming a file the script writes: when given, in a directory that exists, and not a directory
  itself (refused before any work, not as an I/O error after it)."""
  for name in names:
    _check(name, lambda v: bool(v) and not v.endswith(os.sep) and not os.path.isdir(v) and
           os.path.isdir(os.path.dirname(os.path.abspath(v))),
           'a file in an existing directory')


def _int(x) -> Optional[int]:
  try:
    return int(x)
  except (TypeError, ValueError):
    return None  # not an integer: refused by the validator's message


def define_compilation_cache(note: str = '') -> None:
  """--compilation_cache, one flag for the scripts that compile; `use_compilation_cache` applies it."""
  flags.DEFINE_string('compilation_cache', COMPILATION_CACHE, 'Persistent XLA compilation cache directory '
                      f'("" disables it); $JAX_COMPILATION_CACHE_DIR, when set, is the default.{note}')


def use_compilation_cache(use: bool = True) -> None:
  """JAX's persistent compilation cache in --compilation_cache, or none when it is "" or `use` is false.
  Before the first compile, which fixes for the process whether JAX reads and writes the cache."""
  import jax  # pylint: disable=import-outside-toplevel  (the scripts that never compile never load JAX)
  folder = FLAGS.compilation_cache if use else ''
  if folder and not (os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)):
    try:  # a folder JAX cannot use would print a warning at every compile (and the run go on without it)
      os.makedirs(folder, exist_ok=True)
    except OSError as e:
      raise errors.ArgumentError(f'--compilation_cache={folder} (or $JAX_COMPILATION_CACHE_DIR): {e.strerror}; '
                                 'give a writable directory, or "" for none') from None
    if not os.access(folder, os.W_OK | os.X_OK):
      raise errors.ArgumentError(f'--compilation_cache={folder} (or $JAX_COMPILATION_CACHE_DIR) is not writable; '
                                 'give a writable directory, or "" for none')
  jax.config.update('jax_compilation_cache_dir', folder or None)


# ----------------------------------------------------------------------------------------------------
# What only confuses.


class _Confusing(logging.Filter):
  PATTERNS = ("Unable to initialize backend 'tpu'", 'Given directory is read only',
              'read_only=True, setting')

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(p in message for p in self.PATTERNS)


def quiet_logs() -> None:
  """Drops the log lines that only confuse: XLA looking for a TPU on a machine without one, Orbax
  announcing that a checkpoint opened for reading is read only, asyncio's 'Task exception was never
  retrieved' for the reads still in flight when one failed (see `drop_closed_loop_reports`)."""
  logging.getLogger('asyncio').setLevel(logging.CRITICAL)
  f = _Confusing()
  for handler in [absl_logging.get_absl_handler(), *logging.getLogger().handlers]:
    handler.addFilter(f)
  for name in ('jax._src.xla_bridge', 'absl'):
    logging.getLogger(name).addFilter(f)


def _closed_loop(exc_type, exc) -> bool:
  return exc_type is RuntimeError and str(exc) == 'Event loop is closed'  # asyncio's, a bare RuntimeError


def drop_closed_loop_reports() -> None:
  """A failed Orbax read is reported in one line. The reads still in flight then find Orbax's event loop
  closed, and TensorStore's threads report each as an exception ('RuntimeError: Event loop is closed')
  for a while after: those reports are dropped, every other exception is reported as before. The hooks
  are the process's, so the shell sets them, once, at start (once per process, however often it runs)."""
  if getattr(sys.excepthook, 'drops_closed_loop', False):
    return
  excepthook, unraisablehook, threadhook = sys.excepthook, sys.unraisablehook, threading.excepthook

  def on_exception(exc_type, exc, tb):
    if not _closed_loop(exc_type, exc):
      excepthook(exc_type, exc, tb)

  def on_unraisable(args):
    if not _closed_loop(args.exc_type, args.exc_value):
      unraisablehook(args)

  def on_thread(args):
    if not _closed_loop(args.exc_type, args.exc_value):
      threadhook(args)

  on_exception.drops_closed_loop = True
  sys.excepthook, sys.unraisablehook, threading.excepthook = on_exception, on_unraisable, on_thread
