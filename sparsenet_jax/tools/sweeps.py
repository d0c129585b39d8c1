"""Sweeps: many `launch/main.py` runs, each in its own workdir under one root, run locally or on SLURM.

A sweep file is Python, like a config: `get_sweep(**params)` returns a list of `Run`s (a unique name, a
config file with its optional `:arg`, and `--config.*` overrides), built with `runs`, `product`, `zip_`
and `seeds`. A run's state lives only in its workdir (`metrics.jsonl` ends with a `"final": true` row
once finished), so a sweep started again skips finished runs and resumes interrupted ones: the command
is the same and `launch/main.py` resumes from the latest checkpoint. `run_local` runs them here;
`slurm.slurm_script` writes them as a SLURM array job.

Pure Python, no JAX: the sweep process starts no accelerator backend, so it holds nothing its runs need
(a sweep file may import JAX to count parameters; `jax.eval_shape` starts no backend either).
"""
from __future__ import annotations

import ast
import collections
import importlib.util
import inspect
import itertools
import os
import re
import shlex
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Union

from sparsenet_jax import signals
from sparsenet_jax.training import record
from sparsenet_jax.training import workdir_lock

Overrides = Dict[str, Any]
Grid = Union[Sequence[Mapping[str, Any]], Mapping[str, Sequence[Any]]]

_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]*')
_DEVICE_COUNT_FLAG = re.compile(r'--xla_force_host_platform_device_count=\S*')


class Run(NamedTuple):
  """One training run: `name` is its workdir under the sweep root, `config` a config file[:arg]."""
  name: str
  config: str
  overrides: Overrides = {}


def _points(grid: Grid, combine) -> List[Overrides]:
  if isinstance(grid, Mapping):
    keys = list(grid)
    return [dict(zip(keys, values)) for values in combine(*(list(grid[k]) for k in keys))]
  return [dict(point) for point in grid]


def _merge(points: Iterable[Mapping[str, Any]]) -> Overrides:
  merged = {}
  for point in points:
    clash = set(merged) & set(point)
    if clash:
      raise ValueError(f'override(s) {sorted(clash)} set twice in one grid point')
    merged.update(point)
  return merged


def product(*grids: Grid, **axes: Sequence[Any]) -> List[Overrides]:
  """Every combination: a grid is a list of override dicts or a dict of axes ({key: values}).

  product({'model.near': [0, 4]}, seeds(2)) -> near 0 seed 0, near 0 seed 1, near 4 seed 0, ...
  Keyword axes are for undotted keys: product(seed=[0, 1]).
  """
  parts = [_points(g, itertools.product) for g in grids]
  if axes:
    parts.append(_points(axes, itertools.product))
  return [_merge(combo) for combo in itertools.product(*parts)]


def zip_(*grids: Grid, **axes: Sequence[Any]) -> List[Overrides]:
  """Grids side by side, all the same length.

  zip_({'model.growth_rate': [12, 24], 'model.path': [7, 14]}) -> (12, 7), (24, 14).
  """
  parts = [_points(g, _strict_zip) for g in grids]
  if axes:
    parts.append(_points(axes, _strict_zip))
  return [_merge(points) for points in _strict_zip(*parts)]


def _strict_zip(*sequences):
  lengths = {len(s) for s in sequences}
  if len(lengths) > 1:
    raise ValueError(f'zip_ needs equal lengths, got {sorted(lengths)}')
  return zip(*sequences)


def seeds(n: int) -> List[Overrides]:
  """Seeds 0 .. n-1; the seed is always in a run's name, so adding seeds later keeps old workdirs."""
  if isinstance(n, bool) or not isinstance(n, int) or n < 1:
    raise ValueError(f'seeds must be a positive integer, got {n!r}')
  return [{'seed': s} for s in range(n)]


