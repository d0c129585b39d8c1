"""The shell every launch/ script shares (sparsenet_jax/cli.py): --help, an override's message, its table,
its hooks. The scripts given nonsense are the fault table's (tests/test_faults_*.py)."""
import os
import re
import sys
import threading

import pytest

from conftest import ROOT
from fault_table import Case, DIGITS
from sparsenet_jax import cli
from sparsenet_jax import errors

SCRIPTS = ['main.py', 'summary.py', 'bench.py', 'sweep.py', 'report.py', 'predict.py', 'export.py',
           'prepare_data.py', 'bench_stream.py', 'convert_torchvision.py']


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_exits_0(script, faults, tmp_path):
  r = faults.check(Case('help', script, ['--help'], 0, process=True), tmp_path)  # absl's own exit is 1
  assert any(f in r['stdout'] for f in ('--workdir', '--model', '--dataset', '--root'))
  assert 'error' not in r['stderr']
  assert ('--compilation_cache:' in r['stdout']) == (script in ('main.py', 'bench.py'))  # one name, shared


@pytest.mark.parametrize('override,message', [
    ('--config.model.growht_rate=3',
     """unknown config field 'growht_rate' in --config.model.growht_rate=3; did you mean "growth_rate"?"""),
    ('--config.modl.growth_rate=1',
     """unknown config field 'modl' in --config.modl.growth_rate=1; did you mean "model"?"""),
    ('--config.model.growth_rate.k=1', "unknown config field 'k' in --config.model.growth_rate.k=1"),
    ('--config.num_epochs=abc', "flag --config.num_epochs=abc: could not convert string to float: 'abc'"),
])
def test_a_bad_override_names_the_field(faults, tmp_path, override, message):
  r = faults.check(Case('override', 'main.py', [DIGITS, '--workdir={tmp}/run', override], 2), tmp_path)
  assert r['stderr'].strip() == f'config error: {message}'  # the whole line


def _kinds(kind):
  return [kind] + [k for sub in kind.__subclasses__() for k in _kinds(sub)]


def test_every_failure_has_a_label_and_an_exit_code():
  rows = [kind for kind, _, _ in cli.FAILURES]
  assert [k.__name__ for k in _kinds(errors.Failure) if not any(issubclass(k, row) for row in rows)] == [
      'Failure']


def test_the_documented_exit_codes_are_the_table():
  """docs/failures.md's exit-code table names every label of cli.FAILURES under its code, and no other code
  but 0 (done)."""
  text = open(os.path.join(ROOT, 'docs', 'failures.md')).read()
  section = text.split('## Exit codes', 1)[1].split('\n## ', 1)[0]
  rows = dict(re.findall(r'^\| (\d+) \| (.*) \|$', section, re.MULTILINE))
  assert set(rows) == {'0'} | {str(code) for _, _, code in cli.FAILURES}
  for kind, label, code in cli.FAILURES:
    assert f'`{label}: ' in rows[str(code)], (kind.__name__, label, code)


def _raise(error):
  raise error


def test_the_closed_loop_filter_drops_only_closed_loop_reports(monkeypatch):
  """TensorStore's threads report the closed event loop of a failed Orbax read; nothing else is dropped."""
  reported = []
  monkeypatch.setattr(threading, 'excepthook', lambda args: reported.append(repr(args.exc_value)))
  monkeypatch.setattr(sys, 'excepthook', sys.__excepthook__)
  monkeypatch.setattr(sys, 'unraisablehook', sys.unraisablehook)
  cli.drop_closed_loop_reports()
  closed = 'Event loop is closed'
  for error in (RuntimeError(closed), RuntimeError('disk full'), ValueError(closed)):
    thread = threading.Thread(target=_raise, args=(error,))
    thread.start()
    thread.join()
  assert reported == ["RuntimeError('disk full')", "ValueError('Event loop is closed')"]
