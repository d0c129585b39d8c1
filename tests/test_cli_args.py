"""Every launch/ script given nonsense: one line on stderr, no traceback, never exit 0; unknown arguments,
usage errors and non-positive sizes and counts are exit 2. Real subprocesses, run a few at a time. And the
shell they share (sparsenet_jax/cli.py): its table, its hooks."""
import concurrent.futures
import os
import subprocess
import sys
import threading

import pytest

from conftest import ROOT, cpu_env
from sparsenet_jax import cli
from sparsenet_jax import errors

DIGITS = '--config=' + os.path.join(ROOT, 'configs', 'digits.py')
C10 = '--config=' + os.path.join(ROOT, 'configs', 'cifar10_v1.py')
SWEEP = '--sweep=' + os.path.join(ROOT, 'configs', 'sweeps', 'digits.py')


def cases(tmp):
  """(script, args, exit code); exit code None: any non-zero code (an error that is not a usage error)."""
  w = f'--workdir={tmp}/run'
  a_file = os.path.join(tmp, 'a_file')
  bad_sweep = os.path.join(tmp, 'bad_sweep.py')
  return [
      ('main.py', [DIGITS, w, 'stray'], 2),
      ('main.py', [DIGITS, w, '--no_such_flag=1'], 2),
      ('main.py', [DIGITS], 2),  # --workdir missing
      ('main.py', [C10 + ':variant=bc,foo=1', w], 2),
      ('main.py', [C10 + ':=1', w], 2),
      ('main.py', [C10 + ':variant=zz', w], 2),
      ('main.py', [DIGITS + ':variant=bc', w], 2),  # digits takes no arguments
      ('main.py', [DIGITS, w, '--config.model.growht_rate=3'], 2),
      ('main.py', [DIGITS, w, '--config.num_epochs=abc'], 2),
      ('main.py', [DIGITS, w, '--config.batch_size=0'], 2),
      ('main.py', [DIGITS, w, '--config.batch_size=-64'], 2),
      ('main.py', [DIGITS, w, '--config.num_epochs=0'], 2),
      ('main.py', [DIGITS, w, '--config.eval_batch_size=0'], 2),
      ('main.py', [DIGITS, w, '--config.log_every_steps=0'], 2),
      ('main.py', [DIGITS, w, '--num_processes=0'], 2),
      ('main.py', [DIGITS, w, '--process_id=-1'], 2),
      ('main.py', [DIGITS, w, '--mode=nope'], 2),
      ('summary.py', ['stray'], 2),
      ('summary.py', ['--nope'], 2),
      ('summary.py', ['--image_size=0'], 2),
      ('summary.py', ['--num_classes=0'], 2),
      ('summary.py', ['--growth_rate=-1'], 2),
      ('summary.py', ['--blocks=0,4'], 2),
      ('summary.py', ['--blocks=a,b'], 2),
      ('summary.py', ['--scan_chunk=0'], 2),
      ('summary.py', ['--near=-1'], 2),
      ('summary.py', ['--model=no_such_preset'], 2),
      ('bench.py', ['stray'], 2),
      ('bench.py', ['--batch_size=0'], 2),
      ('bench.py', ['--batch_size=-8'], 2),
      ('bench.py', ['--steps=-1'], 2),
      ('bench.py', ['--rounds=0'], 2),
      ('bench.py', ['--image_size=0'], 2),
      ('bench.py', ['--num_classes=0'], 2),
      ('bench.py', ['--blocks=0'], 2),
      ('bench.py', ['--sweep_depth=0'], 2),
      ('bench.py', ['--model=no_such_preset'], 2),
      ('sweep.py', ['stray', SWEEP, w], 2),
      ('sweep.py', [SWEEP, w, '--devices_per_run=0'], 2),
      ('sweep.py', [SWEEP, w, '--max_parallel=0'], 2),
      ('sweep.py', [SWEEP + ':foo=1', w, '--dry_run'], 2),
      ('sweep.py', [SWEEP, f'--workdir={a_file}', '--dry_run'], 2),
      ('sweep.py', [SWEEP, f'--workdir={a_file}'], 2),
      ('sweep.py', [f'--sweep={bad_sweep}', w, '--dry_run'], 2),
      ('sweep.py', [w], 2),  # --sweep missing
      ('report.py', ['stray', w], 2),
      ('report.py', ['--nope', w], 2),
      ('report.py', [f'--workdir={tmp}/no_such_dir'], 2),
      ('predict.py', ['--top=0', f'--model={a_file}', 'x.png'], 2),
      ('predict.py', ['x.png'], 2),  # neither --workdir nor --model
      ('predict.py', [f'--model={a_file}'], 2),  # no images
      ('predict.py', [f'--model={a_file}', 'x.png'], 2),  # not an exported model
      ('predict.py', [f'--workdir={tmp}/no_such_run', 'x.png'], None),
      ('export.py', ['stray', w, '--out=x.npz'], 2),
      ('export.py', [w], 2),  # --out missing
      ('export.py', [f'--workdir={tmp}/no_such_run', f'--out={tmp}/x.npz'], None),
      ('prepare_data.py', [], 2),  # --dataset missing
      ('prepare_data.py', ['--dataset=imagenet'], 2),
      ('prepare_data.py', ['stray', '--dataset=cifar10'], 2),
      ('prepare_data.py', ['--dataset=cifar10', f'--data_dir={a_file}'], 2),  # a file, not a directory
  ]