def _slug(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    text = '-'.join(_slug(v) for v in value)
  elif value is None:
    text = 'none'
  else:
    text = str(value)
  return re.sub(r'[^A-Za-z0-9.-]+', '-', text)


def runs(name: str, config: str, grid: Sequence[Mapping[str, Any]] = ({},),
         overrides: Optional[Mapping[str, Any]] = None) -> List[Run]:
  """One run per grid point, with `overrides` plus the point's.

  The name is `name` followed by each grid key's last part and value (`cifar10_v1_near4_seed0`);
  fixed `overrides` do not enter it, so say what they mean in `name`.
  """
  out = []
  for point in grid:
    suffix = ''.join(f'_{key.rsplit(".", 1)[-1]}{_slug(value)}' for key, value in point.items())
    out.append(Run(name + suffix, config, _merge([overrides or {}, point])))
  return out


def _parse_param(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def load(spec: str) -> List[Run]:
  """The runs of `path.py[:key=value,...]`: the params go to the file's `get_sweep` as Python literals.

  A comma starts a new parameter only before `key=`, so tuples need no quoting: `:layers=(28,52)`.
  """
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise ValueError(f'no sweep file {path!r}')
  params = {}
  for item in filter(None, re.split(r',(?=[A-Za-z_]\w*=)', arg)):
    key, eq, value = item.partition('=')
    if not eq or not key.isidentifier():
      raise ValueError(f'sweep parameters are key=value pairs separated by commas, got {item!r}')
    params[key] = _parse_param(value)
  module_spec = importlib.util.spec_from_file_location(
      '_sweep_' + re.sub(r'\W', '_', os.path.abspath(path)), path)
  module = importlib.util.module_from_spec(module_spec)
  try:  # a syntax error or whatever the file raises is one line, not a traceback
    module_spec.loader.exec_module(module)
  except Exception as e:
    raise ValueError(f'{path} cannot be loaded: {type(e).__name__}: {" ".join(str(e).split())}') from None
  if not callable(getattr(module, 'get_sweep', None)):
    raise ValueError(f'{path} defines no get_sweep()')
  try:
    inspect.signature(module.get_sweep).bind(**params)
    return validate(module.get_sweep(**params))
  except Exception as e:  # a bad parameter, or whatever get_sweep raises: one line, not a traceback
    raise ValueError(f'{path}: get_sweep(**{params}): {type(e).__name__}: {" ".join(str(e).split())}') from None


def validate(result: Any) -> List[Run]:
  """The runs, if they are a non-empty list of `Run`s with unique workdir-safe names."""
  if not isinstance(result, (list, tuple)) or not result or not all(isinstance(r, Run) for r in result):
    raise ValueError('get_sweep() must return a non-empty list of sweeps.Run')
  seen = set()
  for run in result:
    if not _NAME.fullmatch(run.name):
      raise ValueError(f'run name {run.name!r} is not a safe directory name')
    if run.name in seen:
      raise ValueError(f'run name {run.name!r} appears twice')
    seen.add(run.name)
  return list(result)


def check_configs(sweep_runs: Sequence[Run], repo: str) -> None:
  """Fails before anything starts if a run names a config file that does not exist."""
  for run in sweep_runs:
    path = run.config.partition(':')[0]
    if not os.path.isfile(os.path.join(repo, path)):
      raise ValueError(f'run {run.name}: no config file {path!r}')


def select(sweep_runs: Sequence[Run], pattern: Optional[str]) -> List[Run]:
  """The runs whose name `pattern` matches (re.search); all of them for no pattern."""
  if not pattern:
    return list(sweep_runs)
  try:
    regex = re.compile(pattern)
  except re.error as e:
    raise ValueError(f'--only={pattern!r} is not a regular expression: {e}') from None
  chosen = [r for r in sweep_runs if regex.search(r.name)]
  if not chosen:
    raise ValueError(f'--only={pattern!r} matches none of the {len(sweep_runs)} runs')
  return chosen


def flag_value(value: Any) -> str:
  """A value as ml_collections' config flags parse it: tuples as (8,12,16), strings bare."""
  if isinstance(value, (tuple, list)):
    return '(' + ','.join(flag_value(v) for v in value) + (',)' if len(value) == 1 else ')')
  return str(value)


def command(run: Run, workdir: str, python: str = sys.executable) -> List[str]:
  """The `launch/main.py` command of a run, relative to the repository root."""
  return [python, os.path.join('launch', 'main.py'), f'--config={run.config}', f'--workdir={workdir}',
          *(f'--config.{key}={flag_value(value)}' for key, value in run.overrides.items())]


def visible_gpus() -> List[str]:
  """GPUs this process may hand out: CUDA_VISIBLE_DEVICES if set, else what `nvidia-smi -L` lists."""
  env = os.environ.get('CUDA_VISIBLE_DEVICES')
  if env is not None:
    ids = [d.strip() for d in env.split(',')]
    return list(itertools.takewhile(lambda d: d and d != '-1', ids))  # CUDA stops at an invalid id
  try:
    out = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True, timeout=60)
  except (OSError, subprocess.TimeoutExpired):
    return []
  if out.returncode != 0:
    return []
  return [str(i) for i, _ in enumerate(line for line in out.stdout.splitlines() if line.startswith('GPU '))]


def slots(devices_per_run: int, max_parallel: Optional[int], gpus: Sequence[str],
          xla_flags: str = '') -> List[Dict[str, str]]:
  """The environment of each concurrent run: its own GPUs, or on CPU its own host devices.

  With GPUs, at most len(gpus) // devices_per_run runs at once; on CPU `max_parallel` (default 1)
  processes each see `devices_per_run` CPU devices.
  """
  for name, value in (('devices_per_run', devices_per_run), ('max_parallel', max_parallel)):
    if value is not None and value < 1:
      raise ValueError(f'--{name} must be at least 1, got {value}')
  if gpus:
    if devices_per_run > len(gpus):
      raise ValueError(f'--devices_per_run={devices_per_run} but only {len(gpus)} GPU(s) are visible')
    envs = [{'CUDA_VISIBLE_DEVICES': ','.join(gpus[i:i + devices_per_run])}
            for i in range(0, len(gpus) - devices_per_run + 1, devices_per_run)]
    return envs[:max_parallel]
  flags = _DEVICE_COUNT_FLAG.sub('', xla_flags).split()
  flags.append(f'--xla_force_host_platform_device_count={devices_per_run}')
  return [{'XLA_FLAGS': ' '.join(flags)} for _ in range(max_parallel or 1)]


def state(workdir: str) -> str:
  """A run's state for a sweep: 'busy' while a command holds its workdir (workdir_lock), else its record's
  status: 'done', 'partial' or 'new'."""
  return 'busy' if workdir_lock.holder(workdir) else record.status(workdir)


class Result(NamedTuple):
  """How a run ended in this sweep: 'skipped' (done before), 'busy' (another command holds its workdir:
  not started), 'ok' or 'failed'."""
  outcome: str
  returncode: Optional[int] = None
  seconds: float = 0.0


def _duration(seconds: float) -> str:
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


def run_local(sweep_runs: Sequence[Run], root: str, run_slots: Sequence[Mapping[str, str]],
              command_fn: Callable[[Run, str], List[str]] = command, cwd: Optional[str] = None,
              echo: Callable[[str], None] = print, poll_s: float = 0.5) -> Dict[str, Result]:
  """Runs every unfinished run, one per slot at a time, each logging to ROOT/<name>/sweep.log.

  A failed run does not stop the others; a run whose workdir another command holds is not started (nor
  written to) and is reported 'busy'. Interrupted (KeyboardInterrupt, SystemExit), the sweep stops its
  runs and waits for them, however many signals follow; started again, it resumes them.
  """
  results: Dict[str, Result] = {}
  queue = collections.deque()
  for run in sweep_runs:
    if record.status(os.path.join(root, run.name)) == 'done':
      results[run.name] = Result('skipped')
      echo(f'skip   {run.name}: finished before')
    else:
      queue.append(run)
  free = list(run_slots)
  running = {}

  def busy(run, holder):
    results[run.name] = Result('busy')
    echo(f'busy   {run.name}: {holder.describe()} holds its workdir; not started (start the sweep again '
         'once it is free)')
  try:
    while queue or running:
      while queue and free:
        run = queue.popleft()
        workdir = os.path.join(root, run.name)
        holder = workdir_lock.holder(workdir)
        if holder:
          busy(run, holder)
          continue
        env = free.pop(0)
        os.makedirs(workdir, exist_ok=True)
        log = open(os.path.join(workdir, 'sweep.log'), 'a')
        argv = command_fn(run, workdir)
        log.write(f'# {time.strftime("%Y-%m-%d %H:%M:%S")} {_env_text(env)} {shlex.join(argv)}\n')
        log.flush()
        proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
        running[proc] = (run, env, log, time.monotonic())
        echo(f'start  {run.name} ({_env_text(env)})')
      time.sleep(poll_s)
      for proc in [p for p in running if p.poll() is not None]:
        run, env, log, start = running.pop(proc)
        log.close()
        free.append(env)
        seconds = time.monotonic() - start
        workdir = os.path.join(root, run.name)
        finished = record.status(workdir) == 'done'
        holder = workdir_lock.holder(workdir) if proc.returncode else None
        if proc.returncode == 0 and finished:
          results[run.name] = Result('ok', 0, seconds)
          echo(f'ok     {run.name} in {_duration(seconds)}')
        elif holder:  # another command took the workdir between our look and the run's start
          busy(run, holder)
        else:
          why = f'exit {proc.returncode}' if proc.returncode else 'exit 0 but no final row in metrics.jsonl'
          results[run.name] = Result('failed', proc.returncode, seconds)
          echo(f'FAILED {run.name} ({why}), see {os.path.join(workdir, "sweep.log")}')
  finally:
    with signals.deferred():  # the runs are stopped and waited for even if more signals come
      for proc in running:
        proc.terminate()  # a run saves a checkpoint and exits
      for proc, (run, _, log, _) in running.items():
        try:
          proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
          proc.kill()
          proc.wait()
        log.close()
        echo(f'stop   {run.name}: interrupted, resumes when the sweep is started again')
  return results


def _env_text(env: Mapping[str, str]) -> str:
  return ' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())


def summary(sweep_runs: Sequence[Run], root: str, results: Mapping[str, Result]) -> List[str]:
  """One line per run: outcome, time and the final eval error if it has one."""
  width = max(len(r.name) for r in sweep_runs)
  lines = []
  for run in sweep_runs:
    result = results.get(run.name, Result('not run'))
    row = record.final_row(os.path.join(root, run.name)) or {}
    error = row.get('eval_error')
    outcome = result.outcome + (f' (exit {result.returncode})' if result.outcome == 'failed' else '')
    lines.append(f'{run.name:<{width}}  {outcome:<16} {_duration(result.seconds):>10}  '
                 f'eval_error={"-" if error is None else f"{error:.4f}"}')
  return lines
