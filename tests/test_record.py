"""The workdir's record never drifts and nothing is lost, through the real CLIs: a resume that would change
the result is refused, a longer run is recorded as a new start, a finished run stays finished; eval shows
its result even when it cannot record it; export never replaces another file; the report skips an
unreadable run; a run that fails before its first step leaves no workdir; compilation is announced."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, cpu_env
from test_faults import TINY, checkpoint_steps, final, run


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('finished') / 'run')
  r = run(*TINY, f'--workdir={workdir}')
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stderr.index('compiling the train step ... ') < r.stderr.index('epoch ')  # with its time
  return workdir


def _copy(finished, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(finished, workdir)
  return workdir


def _snapshot(workdir):
  return {n: open(os.path.join(workdir, n)).read() for n in ('config.json', 'metrics.jsonl', 'starts.jsonl')}


def test_a_resume_that_changes_the_result_is_refused_and_nothing_is_rewritten(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  before = _snapshot(workdir)
  r = run(*TINY, f'--workdir={workdir}', '--config.num_epochs=5', '--config.seed=1')  # the README example
  assert r.returncode == 2
  assert r.stderr.strip() == (f'config error: {workdir} was started with seed=0, this command gives seed=1: a '
                              'resumed run must keep every field that changes its result; use another --workdir '
                              'or the recorded value')
  r = run(*TINY, f'--workdir={workdir}', '--config.num_epochs=5')  # finished: longer only when asked
  assert r.returncode == 2 and '--extend' in r.stderr and len(r.stderr.strip().splitlines()) == 1
  r = run(*TINY, f'--workdir={workdir}', '--config.learning_rates=(0.1,0.5)')  # not an extension
  assert r.returncode == 2 and 'learning_rates' in r.stderr
  r = run(*TINY, f'--workdir={workdir}', '--config.log_every_steps=7')  # finished, nothing to do
  assert r.returncode == 0 and r.stderr.startswith('already finished: step 92')
  assert _snapshot(workdir) == before


def test_training_longer_is_recorded_as_a_start_and_shown_by_the_report(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  r = run(*TINY, f'--workdir={workdir}', '--config.num_epochs=5', '--config.log_every_steps=7', '--extend')
  assert r.returncode == 0, r.stderr[-2000:]
  assert final(workdir)['step'] == 115
  starts = [json.loads(line) for line in open(os.path.join(workdir, 'starts.jsonl'))]
  assert [s['from_step'] for s in starts] == [0, 92]
  assert starts[1]['changes'] == {'log_every_steps': [5, 7], 'num_epochs': [4.0, 5.0]}
  assert json.load(open(os.path.join(workdir, 'config.json')))['num_epochs'] == 5.0
  out = str(tmp_path / 'report')
  r = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'report.py'), f'--workdir={workdir}',
                      f'--out={out}'], capture_output=True, text=True, env=cpu_env())
  assert r.returncode == 0, r.stderr
  page = open(os.path.join(out, 'report.md')).read()
  assert '`run` from step 92: log_every_steps 5 -> 7, num_epochs 4.0 -> 5.0' in page


def test_eval_shows_its_result_before_a_failed_write(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  os.remove(os.path.join(workdir, 'metrics.jsonl'))
  os.mkdir(os.path.join(workdir, 'metrics.jsonl'))  # cannot be appended to (also as root)
  r = run(*TINY, f'--workdir={workdir}', '--mode=eval')
  assert r.returncode == 2
  assert json.loads(r.stdout)['step'] == 92
  assert r.stderr.strip() == f'workdir error: the result was not recorded in {workdir}/metrics.jsonl: Is a directory'


def _export(*args):
  return subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'export.py'), *args], capture_output=True,
                        text=True, env=cpu_env(), timeout=300)


def test_export_replaces_only_its_own_file(finished, tmp_path):
  out = str(tmp_path / 'model.npz')
  assert _export(f'--workdir={finished}', f'--out={out}').returncode == 0
  assert _export(f'--workdir={finished}', f'--out={out}').returncode == 0  # the same run: replaced
  other = _copy(finished, tmp_path)
  r = _export(f'--workdir={other}', f'--out={out}')
  assert r.returncode == 2 and r.stderr.strip() == (f'error: {out} exists and is an export of '
                                                    f'{os.path.abspath(finished)}: add --overwrite to replace '
                                                    'it, or choose another --out')
  assert _export(f'--workdir={other}', f'--out={out}', '--overwrite').returncode == 0
  notes = str(tmp_path / 'notes.txt')
  open(notes, 'w').write('mine')
  r = _export(f'--workdir={other}', f'--out={notes}')
  assert r.returncode == 2 and 'is not an exported model' in r.stderr and open(notes).read() == 'mine'
  r = _export(f'--workdir={other}', f'--out={tmp_path}/no_such_dir/m.npz')  # the write fails
  assert r.returncode == 2 and not os.path.exists(tmp_path / 'no_such_dir')
  assert sorted(os.listdir(tmp_path)) == ['model.npz', 'notes.txt', 'run']  # no temporary file left


def test_report_skips_an_unreadable_run_and_carries_on(finished, tmp_path):
  root = tmp_path / 'runs'
  shutil.copytree(finished, root / 'good')
  (root / 'broken').mkdir(parents=True)
  (root / 'broken' / 'config.json').write_text('{"num_epochs": ')
  r = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'report.py'), f'--workdir={root}'],
                     capture_output=True, text=True, env=cpu_env(), timeout=300)
  assert r.returncode == 0, r.stderr
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f'skipped {root}/broken: {root}/broken/config.json is not JSON')
  assert '1 runs in 1 groups, 1 finished' in open(root / 'report' / 'report.md').read()


def test_a_run_that_fails_before_its_first_step_leaves_no_workdir(tmp_path):
  workdir = str(tmp_path / 'new_run')
  r = run(*TINY, f'--workdir={workdir}', '--config.dataset.name=npz',
          f'--config.dataset.train_path={tmp_path}/missing.npz')
  assert r.returncode == 2 and r.stderr.startswith('data error:')
  assert not os.path.exists(workdir)
  assert checkpoint_steps(workdir) == []
