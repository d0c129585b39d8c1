"""The fault table, busy workdirs and signals: a second command on a workdir another one holds (a live
holder, a record of another host), stale locks taken over, a lock file that cannot be used, sweeps that
meet a busy run; SIGINT and SIGTERM while a script imports JAX or loads its data, to the script or to its
process group. See tests/fault_table.py for what each case asserts; the signal cases run through
tests/signal_at.py, and the cases that succeed check here what they must have said and left."""
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from fault_table import Case, TINY
from sparsenet_jax.training import workdir_lock

HOST, PID = socket.gethostname(), os.getpid()
HELD = []  # the locks this process holds for a case, released after it


def hold(place):
  """This process holds {run} as a training run would: the flock and its record."""
  HELD.append(workdir_lock.acquire(place.run, 'train'))


def hold_part(place):
  """A partial sweep run {tmp}/part (a sweep file names it) that this process holds."""
  os.makedirs(os.path.join(place.tmp, 'part'))
  HELD.append(workdir_lock.acquire(os.path.join(place.tmp, 'part'), 'train'))
  sweep_file(place)


def sweep_file(place):
  """{tmp}/one.py: one run, 'part', the tiny digits model of the trained run."""
  with open(os.path.join(place.tmp, 'one.py'), 'w') as f:
    f.write('from sparsenet_jax.tools import sweeps\n\n\ndef get_sweep():\n'
            '  return [sweeps.Run("part", "configs/digits.py", {"model.growth_rate": 4, "model.blocks": (2, 3), '
            '"model.path": 2, "num_epochs": 1})]\n')


def dead_pid():
  p = subprocess.Popen(['true'])
  p.wait()
  return p.pid


def record(host=HOST, pid=None, start=None, age=0.0, text=None):
  """A lock file in {run} with this record (or `text`), its heartbeat `age` seconds old; nobody flocks it."""
  def prepare(place):
    path = os.path.join(place.run, workdir_lock.LOCK)
    with open(path, 'w') as f:
      f.write(text if text is not None else json.dumps(
          {'host': host, 'pid': pid or dead_pid(), 'process_start': start, 'purpose': 'train', 'since': time.time()}))
    os.utime(path, (time.time() - age, time.time() - age))
  return prepare


def directory(place):
  os.makedirs(os.path.join(place.run, workdir_lock.LOCK))


ME = workdir_lock.process_start(PID)
OTHER_FRESH = record(host='elsewhere', pid=4242, age=10)
OTHER_STALE = record(host='elsewhere', pid=4242, age=workdir_lock.STALE_S + 60)
LIVE_RECORD = record(pid=PID, start=ME)
REUSED = record(pid=PID, start=(ME or 0) + 1)

TRAIN = [*TINY, '--workdir={run}']  # the trained run's own command: 'already finished' when free
EXTEND = [*TINY, '--workdir={run}', '--config.num_epochs=2', '--extend']
OTHER_CONFIG = [*TINY, '--workdir={run}', '--config.model.growth_rate=6']  # drift, were it free
EVAL = [*TINY, '--workdir={run}', '--mode=eval']
EXPORT = ['--workdir={run}', '--out={tmp}/model_out.npz']
SWEEP = ['--sweep={tmp}/one.py', '--workdir={tmp}']
NEW = [*TINY, '--workdir={tmp}/new']
BUSY = rf'workdir .* is busy: process {PID} on host {HOST} \(train, started \d{{4}}-\d\d-\d\d '
ELSEWHERE = r'is busy: process 4242 on host elsewhere \(train'

