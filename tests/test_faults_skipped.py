"""What a reader skips with a warning and carries on past: a cut or damaged line of metrics.jsonl or
starts.jsonl (the report, sweep status, a resume), a run the report cannot read (the others are reported), a
damaged tfds copy (passed over); and, trained for real, a resume after a cut line, `--restart` after the
checkpoints are gone and a loss that diverges before the first save. The refusals are the fault table of
tests/test_faults_files.py."""
import json
import os
import re
import shutil
import sys
import types

import pytest

from fault_table import Case, TINY
from file_damage import both, directory, edit_json, no_checkpoints, setting, unfinished, write
from test_faults_files import MAIN, SWEEP, SWEEP_RUN

# ----------------------------------------------------------------------------------------------------
# Damage that is skipped with a warning: the reader carries on.

LINE_DAMAGE = [  # (file, the line appended (bytes), the warning says)
    ('metrics.jsonl', b'{"step": 30, "epo', 'line 3: cut short .no end of line.'),
    ('metrics.jsonl', b'\xff\n', 'line 3: byte 0xff at column 1 is not UTF-8 text'),
    ('metrics.jsonl', b'{"step": "x"}\n', "line 3: step must be an integer >= 0, got 'x'"),
    ('metrics.jsonl', b'[1, 2]\n', 'line 3: a JSON list, not an object'),
    ('metrics.jsonl', b'{"step": 30}\n', 'line 3: it lacks epoch'),
    ('metrics.jsonl', b'{"step": 30, "epoch": 1, "eval_error": "low", "eval_accuracy": 1}\n',
     "line 3: eval_error must be a number, got 'low'"),
    ('metrics.jsonl', b'{"step": 30, "epoch": 1, "final": "yes", "eval_error": 0, "eval_accuracy": 1}\n',
     "line 3: final must be true or false"),
    ('starts.jsonl', b'{"from_step": -1}\n', 'line 2: from_step must be an integer >= 0, got -1'),
    ('starts.jsonl', b'{"from_step": 0, "changes": [1]}\n', r'line 2: changes must map each field to \[before, af'),
    ('starts.jsonl', b'not json\n', 'line 2: not JSON'),
]


def damaged_copies(damages):
  """{tmp}/root/good, a copy of the run, and {tmp}/root/badN, a copy damaged by `damages[N](folder)`."""
  def prepare(place):
    shutil.copytree(place.run, os.path.join(place.tmp, 'root', 'good'))
    for i, damage in enumerate(damages):
      shutil.copytree(place.run, os.path.join(place.tmp, 'root', f'bad{i}'))
      damage(os.path.join(place.tmp, 'root', f'bad{i}'))
  return prepare


def appended(file, line):
  def damage(folder):
    with open(os.path.join(folder, file), 'ab') as f:
      f.write(line)
  return damage


def report_lines(faults, tmp_path, damages):
  """The stderr lines of a report over the run and its damaged copies (one call: a report costs seconds)."""
  result = faults.check(Case('report', 'report.py', ['--workdir={tmp}/root'], 0, prepare=damaged_copies(damages),
                             needs=('run',)), tmp_path)
  page = open(tmp_path / 'root' / 'report' / 'report.md').read()
  return [x for x in result['stderr'].splitlines() if x.strip()], page


def test_report_skips_each_damaged_line_with_a_warning_and_uses_the_rest(faults, tmp_path):
  """One warning per damaged file, naming it, the line and why; every run is reported as finished."""
  lines, page = report_lines(faults, tmp_path, [appended(file, line) for file, line, _ in LINE_DAMAGE])
  assert len(lines) == len(LINE_DAMAGE), lines
  for i, (file, _, says) in enumerate(LINE_DAMAGE):
    assert [x for x in lines if re.fullmatch(rf'warning: .*/root/bad{i}/{file}: skipped 1 damaged line \({says}.*\); '
                                             'the other rows are used', x)], (says, lines)
  assert f'{len(LINE_DAMAGE) + 1} runs in 1 groups, {len(LINE_DAMAGE) + 1} finished' in page