def _run(script, args, cwd):
  return subprocess.run([sys.executable, os.path.join(ROOT, 'launch', script), *args], capture_output=True,
                        text=True, env=cpu_env(), timeout=300, cwd=cwd)


@pytest.mark.slow
def test_every_cli_refuses_nonsense_in_one_line(tmp_path):
  tmp = str(tmp_path)
  open(os.path.join(tmp, 'a_file'), 'w').write('not a directory, not a model')
  open(os.path.join(tmp, 'bad_sweep.py'), 'w').write('def get_sweep(:\n')
  todo = cases(tmp)
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    results = list(pool.map(lambda c: _run(c[0], c[1], tmp), todo))
  bad = []
  for (script, args, code), r in zip(todo, results):
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    ok = (r.returncode != 0 and (code is None or r.returncode == code) and 'Traceback' not in r.stderr
          and len(lines) == 1 and '\\\'' not in r.stderr and not r.stdout.strip())
    if not ok:
      bad.append(f'{script} {" ".join(args)}: exit {r.returncode}, stderr {r.stderr[-600:]!r}')
  assert not bad, '\n'.join(bad)
  assert not os.path.exists(os.path.join(tmp, 'run'))  # nothing was created by a refused command


SCRIPTS = ['main.py', 'summary.py', 'bench.py', 'sweep.py', 'report.py', 'predict.py', 'export.py',
           'prepare_data.py']


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_exits_0(script):
  r = _run(script, ['--help'], ROOT)  # absl itself exits 1 after printing the usage
  assert r.returncode == 0, r.stderr[-2000:]
  assert any(f in r.stdout for f in ('--workdir', '--model', '--dataset'))
  assert 'Traceback' not in r.stderr and 'error' not in r.stderr
  assert ('--compilation_cache:' in r.stdout) == (script in ('main.py', 'bench.py'))  # one name, shared


@pytest.mark.parametrize('override,message', [
    ('--config.model.growht_rate=3',
     """unknown config field 'growht_rate' in --config.model.growht_rate=3; did you mean "growth_rate"?"""),
    ('--config.modl.growth_rate=1',
     """unknown config field 'modl' in --config.modl.growth_rate=1; did you mean "model"?"""),
    ('--config.model.growth_rate.k=1', "unknown config field 'k' in --config.model.growth_rate.k=1"),
    ('--config.num_epochs=abc', "flag --config.num_epochs=abc: could not convert string to float: 'abc'"),
])
def test_a_bad_override_names_the_field(tmp_path, override, message):
  r = _run('main.py', [DIGITS, f'--workdir={tmp_path}/run', override], str(tmp_path))
  assert r.returncode == 2 and r.stderr.strip() == f'config error: {message}', r.stderr[-2000:]


def _kinds(kind):
  return [kind] + [k for sub in kind.__subclasses__() for k in _kinds(sub)]


def test_every_failure_has_a_label_and_an_exit_code():
  rows = [kind for kind, _, _ in cli.FAILURES]
  assert [k.__name__ for k in _kinds(errors.Failure) if not any(issubclass(k, row) for row in rows)] == [
      'Failure']


def _raise(error):
  raise error


def test_the_closed_loop_filter_drops_only_closed_loop_reports(monkeypatch):
  """TensorStore's threads report the closed event loop of a failed Orbax read; nothing else is dropped."""
  reported = []
  monkeypatch.setattr(threading, 'excepthook', lambda args: reported.append(repr(args.exc_value)))
  monkeypatch.setattr(sys, 'excepthook', sys.excepthook)
  monkeypatch.setattr(sys, 'unraisablehook', sys.unraisablehook)
  cli.drop_closed_loop_reports()
  closed = 'Event loop is closed'
  for error in (RuntimeError(closed), RuntimeError('disk full'), ValueError(closed)):
    thread = threading.Thread(target=_raise, args=(error,))
    thread.start()
    thread.join()
  assert reported == ["RuntimeError('disk full')", "ValueError('Event loop is closed')"]
