"""What every `launch/` script shares: bad arguments are one line and exit 2, before any work.

absl prints its whole usage text for a stray argument and a traceback-like block for a bad flag; here a
usage error is `usage error: ... (see --help)`, a bad value `error: --flag ...`, both exit 2. Flag
validators (`positive`, `non_negative`) run while flags are parsed, so nothing is loaded or compiled
first. `quiet_logs` drops the log lines that only confuse (XLA looking for a TPU on a machine without
one, Orbax announcing that a checkpoint opened for reading is read only).
"""
from __future__ import annotations

import ast
import logging
import os
import re
import sys
from typing import Callable, List, Optional, Sequence

from absl import app
from absl import flags
from absl import logging as absl_logging

FLAGS = flags.FLAGS
# The default persistent XLA compilation cache of the scripts that compile (main, bench).
COMPILATION_CACHE = os.environ.get('JAX_COMPILATION_CACHE_DIR') or os.path.expanduser('~/.cache/sparsenet_jax/xla')


def fail(message: str, code: int = 2, label: str = 'error') -> None:
  print(f'{label}: {message}', file=sys.stderr, flush=True)
  sys.exit(code)


def usage_error(message: str) -> None:
  fail(f'{message} (see --help)', 2, 'usage error')


def one_line(text: str) -> str:
  """The informative line of a possibly multi-line error (config_flags wraps the cause in a traceback)."""
  lines = [l.strip() for l in str(text).strip().splitlines() if l.strip()]
  causes = [l for l in lines if 'Error:' in l and not l.startswith('File ')]
  return (causes[-1] if causes else lines[0]) if lines else str(text)


def _check(name: str, ok: Callable[[object], bool], bound: str) -> None:
  def checker(value):
    if value is not None and not ok(value):
      shown = ','.join(value) if isinstance(value, list) else value
      raise flags.ValidationError(f'--{name} must be {bound}, got {shown}')
    return True
  flags.register_validator(name, checker)


def positive(*names: str) -> None:
  """Integer flags (or list flags of integers) that must be >= 1 when given."""
  for name in names:
    listed = 'list' in FLAGS[name].flag_type()
    _check(name, lambda v: all(_int(x) > 0 for x in (v if isinstance(v, list) else [v])),
           'integers >= 1, comma-separated' if listed else '>= 1')


def non_negative(*names: str) -> None:
  for name in names:
    _check(name, lambda v: v >= 0, '>= 0')


def _int(x) -> int:
  try:
    return int(x)
  except (TypeError, ValueError):
    return 0  # not an integer: refused by the validator's message


def _config_error(argv: Sequence[str], e: Exception) -> str:
  if isinstance(e, (KeyError, AttributeError)) and e.args:
    text = e.args[0]  # ConfigDict: AttributeError(KeyError("'key'\nDid you mean "x" instead of "key"?"))
    while isinstance(text, BaseException) and text.args:
      text = text.args[0]
    text = str(text)
    while text[:1] in '\'"':  # ConfigDict re-raises a KeyError's repr inside an AttributeError
      try:
        text = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        break
    first, _, hint = text.partition('\n')
    key = first.strip('\'" ')
    culprit = next((a for a in argv if a.startswith('--config.') and key in a.split('=')[0]), None)
    hint = hint.replace(' instead of ', ' ').split(' "' + key)[0].rstrip('?') + '?' if hint else ''
    return (f'unknown config field {key!r}' + (f' in {culprit}' if culprit else '') +
            (f'; {hint[0].lower()}{hint[1:]}' if hint else ''))
  if isinstance(e, flags.Error):
    return one_line(str(e))
  return f'{type(e).__name__}: {one_line(str(e))}'


def parse(argv: List[str], positional: bool = False, config_flag: Optional[str] = None) -> List[str]:
  """absl's parsing, but every error is one line and exit 2. `positional`: the script takes arguments
  after its flags; `config_flag`: the name of a config_flags flag, loaded (and its overrides applied)
  here so that a missing file, an unknown field or a bad `:arg` fails now."""
  if config_flag:
    for a in argv:
      if a.startswith(f'--{config_flag}=') and not os.path.isfile(a.split('=', 1)[1].split(':')[0]):
        fail(f'config file {a.split("=", 1)[1].split(":")[0]} not found', 2, 'config error')
  try:
    rest = FLAGS(argv)
    if config_flag and FLAGS[config_flag].value is not None:
      FLAGS[config_flag].value.get('model')  # config_flags defers load errors to first access
  except flags.Error as e:
    text = re.sub(r'^flag --[\w.]+=.*?: (?=--)', '', one_line(str(e)))  # the validator's message says it all
    missing = re.search(r'Flag --(\w+) must have a value other than None', text)
    if missing:
      usage_error(f'--{missing.group(1)} is required')
    if isinstance(e, flags.UnrecognizedFlagError) and not (config_flag and e.args and f"'{config_flag}." in str(e)):
      usage_error(text)
    cause = e
    while cause is not None and not isinstance(cause, (KeyError, AttributeError)):
      cause = cause.__cause__ or cause.__context__
    if config_flag and cause is not None:
      fail(_config_error(argv, cause), 2, 'config error')
    fail(text, 2, 'config error' if config_flag and config_flag in str(e) else 'error')
  except Exception as e:  # what a config file raises, or an override of a field it does not have
    fail(_config_error(argv, e), 2, 'config error' if config_flag else 'error')
  if not positional and len(rest) > 1:
    usage_error(f'unexpected argument{"s" if len(rest) > 2 else ""}: {" ".join(rest[1:])}')
  return rest


class _Confusing(logging.Filter):
  PATTERNS = ("Unable to initialize backend 'tpu'", 'Given directory is read only',
              'read_only=True, setting')

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(p in message for p in self.PATTERNS)


def quiet_logs() -> None:
  f = _Confusing()
  for handler in [absl_logging.get_absl_handler(), *logging.getLogger().handlers]:
    handler.addFilter(f)
  for name in ('jax._src.xla_bridge', 'absl'):
    logging.getLogger(name).addFilter(f)


def run(main: Callable[[List[str]], None], positional: bool = False, config_flag: Optional[str] = None) -> None:
  """app.run(main) with `parse` as its flags parser and the confusing log lines dropped."""
  def wrapped(argv):
    quiet_logs()
    return main(argv)
  app.run(wrapped, flags_parser=lambda argv: parse(argv, positional, config_flag))
