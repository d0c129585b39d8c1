"""Fault injection: preemption, kill -9 (also mid-save), corrupt or foreign checkpoints, bad config and
data, non-finite loss, unwritable workdirs. Real subprocesses wherever a process boundary matters."""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, cpu_env
from configs import default
from sparsenet_jax.training import config_validation

MAIN = os.path.join(ROOT, 'launch', 'main.py')
DIGITS = '--config=' + os.path.join(ROOT, 'configs', 'digits.py')
TINY = [DIGITS, '--config.model.growth_rate=4', '--config.model.blocks=(2,3)', '--config.model.path=2',
        '--config.num_epochs=4', '--config.log_every_steps=5', '--config.eval_every_epochs=2',
        '--config.checkpoint_every_epochs=1', '--config.eval_batch_size=99']


def _env():
  return cpu_env()


def run(*args, timeout=400):
  return subprocess.run([sys.executable, MAIN, *args], capture_output=True, text=True, env=_env(),
                        timeout=timeout)


def start(*args):
  return subprocess.Popen([sys.executable, MAIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=_env())


def last_line(r):
  return r.stderr.strip().splitlines()[-1]


def final(workdir):
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  return [r for r in rows if r.get('final')][-1]


def checkpoint_steps(workdir):
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The uninterrupted run every interrupted one must reproduce."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  r = run(*TINY, f'--workdir={workdir}')
  assert r.returncode == 0, r.stderr[-2000:]
  return final(workdir)


def wait_for(predicate, proc, timeout=300):
  t = time.time()
  while not predicate():
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    assert time.time() - t < timeout
    time.sleep(0.002)


@pytest.mark.slow
@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_preemption_saves_and_the_same_command_resumes(tmp_path, reference, sig):
  workdir = str(tmp_path)
  p = start(*TINY, f'--workdir={workdir}')
  wait_for(lambda: checkpoint_steps(workdir), p)
  p.send_signal(sig)
  _, err = p.communicate(timeout=120)
  if p.returncode == 0:
    pytest.skip('the run finished before the signal arrived')
  assert p.returncode == 143
  assert re.search(rf'interrupted: {sig.name} received: saved checkpoint at step \d+ .*run the same command to '
                   r'resume', err.strip().splitlines()[-1])
  stopped_at = checkpoint_steps(workdir)[-1]
  assert stopped_at < 92
  r = run(*TINY, f'--workdir={workdir}')
  assert r.returncode == 0, r.stderr[-2000:]
  assert f'resumed from step {stopped_at}' in r.stderr
  got = final(workdir)
  assert got['step'] == reference['step']
  assert got['eval_loss'] == pytest.approx(reference['eval_loss'], abs=1e-6)


@pytest.mark.slow
def test_kill_9_during_a_save_resumes_from_the_last_complete_checkpoint(tmp_path, reference):
  workdir = str(tmp_path)
  ckpt = os.path.join(workdir, 'checkpoints')
  p = start(*TINY, f'--workdir={workdir}')

  def saving():  # Orbax writes into '<step>.orbax-checkpoint-tmp-*' and renames it when complete
    return os.path.isdir(ckpt) and any('tmp' in n for n in os.listdir(ckpt)) and checkpoint_steps(workdir)
  wait_for(saving, p)
  p.kill()
  p.wait()
  complete = checkpoint_steps(workdir)
  r = run(*TINY, f'--workdir={workdir}')
  assert r.returncode == 0, r.stderr[-2000:]
  assert f'resumed from step {complete[-1]}' in r.stderr
  assert final(workdir)['eval_loss'] == pytest.approx(reference['eval_loss'], abs=1e-6)


@pytest.mark.slow
def test_half_written_checkpoint_is_never_restored(tmp_path, reference):
  workdir = str(tmp_path)
  r = run(*TINY, f'--workdir={workdir}', '--config.num_train_steps=23')
  assert r.returncode == 0, r.stderr[-2000:]
  ckpt = os.path.join(workdir, 'checkpoints')
  # A later step that died half-way: copied, renamed as Orbax names its in-progress writes, and torn.
  half = os.path.join(ckpt, '46.orbax-checkpoint-tmp-1234567')
  shutil.copytree(os.path.join(ckpt, '23'), half)
  for f in glob.glob(os.path.join(half, 'state', '**', '*'), recursive=True)[:3]:
    if os.path.isfile(f):
      open(f, 'w').close()
  r = run(*TINY, f'--workdir={workdir}', '--extend')
  assert r.returncode == 0, r.stderr[-2000:]
  assert 'resumed from step 23' in r.stderr
  assert final(workdir)['eval_loss'] == pytest.approx(reference['eval_loss'], abs=1e-6)


def test_checkpoint_of_another_model_or_class_count_is_refused_and_kept(tmp_path):
  workdir = str(tmp_path)
  assert run(*TINY, f'--workdir={workdir}', '--config.num_train_steps=3').returncode == 0
  before = sorted(os.listdir(workdir)), open(os.path.join(workdir, 'metrics.jsonl')).read()
  r = run(*TINY, f'--workdir={workdir}', '--config.model.growth_rate=6', '--config.num_train_steps=3')
  assert r.returncode == 2  # the record refuses it before the checkpoint is opened
  assert last_line(r).startswith(f'config error: {workdir} was started with model.growth_rate=4, this command '
                                 'gives model.growth_rate=6')
  for name in ('config.json', 'metrics.jsonl'):  # without a record, the checkpoint refuses it
    os.rename(os.path.join(workdir, name), os.path.join(workdir, name + '.away'))
  r = run(*TINY, f'--workdir={workdir}', '--config.model.growth_rate=6')
  assert r.returncode == 3
  assert last_line(r) == (f'checkpoint error: checkpoint 3 in {workdir}/checkpoints was written for '
                          'growth_rate=4, but the config gives growth_rate=6; use another --workdir or the old config')
  r = run(*TINY, f'--workdir={workdir}', '--config.model.num_classes=12')
  assert r.returncode == 3
  assert 'written for num_classes=10, but the config gives num_classes=12;' in last_line(r)
  for name in ('config.json', 'metrics.jsonl'):
    os.rename(os.path.join(workdir, name + '.away'), os.path.join(workdir, name))
  assert (sorted(os.listdir(workdir)), open(os.path.join(workdir, 'metrics.jsonl')).read()) == before
  assert checkpoint_steps(workdir) == [3]


def test_unreadable_checkpoint_is_one_line_and_kept(tmp_path):
  workdir = str(tmp_path)
  assert run(*TINY, f'--workdir={workdir}', '--config.num_train_steps=3').returncode == 0
  meta = glob.glob(os.path.join(workdir, 'checkpoints', '3', 'meta', '*'))
  for f in meta:
    open(f, 'w').write('{not json')
  r = run(*TINY, f'--workdir={workdir}', '--extend')
  assert r.returncode == 3
  assert last_line(r).startswith(f'checkpoint error: no checkpoint in {workdir}/checkpoints verifies (3: meta '
                                 'unreadable: ')
  assert checkpoint_steps(workdir) == [3] and open(meta[0]).read() == '{not json'


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path)
  r = run(*TINY, f'--workdir={workdir}', '--config.learning_rates=(0.1,1e30)',
          '--config.lr_boundaries_epochs=(1.0,)')
  assert r.returncode == 4
  m = re.fullmatch(r'stopped: non-finite training loss at step (\d+); the last good checkpoint \(step 23\) '
                   rf'in {re.escape(workdir)} is kept', last_line(r))
  assert m and 23 < int(m.group(1)) <= 46
  assert checkpoint_steps(workdir) == [23]


