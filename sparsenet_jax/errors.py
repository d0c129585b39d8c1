"""The failures a user is told about, each a one-line message; pure Python, so every layer may raise them.

The library raises them where it finds the problem; the scripts' shell (`cli`) maps each kind to a label
and an exit code. The classes that were ValueErrors or RuntimeErrors stay so: callers catch them that
way (a data source's `except ValueError` around its reads, the tools' bad-input rule in `cli.run`).
"""


class Failure(Exception):
  """Expected, not a bug: the message is one line a user can act on."""


class UsageError(Failure):
  """The command line is wrong: a stray argument, a missing flag, flags that do not go together."""

  def __str__(self) -> str:
    return f'{super().__str__()} (see --help)'


class ArgumentError(Failure):
  """A flag's value the script cannot use."""


class ConfigError(Failure, ValueError):
  """A config field outside its allowed range; the message names the field."""


class DriftError(ConfigError):
  """A resume whose config would change what the recorded run computes."""


class DataError(Failure, ValueError):
  """Bad or missing data."""


class WorkdirError(Failure, RuntimeError):
  """The workdir cannot be created or written; found before any work is done."""


class RecordError(WorkdirError, ValueError):
  """A file of a run's record (config.json, run.json, metrics.jsonl, starts.jsonl) that cannot be used; the
  message names it. A ValueError too, so readers that skip an unreadable run (the report) skip it."""


class CheckpointError(Failure, RuntimeError):
  """A checkpoint that cannot be used for this run."""


class IntegrityError(CheckpointError):
  """A checkpoint that cannot be read or whose arrays differ from their digests: an older one may do."""


class NonFiniteLossError(Failure, RuntimeError):
  """The loss became NaN or infinite; the last good checkpoint is kept."""


class PreemptedError(Failure, RuntimeError):
  """SIGTERM/SIGINT arrived: the work stopped (a run saves a checkpoint first); the same command resumes."""


class Terminated(KeyboardInterrupt):
  """SIGTERM arrived where the work stops at once (`signals`): like Ctrl-C's KeyboardInterrupt it unwinds
  through code that catches errors, so nothing half-done is taken for a result; the same command resumes."""


class ExportError(Failure, ValueError):
  """An exported file or an image that cannot be used."""
