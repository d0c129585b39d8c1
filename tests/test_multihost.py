"""Two processes on localhost (JAX's distributed runtime, gloo CPU collectives, one CPU device each)
train together and match one process with two devices."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, cpu_env, restored_state
from configs import digits

ARGS = ['--config=' + os.path.join(ROOT, 'configs', 'digits.py'), '--config.model.growth_rate=4',
        '--config.model.blocks=(2,3)', '--config.model.path=2', '--config.num_train_steps=8',
        '--config.log_every_steps=4', '--config.eval_batch_size=100']


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _main(workdir, devices, *extra):
  return subprocess.Popen([sys.executable, os.path.join(ROOT, 'launch', 'main.py'), *ARGS,
                           f'--workdir={workdir}', *extra], env=cpu_env(devices), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _rows(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]


def _params(workdir):
  """Restored onto this process's devices (the checkpoint's own devices do not exist here)."""
  config = digits.get_config()
  config.model.growth_rate, config.model.blocks, config.model.path = 4, (2, 3), 2
  return restored_state(workdir, config, 10, 23, (8, 8, 1)).params


@pytest.mark.slow
def test_two_processes_equal_one_process_with_two_devices(tmp_path):
  port = _free_port()
  procs = [_main(tmp_path / 'multi', 1, f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
                 f'--process_id={i}') for i in range(2)]
  single = _main(tmp_path / 'single', 2)
  for p in procs + [single]:
    out, _ = p.communicate(timeout=400)
    assert p.returncode == 0, out[-3000:]

  multi, one = _rows(tmp_path / 'multi'), _rows(tmp_path / 'single')
  assert len(multi) == len(one) == 3  # process 1 wrote nothing: one record per run
  for a, b in zip(multi, one):
    for key in ('step', 'train_loss', 'train_accuracy', 'eval_loss', 'eval_accuracy', 'num_examples'):
      if key in b:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5)
  assert multi[-1]['num_examples'] == 297  # each example evaluated once across the two processes
  for x, y in zip(jax.tree.leaves(_params(tmp_path / 'multi')), jax.tree.leaves(_params(tmp_path / 'single'))):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-5)


LONG = ARGS[:4] + ['--config.num_epochs=4', '--config.log_every_steps=5', '--config.checkpoint_every_epochs=1',
                   '--config.eval_batch_size=100']


def _pair(workdir):
  """Two processes of one run, one CPU device each."""
  port = _free_port()
  return [subprocess.Popen([sys.executable, os.path.join(ROOT, 'launch', 'main.py'), *LONG, f'--workdir={workdir}',
                            f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2', f'--process_id={i}'],
                           env=cpu_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_step_and_resumes_exactly(tmp_path):
  """Only process 1 is signalled; JAX's preemption service tells process 0, both save the same step
  (one collective Orbax save), exit 143, and the same command finishes with the uninterrupted run's
  numbers."""
  import re
  import signal
  import time
  reference = _pair(tmp_path / 'reference')
  for p in reference:
    out, _ = p.communicate(timeout=400)
    assert p.returncode == 0, out[-3000:]

  workdir = tmp_path / 'preempted'
  procs = _pair(workdir)
  start = time.time()
  while not (workdir / 'checkpoints').is_dir() or not [n for n in os.listdir(workdir / 'checkpoints') if n.isdigit()]:
    assert procs[0].poll() is None and time.time() - start < 300, procs[0].communicate()[0][-3000:]
    time.sleep(0.01)
  procs[1].send_signal(signal.SIGTERM)
  outs = [p.communicate(timeout=300)[0] for p in procs]
  if all(p.returncode == 0 for p in procs):
    pytest.skip('the run finished before the signal arrived')
  assert [p.returncode for p in procs] == [143, 143], outs[0][-2000:] + outs[1][-2000:]
  saved = [re.search(r'saved checkpoint at step (\d+)', o) for o in outs]
  assert all(saved), outs
  assert saved[0].group(1) == saved[1].group(1)  # the same step on both processes
  assert 'Traceback' not in outs[0] + outs[1]

  for p in _pair(workdir):
    out, _ = p.communicate(timeout=400)
    assert p.returncode == 0, out[-3000:]
  finals = [[r for r in _rows(w) if r.get('final')][-1] for w in (tmp_path / 'reference', workdir)]
  assert finals[0]['step'] == finals[1]['step']
  np.testing.assert_allclose(finals[1]['eval_loss'], finals[0]['eval_loss'], rtol=1e-5)
  assert finals[1]['eval_accuracy'] == finals[0]['eval_accuracy']