def test_unwritable_workdir_fails_at_start(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  r = run(*TINY, f'--workdir={blocker}/run')
  assert r.returncode == 2
  assert last_line(r).startswith(f'workdir error: cannot write to workdir {blocker}/run')
  assert blocker.read_text() == 'not a directory'


@pytest.mark.parametrize('override,message', [
    ('--config.model.name=resnet', "config error: config.model.name='resnet' is not a preset"),
    ('--config.dataset.name=imagenet', "config error: config.dataset.name='imagenet'; allowed"),
    ('--config.batch_size=-4', 'config error: config.batch_size must be a positive integer, got -4'),
    ('--config.batch_size=3000', 'config error: config.batch_size=3000 is larger than the training set'),
    ('--config.lr_boundaries_epochs=(20.0,10.0)', 'config error: config.lr_boundaries_epochs=(20.0, 10.0) '
     'must be positive and strictly increasing'),
    ('--config.model.near=9', 'config error: config.model: near must be in [0, 4], got 9'),
    ('--config.model.path=-1', 'config error: config.model: path must be >= 0, got -1'),
    ('--config.nope=1', "config error: unknown config field 'nope' in --config.nope=1"),
    ('--config.dataset.name=npz', 'data error: '),
])
def test_bad_config_is_one_line_exit_2(tmp_path, override, message):
  r = run(*TINY, f'--workdir={tmp_path}', override)
  assert r.returncode == 2, r.stderr[-2000:]
  assert last_line(r).startswith(message), last_line(r)
  assert not os.path.exists(tmp_path / 'metrics.jsonl') and not os.path.exists(tmp_path / 'checkpoints')


def test_unknown_variant_and_batch_not_divisible_by_devices():
  with pytest.raises(ValueError, match='variant'):
    default.sparsenet_config('cifar10', 'v1', 'variant=xbc')
  config = default.get_config()
  config.batch_size = 63
  with pytest.raises(config_validation.ConfigError, match='batch_size=63 is not divisible by the 4 devices'):
    config_validation.validate(config, 4)


def test_bad_npz_through_the_cli(tmp_path):
  rng = np.random.default_rng(0)
  images, labels = rng.integers(0, 256, (200, 32, 32, 3), dtype=np.uint8), np.arange(200) % 10
  np.savez(tmp_path / 'bad.npz', image=images, label=labels + 10)  # labels 10..19 for a 10-class model
  np.savez(tmp_path / 'ok.npz', image=images, label=labels)
  r = run(DIGITS, f'--workdir={tmp_path}/run', '--config.dataset.name=npz',
          f'--config.dataset.train_path={tmp_path}/ok.npz', f'--config.dataset.test_path={tmp_path}/bad.npz',
          '--config.dataset.num_classes=10')
  assert r.returncode == 2
  assert last_line(r).startswith('data error: ') and 'bad.npz' in last_line(r)


def test_no_path_unpickles():
  """np.load only with allow_pickle=False, and no pickle module anywhere in the project."""
  sources = glob.glob(os.path.join(ROOT, 'sparsenet_jax', '**', '*.py'), recursive=True) + glob.glob(
      os.path.join(ROOT, 'launch', '*.py'))
  assert len(sources) > 30
  for path in sources:
    text = open(path).read()
    assert not re.search(r'^\s*(import pickle|from pickle|import cloudpickle|import dill)', text, re.M), path
    assert 'allow_pickle=True' not in text, path
    for call in re.findall(r'np\.load\([^)]*\)', text):
      assert 'allow_pickle=False' in call, (path, call)


def test_a_failing_save_is_a_clear_error_and_keeps_earlier_checkpoints(tmp_path, monkeypatch):
  """A full disk at the second save: one line naming the step, the first checkpoint intact."""
  import errno
  from sparsenet_jax.training import checkpoints
  from sparsenet_jax.training import train
  from test_train import tiny_config
  real_save = checkpoints.ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step > 23:
      raise OSError(errno.ENOSPC, 'No space left on device')
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(checkpoints.ocp.CheckpointManager, 'save', save)
  with pytest.raises(checkpoints.CheckpointError,
                     match=r'saving checkpoint 46 in .* failed \(OSError: .*No space left on device\); '
                           r'earlier complete checkpoints are intact'):
    train.train_and_evaluate(tiny_config(), str(tmp_path))
  assert checkpoint_steps(str(tmp_path)) == [23]