def test_sweep_status_skips_a_damaged_line_with_a_warning(faults, tmp_path):
  def prepare(place):
    shutil.copytree(place.run, os.path.join(place.tmp, 'sweep', SWEEP_RUN))
    with open(os.path.join(place.tmp, 'sweep', SWEEP_RUN, 'metrics.jsonl'), 'ab') as f:
      f.write(b'\x00\xff\n')
  result = faults.check(Case('sweep status', 'sweep.py', SWEEP, 0, prepare=prepare, needs=('run',)), tmp_path)
  assert re.fullmatch(rf'warning: .*/{SWEEP_RUN}/metrics.jsonl: skipped 1 damaged line \(line 3: byte 0xff at '
                      r'column 2 is not UTF-8 text\); the other rows are used\n', result['stderr'])
  assert result['stdout'].count('# done') == 1 and '(1 done, 0 partial, 0 new)' in result['stdout']


REPORT_SKIPS = [  # what makes a run unreadable, the line says
    (write('{tmp}/config.json', b'{}'), 'config.json: model.name must be a preset name, the file lacks it'),
    (write('{tmp}/config.json', b'\xff'), 'config.json is not UTF-8 text'),
    (edit_json('{tmp}/run.json', setting('std', [0])), 'run.json is damaged: std must be positive'),
    (directory('{tmp}/metrics.jsonl'), 'metrics.jsonl: Is a directory'),
    (directory('{tmp}/starts.jsonl'), 'starts.jsonl: Is a directory'),
]


def test_report_skips_each_run_it_cannot_read_naming_the_file_and_reports_the_others(faults, tmp_path):
  """The bug this replaces: a config.json of {} stopped the whole report with a traceback."""
  def on(folder):  # the damage functions name their file under {tmp}: here, the damaged copy
    return types.SimpleNamespace(tmp=folder, run=folder, export='')
  lines, page = report_lines(faults, tmp_path, [lambda f, d=damage: d(on(f)) for damage, _ in REPORT_SKIPS])
  assert len(lines) == len(REPORT_SKIPS), lines
  for i, (_, says) in enumerate(REPORT_SKIPS):
    assert [x for x in lines if re.match(rf'skipped .*/root/bad{i}: .*/bad{i}/{says}', x)], (says, lines)
  assert '1 runs in 1 groups, 1 finished' in page


def test_appending_after_a_cut_line_starts_a_fresh_line(tmp_path):
  """jsonl.append ends a cut last line first; the reader then loses only the fragment, warning once."""
  from sparsenet_jax.training import jsonl  # pylint: disable=import-outside-toplevel
  path = str(tmp_path / 'metrics.jsonl')
  open(path, 'w').write('{"step": 1}\n{"step": 2, "ep')
  jsonl.append(path, {'step': 3})
  assert open(path).read() == '{"step": 1}\n{"step": 2, "ep\n{"step": 3}\n'
  warnings = []
  assert jsonl.read(path, warn=warnings.append) == [{'step': 1}, {'step': 3}]
  assert jsonl.read(path, warn=warnings.append) == [{'step': 1}, {'step': 3}]  # the same damage: one warning
  assert warnings == [f'warning: {path}: skipped 1 damaged line (line 2: not JSON); the other rows are used']
  jsonl.append(str(tmp_path / 'new.jsonl'), {'step': 0})
  assert open(tmp_path / 'new.jsonl').read() == '{"step": 0}\n'


# ----------------------------------------------------------------------------------------------------
# For real: a resume after a cut or damaged line, --restart, a loss that diverges before any checkpoint.


