"""Checkpoint integrity through real files and the real CLI: a byte flipped in a checkpoint's array file
(size unchanged) is detected, the previous checkpoint is used with one warning line, training sets the
damaged one aside; a checkpoint that cannot be read at all is one line and exit 3, nothing deleted."""
import glob
import os
import shutil

import pytest

from test_faults import TINY, checkpoint_steps, final, run

WARNING = 'warning: checkpoint'


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('trained') / 'run')
  r = run(*TINY, f'--workdir={workdir}')
  assert r.returncode == 0, r.stderr[-2000:]
  return workdir


def _copy(trained, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained, workdir)
  return workdir


def _data_files(workdir, step):
  return [f for f in glob.glob(os.path.join(workdir, 'checkpoints', str(step), 'state', '**', 'd', '*'),
                               recursive=True) if os.path.isfile(f)]


def flip_a_byte(workdir, step):
  """One byte in the middle of each array data file of checkpoint `step`, sizes unchanged."""
  for f in _data_files(workdir, step):
    data = bytearray(open(f, 'rb').read())
    data[len(data) // 2] ^= 0xFF
    open(f, 'wb').write(bytes(data))


def truncate(workdir, step):
  for f in _data_files(workdir, step):
    data = open(f, 'rb').read()
    open(f, 'wb').write(data[:len(data) // 2])


@pytest.mark.slow
def test_flipped_byte_is_detected_and_the_previous_checkpoint_is_used(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  last, previous = checkpoint_steps(workdir)[-1], checkpoint_steps(workdir)[-2]
  flip_a_byte(workdir, last)

  r = run(*TINY, f'--workdir={workdir}', '--mode=eval')  # inference: restore.restore_run
  assert r.returncode == 0, r.stderr[-2000:]
  warnings = [line for line in r.stderr.splitlines() if line.startswith(WARNING)]
  assert len(warnings) == 1 and 'Traceback' not in r.stderr, r.stderr
  assert warnings[0].startswith(f'warning: checkpoint {last} in {workdir}/checkpoints failed verification')
  assert warnings[0].endswith(f'using checkpoint {previous}, the newest that verifies')
  assert f'"step": {previous}' in r.stdout
  assert checkpoint_steps(workdir)[-1] == last  # inference deletes and moves nothing

  metrics = os.path.join(workdir, 'metrics.jsonl')  # as if killed before its final evaluation: unfinished
  rows = [line for line in open(metrics) if '"final": true' not in line]
  open(metrics, 'w').writelines(rows)
  r = run(*TINY, f'--workdir={workdir}')  # training: checkpoints.restore, the same check
  assert r.returncode == 0, r.stderr[-2000:]
  assert sum(line.startswith(WARNING) for line in r.stderr.splitlines()) == 1
  assert f'resumed from step {previous}' in r.stderr
  assert os.listdir(os.path.join(workdir, 'checkpoints_failed')) == [str(last)]  # kept, set aside
  assert final(workdir)['eval_loss'] == pytest.approx(final(trained)['eval_loss'], abs=1e-6)
  r = run(*TINY, f'--workdir={workdir}', '--mode=eval')  # the checkpoint written again verifies
  assert r.returncode == 0 and WARNING not in r.stderr and f'"step": {last}' in r.stdout


def test_no_checkpoint_verifies_is_one_line_exit_3_and_nothing_deleted(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  steps = checkpoint_steps(workdir)
  for step in steps:
    truncate(workdir, step)
  metrics = os.path.join(workdir, 'metrics.jsonl')  # unfinished, so that training restores
  open(metrics, 'w').writelines([line for line in open(metrics) if '"final": true' not in line])
  listing = sorted(glob.glob(os.path.join(workdir, '**'), recursive=True))
  for mode in ('eval', 'train'):
    r = run(*TINY, f'--workdir={workdir}', f'--mode={mode}')
    assert r.returncode == 3, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f'checkpoint error: no checkpoint in {workdir}/checkpoints '
                                                   f'verifies ({steps[-1]}: unreadable: '), r.stderr[-3000:]
    assert lines[0].endswith('; nothing was deleted') and 'Traceback' not in r.stderr
    assert sorted(glob.glob(os.path.join(workdir, '**'), recursive=True)) == listing
