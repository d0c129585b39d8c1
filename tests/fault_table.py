"""The fault-injection table's harness. A `Case` is one bad input: a script, its arguments, what to damage
first, the exit code and the line expected. `Faults.check` prepares the case's own folder (copies of a
trained run and its export where the case names them), hashes every file in it, runs the script, and
asserts: the exit code; exactly one line on stderr, without a traceback, matching `says`; and, for a
refusal, every file that was there before unchanged and nothing new beside them.

The scripts run in-process in one long-lived `fault_runner.py` per script and pytest worker (a case costs
a call, not a Python start); cases with `process=True` (signals, what is read at import) start their own.

  from fault_table import Case
  CASES = [Case('main: nan epochs', 'main.py', [DIGITS, '--workdir={tmp}/w', '--config.num_epochs=nan'],
                2, says='num_epochs')]
  @pytest.mark.parametrize('case', CASES, ids=str)
  def test_fault(case, faults, tmp_path):
    faults.check(case, tmp_path)
"""
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from typing import Callable, Dict, Mapping, Optional, Sequence

from conftest import ROOT, cpu_env

DIGITS = '--config=' + os.path.join(ROOT, 'configs', 'digits.py')
# The trained run the cases damage copies of: digits, a tiny model, one epoch, a checkpoint and an export.
TINY = [DIGITS, '--config.model.growth_rate=4', '--config.model.blocks=(2,3)', '--config.model.path=2',
        '--config.num_epochs=1', '--config.checkpoint_every_epochs=1', '--config.eval_batch_size=99']


@dataclasses.dataclass(frozen=True)
class Place:
  """Where a case runs. Arguments and `prepare` name these: {tmp} the case's own folder, {run} a copy of
  the trained run (when the case `needs` it), {export} a copy of its export, {root} the repository."""
  tmp: str
  run: str
  export: str
  root: str = ROOT


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  script: str                                  # a launch/ script: 'main.py'
  args: Sequence[str]                          # formatted with the Place: '--workdir={run}'
  code: int                                    # the exit code expected
  says: str = ''                               # a regular expression the one stderr line must contain
  prepare: Optional[Callable[[Place], None]] = None  # damage before the run
  needs: Sequence[str] = ()                    # 'run', 'export': copied into the case's folder first
  env: Mapping[str, str] = dataclasses.field(default_factory=dict)
  process: bool = False                        # its own process (signals, what is read at import)
  timeout: float = 300

  def __str__(self):
    return self.name


def snapshot(folder: str) -> Dict[str, str]:
  """relative path -> SHA-256 of every file under `folder`, 'folder' for each folder."""
  hashes = {}
  for parent, folders, names in os.walk(folder):
    hashes.update({os.path.relpath(os.path.join(parent, d), folder): 'folder' for d in folders})
    for name in names:
      path = os.path.join(parent, name)
      if os.path.isfile(path) and not os.path.islink(path):
        with open(path, 'rb') as f:
          hashes[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return hashes


def one_line(stderr: str) -> Sequence[str]:
  return [line for line in stderr.splitlines() if line.strip()]


class Faults:
  """One per pytest worker: the trained run, the export, and a runner per script."""

  def __init__(self, trained: str, export: str):
    self.trained, self.exported = trained, export
    self._runners: Dict[str, subprocess.Popen] = {}
    self._lock = threading.Lock()

  def place(self, case: Case, tmp: str) -> Place:
    place = Place(tmp=tmp, run=os.path.join(tmp, 'run'), export=os.path.join(tmp, 'model.npz'))
    if 'run' in case.needs:
      shutil.copytree(self.trained, place.run)
    if 'export' in case.needs:
      shutil.copy(self.exported, place.export)
    if case.prepare:
      case.prepare(place)
    return place

  def run(self, case: Case, place: Place) -> dict:
    args = [a.format(**dataclasses.asdict(place)) for a in case.args]
    if case.process:
      r = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', case.script), *args], cwd=place.tmp,
                         env=cpu_env(**case.env), capture_output=True, text=True, timeout=case.timeout)
      return {'code': r.returncode, 'stdout': r.stdout, 'stderr': r.stderr}
    with self._lock:
      runner = self._runners.get(case.script)
      if runner is None or runner.poll() is not None:
        runner = self._runners[case.script] = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, 'tests', 'fault_runner.py'), case.script], cwd=ROOT,
            env=cpu_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
      runner.stdin.write(json.dumps({'args': args, 'cwd': place.tmp, 'env': dict(case.env)}) + '\n')
      runner.stdin.flush()
      reply = runner.stdout.readline()
    assert reply, f'the runner of {case.script} died'
    return json.loads(reply)

  def check(self, case: Case, tmp_path) -> dict:
    place = self.place(case, str(tmp_path))
    before = snapshot(place.tmp)
    result = self.run(case, place)
    lines = one_line(result['stderr'])
    shown = f'{case.name}: exit {result["code"]}, stderr:\n{result["stderr"][-3000:]}'
    assert result['code'] == case.code, shown
    assert 'Traceback' not in result['stderr'], shown
    if case.code != 0:
      assert len(lines) == 1, shown
      assert re.search(case.says, lines[0]), f'{case.says!r} not in the line. {shown}'
      after = snapshot(place.tmp)
      assert after == before, f'{case.name} changed files: ' + ', '.join(sorted(
          p for p in set(before) | set(after) if before.get(p) != after.get(p)))
    return result

  def close(self):
    for runner in self._runners.values():
      runner.stdin.close()
      runner.wait(timeout=60)


def train_once(base: str) -> Faults:
  """The trained run and its export, made once for all pytest workers (a file lock orders them)."""
  folder = os.path.join(base, 'fault_table_run')
  with open(folder + '.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    run, export = os.path.join(folder, 'run'), os.path.join(folder, 'model.npz')
    if not os.path.exists(export):
      for script, args in (('main.py', [*TINY, f'--workdir={run}']),
                           ('export.py', [f'--workdir={run}', f'--out={export}'])):
        r = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', script), *args], env=cpu_env(),
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
  return Faults(run, export)