CASES = [
    Case('train on a workdir another run trains in', 'main.py', TRAIN, 2, BUSY, hold, ('run',)),
    Case('extend a run another command trains', 'main.py', EXTEND, 2, BUSY, hold, ('run',)),
    Case('another config on a busy workdir (busy before drift)', 'main.py', OTHER_CONFIG, 2, BUSY, hold, ('run',)),
    Case('eval into a workdir that trains', 'main.py', EVAL, 2, BUSY, hold, ('run',)),
    Case('export from a workdir that trains', 'export.py', EXPORT, 2, BUSY, hold, ('run',)),
    Case('train: holder on another host, fresh heartbeat', 'main.py', TRAIN, 2, ELSEWHERE, OTHER_FRESH, ('run',)),
    Case('eval: holder on another host, fresh heartbeat', 'main.py', EVAL, 2, ELSEWHERE, OTHER_FRESH, ('run',)),
    Case('export: holder on another host, fresh heartbeat', 'export.py', EXPORT, 2, ELSEWHERE, OTHER_FRESH,
         ('run',)),
    Case('train: a live process of this host in the record, no flock', 'main.py', TRAIN, 2, BUSY, LIVE_RECORD,
         ('run',)),
    Case('export: a live process of this host in the record, no flock', 'export.py', EXPORT, 2, BUSY,
         LIVE_RECORD, ('run',)),
    Case('train: lock.json is a directory', 'main.py', TRAIN, 2, r'cannot lock workdir .*lock\.json: Is a dir',
         directory, ('run',)),
    Case('eval: lock.json is a directory', 'main.py', EVAL, 2, r'cannot lock workdir .*lock\.json: Is a dir',
         directory, ('run',)),
    Case('export: lock.json is a directory', 'export.py', EXPORT, 2, r'cannot lock workdir .*lock\.json: Is a dir',
         directory, ('run',)),
    # Stale locks: taken over with one warning, the work done, the lock file gone afterwards.
    Case('train: stale lock, its process gone', 'main.py', TRAIN, 0, prepare=record(), needs=('run',)),
    Case('eval: stale lock, its process gone', 'main.py', EVAL, 0, prepare=record(), needs=('run',)),
    Case('export: stale lock, its process gone', 'export.py', EXPORT, 0, prepare=record(), needs=('run',)),
    Case('export: stale lock, its pid another process now', 'export.py', EXPORT, 0, prepare=REUSED, needs=('run',)),
    Case('export: stale lock of another host', 'export.py', EXPORT, 0, prepare=OTHER_STALE, needs=('run',)),
    Case('export: lock file with no record', 'export.py', EXPORT, 0, prepare=record(text='{"pid": '),
         needs=('run',)),
    Case('export: empty lock file', 'export.py', EXPORT, 0, prepare=record(text=''), needs=('run',)),
    # Sweeps: a busy run is listed as busy and not started.
    Case('sweep --dry_run lists a busy run', 'sweep.py', [*SWEEP, '--dry_run'], 0, prepare=hold_part),
    Case('sweep skips a busy run', 'sweep.py', SWEEP, 0, prepare=hold_part),
]
# What the cases that succeed must have said (a regular expression on stdout + stderr) and left.
SAID = {
    'train: stale lock, its process gone': r'warning: took over the stale lock .*: process \d+ is gone',
    'eval: stale lock, its process gone': r'warning: took over the stale lock .*: process \d+ is gone',
    'export: stale lock, its process gone': r'warning: took over the stale lock .*: process \d+ is gone',
    'export: stale lock, its pid another process now': rf'took over .*: process {PID} is another process now',
    'export: stale lock of another host': rf'took over .*: its heartbeat is \d+ s old \(the limit is '
                                          rf'{workdir_lock.STALE_S} s\)',
    'export: lock file with no record': r'took over the stale lock .*: it names no holder',
    'export: empty lock file': r'took over the stale lock .*: it names no holder',
    'sweep --dry_run lists a busy run': r'\(0 done, 1 busy, 0 partial, 0 new\)[\s\S]*# busy',
    'sweep skips a busy run': rf'busy   part: process {PID} on host {HOST} \(train, .*\) holds its workdir; '
                              r'not started',
}

# Signals while a script imports JAX or loads its data: nothing is written yet, so nothing changes; the
# one line says which signal, the exit code is 130 (SIGINT) or 143 (SIGTERM).
SIGNAL_AT = '../tests/signal_at.py'
for script, what, args, moment, sig in (  # each script and phase once; a Python start and JAX's import each
    ('main.py', 'train a new run', NEW, 'loaded:jaxlib', 'SIGINT'),
    ('main.py', 'train a new run', NEW, 'loaded:sklearn', 'SIGTERM/group'),
    ('main.py', 'extend a run', EXTEND, 'loaded:jaxlib', 'SIGTERM/group'),
    ('main.py', 'eval', EVAL, 'loaded:jaxlib', 'SIGTERM'),
    ('main.py', 'eval', EVAL, 'loaded:sklearn', 'SIGINT/group'),
    ('export.py', 'export', EXPORT, 'loaded:jaxlib', 'SIGINT'),
    ('sweep.py', 'sweep --dry_run', [*SWEEP, '--dry_run'], 'loaded:jaxlib', 'SIGTERM/group'),
):
  name = sig.split('/')[0]
  CASES.append(Case(f'{what}: {sig} while loading {moment.split(":")[1]}', SIGNAL_AT, [sig, moment, script, *args],
                    128 + getattr(signal, name), rf'^interrupted: {name} received',
                    prepare=sweep_file if script == 'sweep.py' else None, needs=('run',), process=True))


@pytest.mark.parametrize('case', CASES, ids=str)
def test_busy_and_signals(case, faults, tmp_path):
  try:
    result = faults.check(case, tmp_path)
  finally:
    while HELD:
      HELD.pop().release()
  if case.code == 0:
    assert re.search(SAID[case.name], result['stdout'] + result['stderr']), result
    assert not os.path.exists(os.path.join(tmp_path, 'run', workdir_lock.LOCK))  # released, or never taken
  if case.name == 'sweep skips a busy run':
    assert os.listdir(tmp_path / 'part') == []  # no sweep.log: nothing written there (the lock is released)