@pytest.mark.parametrize('damage', ['cut', '0xff'])
def test_a_resume_after_a_damaged_line_warns_and_writes_on_a_fresh_line(damage, faults, tmp_path):
  """The final row cut mid-line (a kill while writing it), or a line with a 0xff byte: the same command
  warns, evaluates again and writes the final row on a line of its own."""
  def prepare(place):
    path = os.path.join(place.run, 'metrics.jsonl')
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:-60] if damage == 'cut' else data.replace(b'"final": true}', b'"final": \xff}'))
  result = faults.check(Case('resume', 'main.py', MAIN, 0, prepare=prepare, needs=('run',)), tmp_path)
  assert re.search(r'warning: .*/metrics.jsonl: skipped 1 damaged line \(line 2: ', result['stderr'])
  assert 'done: step 23' in result['stderr']
  lines = open(tmp_path / 'run' / 'metrics.jsonl', 'rb').read().split(b'\n')
  assert len(lines) == 4 and lines[-1] == b''  # train row, the damaged line, the new final row, end of file
  assert json.loads(lines[2])['final'] is True and json.loads(lines[0])['step'] == 23


def test_restart_trains_again_a_run_whose_checkpoints_are_gone_and_keeps_its_record(faults, tmp_path):
  """Refused without --restart (the table), trained from step 0 with it; the old record moved aside."""
  result = faults.check(Case('restart', 'main.py', [*MAIN, '--restart'], 0, prepare=both(unfinished, no_checkpoints),
                             needs=('run',)), tmp_path)
  run = tmp_path / 'run'
  before = {f: open(faults.trained + '/' + f).read() for f in ('config.json', 'run.json', 'starts.jsonl')}
  assert {f: open(run / f'{f}.before_restart1').read() for f in before} == before
  assert 'moved aside to config.json.before_restart1, run.json.before_restart1' in result['stderr']
  assert [json.loads(x)['from_step'] for x in open(run / 'starts.jsonl')] == [0]
  assert json.loads(open(run / 'metrics.jsonl').readlines()[-1])['final'] is True
  assert os.listdir(run / 'checkpoints') == ['23']


def test_a_loss_that_diverges_before_the_first_checkpoint_says_there_is_none(faults, tmp_path):
  """The progress lines come first (the harness's one-line check does not apply); the last line says it."""
  case = Case('diverges', 'main.py', [*TINY, '--workdir={tmp}/w', '--config.learning_rates=(1e30,)',
                                      '--config.lr_boundaries_epochs=()'], 4)
  result = faults.run(case, faults.place(case, str(tmp_path)))
  assert result['code'] == 4 and 'Traceback' not in result['stderr'], result['stderr'][-3000:]
  last = result['stderr'].strip().splitlines()[-1]
  assert re.fullmatch(r'stopped: non-finite training loss at step \d+; no checkpoint was saved before it, so '
                      r'.*/w holds none to resume from', last), last


def test_a_damaged_tfds_copy_is_named_and_passed_over(monkeypatch, tmp_path, capsys):
  """A tfds copy whose records do not decode (array_record raises its own types) is named, and the
  loader goes on as without one (here: offline, so it says what to download)."""
  from sparsenet_jax.data import cifar_svhn  # pylint: disable=import-outside-toplevel
  from sparsenet_jax.errors import DataError  # pylint: disable=import-outside-toplevel

  class Damaged:
    dataset_info = types.SimpleNamespace(features={'label': types.SimpleNamespace(num_classes=10, names=[])})

    def __len__(self):
      return 3

    def __getitem__(self, i):
      raise RuntimeError('DATA_LOSS: corrupted record at 12')
  core = types.SimpleNamespace(DatasetNotFoundError=LookupError)
  monkeypatch.setitem(sys.modules, 'tensorflow_datasets', types.SimpleNamespace(
      core=core, data_source=lambda *a, **k: [Damaged(), Damaged()]))
  os.makedirs(tmp_path / 'cifar10')
  cfg = types.SimpleNamespace(data_dir=str(tmp_path), download=False, mirror=None)
  with pytest.raises(DataError, match='cifar10 is not prepared in .* and dataset.download=False'):
    cifar_svhn.load('cifar10', cfg, True)
  assert capsys.readouterr().err == (f'not using the tfds copy: the tfds copy in {tmp_path}/cifar10 is damaged '
                                     '(RuntimeError: DATA_LOSS: corrupted record at 12); delete it, or set '
                                     'dataset.data_dir to a directory without it\n')
