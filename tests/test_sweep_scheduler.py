"""The local scheduler and SLURM array tasks of sweeps, driven by a fake trainer: a few lines of Python
that write metrics.jsonl as launch/main.py does."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from test_sweeps import sweep_cli
from sparsenet_jax.tools import slurm
from sparsenet_jax.tools import sweeps
from sparsenet_jax.training import record


FAKE_TRAINER = '''
import json, os, sys, time
workdir, name = sys.argv[1], os.path.basename(sys.argv[1])
wait_s = float(sys.argv[2]) if len(sys.argv) > 2 else 30
root = os.path.dirname(workdir)
os.makedirs(workdir, exist_ok=True)
with open(os.path.join(workdir, 'config.json'), 'w') as f:
  json.dump({'name': name}, f)
with open(os.path.join(root, 'calls.jsonl'), 'a') as f:
  f.write(json.dumps({'name': name, 'gpus': os.environ.get('CUDA_VISIBLE_DEVICES'),
                      'resumed': os.path.exists(os.path.join(workdir, 'checkpoint'))}) + '\\n')
open(os.path.join(root, name + '.started'), 'w').close()
if name.endswith('together'):  # wait for the other run: passes only if both run at once
  deadline = time.time() + wait_s
  while len([f for f in os.listdir(root) if f.endswith('.started')]) < 2:
    if time.time() > deadline:
      sys.exit(5)
    time.sleep(0.05)
metrics = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
metrics.write(json.dumps({'step': 1, 'train_loss': 2.0}) + '\\n')
if name.startswith('crash') and not os.path.exists(os.path.join(workdir, 'checkpoint')):
  open(os.path.join(workdir, 'checkpoint'), 'w').close()
  sys.exit(3)
if name.startswith('silent'):
  sys.exit(0)
metrics.write(json.dumps({'step': 2, 'epoch': 1.0, 'eval_error': 0.125, 'eval_accuracy': 0.875,
                          'final': True}) + '\\n')
'''


@pytest.fixture
def fake_trainer(tmp_path):
  path = tmp_path / 'fake_trainer.py'
  path.write_text(FAKE_TRAINER)
  return lambda run, workdir: [sys.executable, str(path), workdir]


def calls(root):
  with open(os.path.join(root, 'calls.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_scheduler_runs_two_at_once_each_on_its_own_gpu(tmp_path, fake_trainer):
  root = str(tmp_path / 'sweep')
  runs = [sweeps.Run('a_together', 'configs/digits.py'), sweeps.Run('b_together', 'configs/digits.py')]
  lines = []
  results = sweeps.run_local(runs, root, sweeps.slots(1, None, ['0', '1']), fake_trainer,
                             echo=lines.append, poll_s=0.05)
  assert results == {'a_together': sweeps.Result('ok', 0, results['a_together'].seconds),
                     'b_together': sweeps.Result('ok', 0, results['b_together'].seconds)}
  assert sorted(c['gpus'] for c in calls(root)) == ['0', '1']
  assert [line.split()[0] for line in lines] == ['start', 'start', 'ok', 'ok']
  for run in runs:
    log = open(os.path.join(root, run.name, 'sweep.log')).read()
    assert log.startswith('# ') and 'CUDA_VISIBLE_DEVICES=' in log and 'fake_trainer.py' in log


def test_one_slot_runs_one_at_a_time(tmp_path, fake_trainer):
  root = str(tmp_path / 'sweep')
  runs = [sweeps.Run('a_together', 'c.py'), sweeps.Run('b_together', 'c.py')]
  def waits_3_s(run, workdir):  # alone, the first run gives up
    return fake_trainer(run, workdir) + ['3']
  results = sweeps.run_local(runs, root, sweeps.slots(1, 1, []), waits_3_s, echo=lambda _: None,
                             poll_s=0.05)
  assert results['a_together'].outcome == 'failed' and results['a_together'].returncode == 5


def test_scheduler_skips_done_runs_and_resumes_failed_ones(tmp_path, fake_trainer):
  root = str(tmp_path / 'sweep')
  runs = [sweeps.Run('crash', 'c.py'), sweeps.Run('fine', 'c.py'), sweeps.Run('silent', 'c.py')]
  first = sweeps.run_local(runs, root, sweeps.slots(1, 2, []), fake_trainer, echo=lambda _: None,
                           poll_s=0.05)
  assert {n: r.outcome for n, r in first.items()} == {'crash': 'failed', 'fine': 'ok', 'silent': 'failed'}
  assert first['crash'].returncode == 3 and first['silent'].returncode == 0
  assert record.status(os.path.join(root, 'crash')) == 'partial'
  summary = sweeps.summary(runs, root, first)
  assert summary[0].split()[:3] == ['crash', 'failed', '(exit']
  assert summary[1].split()[:2] == ['fine', 'ok'] and summary[1].endswith('eval_error=0.1250')

  lines = []
  second = sweeps.run_local(runs, root, sweeps.slots(1, 2, []), fake_trainer, echo=lines.append,
                            poll_s=0.05)
  assert {n: r.outcome for n, r in second.items()} == {'crash': 'ok', 'fine': 'skipped', 'silent': 'failed'}
  assert 'skip   fine: finished before' in lines
  assert [(c['name'], c['resumed']) for c in calls(root) if c['name'] == 'crash'] == [
      ('crash', False), ('crash', True)]
  log = open(os.path.join(root, 'crash', 'sweep.log')).read()
  assert log.count('# ') == 2  # appended, not overwritten


def test_interrupted_scheduler_stops_its_runs(tmp_path):
  sleeper = tmp_path / 'sleeper.py'
  sleeper.write_text('import os, sys, time\n'
                     'open(sys.argv[1], "w").write(str(os.getpid()))\n'
                     'time.sleep(120)\n')
  pid_file = tmp_path / 'pid'

  def interrupt_once_started(line):
    deadline = time.time() + 30
    while not pid_file.exists() and time.time() < deadline:
      time.sleep(0.05)
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    sweeps.run_local([sweeps.Run('slow', 'c.py')], str(tmp_path / 'sweep'), sweeps.slots(1, 1, []),
                     lambda run, workdir: [sys.executable, str(sleeper), str(pid_file)],
                     echo=interrupt_once_started)
  with pytest.raises(ProcessLookupError):
    os.kill(int(pid_file.read_text()), 0)


# SLURM.

def test_slurm_script_passes_bash_n(tmp_path):
  r = sweep_cli('--sweep=configs/sweeps/table2.py', f'--workdir={tmp_path}', '--slurm', '--devices_per_run=2',
                '--max_parallel=4')
  assert r.returncode == 0, r.stderr
  script = tmp_path / 'sweep.sbatch'
  assert f'sbatch {script}' in r.stdout
  assert subprocess.run(['bash', '-n', str(script)], capture_output=True).returncode == 0
  text = script.read_text()
  for directive in ('--array=0-27%4', '--gres=gpu:2', '--requeue', '--signal=B:USR1@300',
                    '--open-mode=append'):
    assert f'#SBATCH {directive}\n' in text
  assert f"--workdir={tmp_path}/svhn_densenet_bc_250_seed0 --config.seed=0" in text
  assert ' 27) name=' in text and ' 28) name=' not in text


@pytest.fixture
def slurm_task(tmp_path, fake_trainer):
  """Runs array task i of a generated script as SLURM would, with a fake `scontrol` that logs its args."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  (bin_dir / 'scontrol').write_text(f'#!/bin/bash\necho "$@" >> {tmp_path}/scontrol.log\n')
  (bin_dir / 'scontrol').chmod(0o755)
  root = tmp_path / 'sweep'
  runs = [sweeps.Run('fine', 'c.py'), sweeps.Run('crash', 'c.py')]
  script = tmp_path / 'sweep.sbatch'
  script.write_text(slurm.slurm_script(runs, str(root), ROOT, 'fake.py', command_fn=fake_trainer))
  env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', SLURM_ARRAY_JOB_ID='77')

  def start(i):
    return subprocess.Popen(['bash', str(script)], env=dict(env, SLURM_ARRAY_TASK_ID=str(i)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  return root, start


def test_slurm_task_runs_its_run_once(tmp_path, slurm_task):
  root, start = slurm_task
  assert start(0).wait(timeout=60) == 0
  assert record.status(str(root / 'fine')) == 'done'
  assert start(0).wait(timeout=60) == 0
  log = (root / 'fine' / 'sweep.log').read_text()
  assert 'task 77_0' in log and 'fine finished before; nothing to do' in log
  assert len(calls(root)) == 1
  assert start(1).wait(timeout=60) == 3  # the crash run fails once, then resumes
  assert start(1).wait(timeout=60) == 0
  assert [c['resumed'] for c in calls(root) if c['name'] == 'crash'] == [False, True]
  assert start(2).wait(timeout=60) == 2


def test_slurm_task_requeues_itself_near_the_time_limit(tmp_path, slurm_task):
  root, start = slurm_task
  slow = tmp_path / 'slow.py'
  slow.write_text('import signal, sys, time\n'
                  'signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n'
                  'open(sys.argv[1], "w").close()\ntime.sleep(60)\n')
  marker = tmp_path / 'running'
  script = tmp_path / 'sweep.sbatch'
  script.write_text(slurm.slurm_script([sweeps.Run('slow', 'c.py')], str(root), ROOT, 'fake.py',
                                        command_fn=lambda run, w: [sys.executable, str(slow), str(marker)]))
  proc = start(0)
  deadline = time.time() + 30
  while not marker.exists() and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGUSR1)
  assert proc.wait(timeout=30) == 0
  assert (tmp_path / 'scontrol.log').read_text().split() == ['requeue', '77_0']
  log = (root / 'slow' / 'sweep.log').read_text()
  assert 'time limit near: stopping slow and requeueing task 77_0' in log
