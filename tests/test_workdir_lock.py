"""One writer per workdir and signals at any moment, with real processes: a second command on a workdir
that trains is refused naming the holder (train, eval, export; a sweep skips it), a kill -9 of the holder
leaves a stale lock the same command takes over and resumes from; Ctrl-C during the first compile, SIGTERM
during a save and during the final evaluation; SIGINT to a sweep's process group and SIGTERM to the sweep
alone stop its runs, and the same command resumes. The fault table (test_faults_lock_signals.py) has the
cases one process shows."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, cpu_env
from fault_table import TINY
from sparsenet_jax.training import workdir_lock

LONG = [*TINY, '--config.num_epochs=10']  # about 230 steps: still training while the others are refused


def launch(script, *args, **kw):
  return subprocess.Popen([sys.executable, os.path.join(ROOT, 'launch', script), *args], cwd=ROOT, env=cpu_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def run(script, *args):
  return subprocess.run([sys.executable, os.path.join(ROOT, 'launch', script), *args], cwd=ROOT, env=cpu_env(),
                        capture_output=True, text=True, timeout=600)


def wait_for(predicate, proc, timeout=300):
  start = time.time()
  while not predicate():
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.time() - start < timeout
    time.sleep(0.01)


def checkpoints(workdir):
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def lines(stderr):
  return [line for line in stderr.splitlines() if line.strip()]


def final(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [r for r in map(json.loads, f) if r.get('final')][-1]


def write_sweep(path, epochs):
  with open(path, 'w') as f:
    f.write('from sparsenet_jax.tools import sweeps\n\n\ndef get_sweep():\n'
            '  return [sweeps.Run("part", "configs/digits.py", {"model.growth_rate": 4, "model.blocks": (2, 3), '
            f'"model.path": 2, "num_epochs": {epochs}, "checkpoint_every_epochs": 1, "eval_batch_size": 99}})]\n')


@pytest.mark.slow
def test_a_second_command_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(tmp_path):
  root, workdir = str(tmp_path), str(tmp_path / 'part')
  write_sweep(tmp_path / 'one.py', 10)
  holder = launch('main.py', *LONG, f'--workdir={workdir}')
  wait_for(lambda: workdir_lock.holder(workdir), holder)
  names = rf'workdir {workdir} is busy: process {holder.pid} on host {socket.gethostname()} \(train, started ' \
          r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)'
  refusals = {'train': run('main.py', *LONG, f'--workdir={workdir}'),
              'eval': run('main.py', *LONG, f'--workdir={workdir}', '--mode=eval'),
              'export': run('export.py', f'--workdir={workdir}', f'--out={tmp_path / "m.npz"}')}
  sweep = run('sweep.py', f'--sweep={tmp_path / "one.py"}', f'--workdir={root}')
  listing = run('sweep.py', f'--sweep={tmp_path / "one.py"}', f'--workdir={root}', '--dry_run')
  assert holder.poll() is None, 'the holder finished before the others were refused: make LONG longer'
  for what, r in refusals.items():
    assert r.returncode == 2 and len(lines(r.stderr)) == 1, (what, r.stderr[-3000:])
    assert re.match(rf'workdir error: {names}', r.stderr), (what, r.stderr)
  assert not os.path.exists(tmp_path / 'm.npz')
  assert sweep.returncode == 0, sweep.stderr
  assert re.search(rf'busy   part: process {holder.pid} .* holds its workdir; not started', sweep.stdout)
  assert not os.path.exists(os.path.join(workdir, 'sweep.log'))
  assert listing.returncode == 0 and '(0 done, 1 busy, 0 partial, 0 new)' in listing.stdout, listing
  assert listing.stdout.strip().endswith('# busy')

  wait_for(lambda: checkpoints(workdir), holder)
  holder.kill()  # kill -9: the lock file stays behind, naming a process that is gone
  holder.wait()
  assert workdir_lock.holder(workdir) is None and os.path.exists(os.path.join(workdir, workdir_lock.LOCK))
  saved = checkpoints(workdir)[-1]
  r = run('main.py', *LONG, f'--workdir={workdir}')
  assert r.returncode == 0, r.stderr[-3000:]
  assert re.search(rf'warning: took over the stale lock {workdir}/lock.json \(process {holder.pid} on host '
                   rf'.*\): process {holder.pid} is gone', r.stderr), r.stderr[-3000:]
  assert f'resumed from step {saved}' in r.stderr
  assert not os.path.exists(os.path.join(workdir, workdir_lock.LOCK))


def interrupt(workdir, sig, moment, *extra):
  """Starts the tiny run in its own process group, sends `sig` to the group once `moment()` holds."""
  proc = launch('main.py', *TINY, f'--workdir={workdir}', *extra, start_new_session=True)
  wait_for(moment, proc)
  os.killpg(proc.pid, sig)
  _, err = proc.communicate(timeout=300)
  return proc.returncode, err


@pytest.mark.slow
def test_signals_during_the_first_compile_a_save_and_the_final_evaluation_resume(tmp_path):
  results = []
  # Ctrl-C (SIGINT to the process group) while the first train step compiles.
  compiling = str(tmp_path / 'compiling')
  stderr = tmp_path / 'compiling.err'
  with open(stderr, 'w') as err_file:
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'launch', 'main.py'), *TINY, f'--workdir={compiling}'],
                            cwd=ROOT, env=cpu_env(), stdout=subprocess.DEVNULL, stderr=err_file,
                            start_new_session=True)
    wait_for(lambda: 'compiling the train step' in stderr.read_text(), proc)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=300)
  results.append((compiling, proc.returncode, stderr.read_text(), 'saved checkpoint at step 1 '))
  # SIGTERM while a checkpoint is written (Orbax's temporary directory is there).
  saving = str(tmp_path / 'saving')
  ckpt = os.path.join(saving, 'checkpoints')
  code, err = interrupt(saving, signal.SIGTERM, lambda: os.path.isdir(ckpt) and any(
      'tmp' in n for n in os.listdir(ckpt)))
  results.append((saving, code, err, 'saved checkpoint at step'))
  # SIGTERM during the final evaluation: the last checkpoint is on disk, no final row yet (a small eval batch
  # makes the evaluation long enough to hit).
  evaluating = str(tmp_path / 'evaluating')
  code, err = interrupt(evaluating, signal.SIGTERM, lambda: 23 in checkpoints(evaluating), '--config.eval_batch_size=3')
  results.append((evaluating, code, err, ''))

  finals = []
  for workdir, code, err, says in results:
    if code == 0:
      continue  # it finished before the signal came: nothing to resume
    assert code == 143, (workdir, err[-3000:])
    assert 'Traceback' not in err
    assert re.search(rf'^interrupted: SIG(INT|TERM) received.*{says}', lines(err)[-1]), (workdir, err[-3000:])
    assert not [line for line in lines(err) if line.startswith(('interrupted', 'Exception'))][:-1], err
    r = run('main.py', *TINY, f'--workdir={workdir}')
    assert r.returncode == 0, (workdir, r.stderr[-3000:])
    finals.append(final(workdir))
  assert len(finals) >= 2
  for row in finals[1:]:
    assert row['step'] == finals[0]['step'] == 23
    assert row['eval_loss'] == pytest.approx(finals[0]['eval_loss'], abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize('sig,group', [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=['SIGINT to the process group', 'SIGTERM to the sweep'])
def test_a_signal_to_a_sweep_stops_its_runs_and_the_same_command_resumes(tmp_path, sig, group):
  root, workdir = str(tmp_path), str(tmp_path / 'part')
  write_sweep(tmp_path / 'one.py', 3)
  args = (f'--sweep={tmp_path / "one.py"}', f'--workdir={root}')
  sweep = launch('sweep.py', *args, start_new_session=True)
  wait_for(lambda: checkpoints(workdir), sweep)
  child = workdir_lock.holder(workdir)
  (os.killpg if group else os.kill)(sweep.pid, sig)
  out, err = sweep.communicate(timeout=300)
  assert sweep.returncode == 128 + sig, err[-3000:]
  assert lines(err) == [f'interrupted: {sig.name} received: the runs were stopped; the same command resumes '
                        'the sweep'], err[-3000:]
  assert 'stop   part: interrupted' in out
  assert child is not None and workdir_lock.process_start(child.pid) != child.process_start  # no orphan
  r = run('sweep.py', *args)
  assert r.returncode == 0, r.stdout + r.stderr
  assert re.search(r'ok     part in', r.stdout), r.stdout
  with open(os.path.join(workdir, 'sweep.log')) as f:
    assert 'resumed from step' in f.read()
