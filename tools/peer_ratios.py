"""Our train and eval steps against PyTorch's on this machine, as ratios from alternating processes.

Each repeat runs, one process after another: the PyTorch peer in NCHW (`tools/torch_peer.py`), our
`launch/bench.py` (densenet_bc_100, then sparsenet_bc_v1, each in a process of its own with its train
and eval steps round robin, as the peer's process and a training run hold one model; models may carry
bench's options, `densenet_bc_100:matmul`), with `--one_device` our first model again on one device
(what the split into one device per core buys), and the peer in channels-last; the next repeat runs the
peers in the other order. Before the first repeat each of our processes runs once untimed, so that every
timed one finds its steps in the persistent cache (a compile in the process slows the steps after it:
BENCHMARKS.md). With `--torch_kept_memory` the peer also runs, NCHW and channels-last, with glibc's
malloc set as ours sets it (`host_memory.ENVIRONMENT`): the like-for-like comparison, half the peers
before ours and half after. A ratio divides our images/s by the peer's (or ours by ours) from the same
repeat, so both sides share the machine's minutes (BENCHMARKS.md: a shared CPU moves by up to 2x between
minutes). Prints every process's JSON line and, after each repeat, one line per ratio.

  python tools/peer_ratios.py --torch_python=VENV/bin/python --repeats=2 --one_device --torch_kept_memory

With `--turns=N` the processes do not run one after another but side by side, idle in turn: each of our
models and every peer are started once, warmed up, and then each runs one step while the others wait
on their input, in turn, N turns of train steps and N of eval steps (`launch/bench.py --turns`,
`tools/torch_peer.py --turns`), the order reversed every other turn. Each turn's ratio compares steps
that ran seconds apart; the median and quartiles of the N are printed, for each half of the turns too.

  python tools/peer_ratios.py --torch_python=VENV/bin/python --turns=12 --torch_kept_memory

`--one_device` with `--turns` adds our first model on one device as a process of its own; with `--peers=`
(none) and `--bench_args` it measures what the split into one device per core buys a smaller model:

  python tools/peer_ratios.py --torch_python=VENV/bin/python --turns=20 --peers= --one_device \
      --models=sparsenet_bc_v1 --bench_args='--blocks=4,4,4 --image_size=16 --cpu_split=always'

Each process of ours keeps its largest step's memory (training/host_memory.py). With the peers too, seven
processes, two of them densenet_bc_100, left this 23 GiB machine reclaiming page cache (kswapd busy), a
thread stalled past XLA:CPU's 40 s limit on a collective, and XLA aborted that process: leave
`--one_device` out when the peers run.

VENV is an environment with torch and torchvision (the project does not depend on them).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from sparsenet_jax.training import host_memory  # noqa: E402
PEER = os.path.join(ROOT, 'tools', 'torch_peer.py')
BENCH = os.path.join(ROOT, 'launch', 'bench.py')
ONE_DEVICE = '--xla_force_host_platform_device_count=1'


def json_lines(command, env=None, show=True):
  """The JSON objects a command prints, one per line (printed too, if `show`); its stderr is shown only
  if it fails."""
  out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
  if out.returncode:
    sys.exit(f'{" ".join(command)} failed ({out.returncode}):\n{out.stderr[-3000:]}')
  rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{')]
  for row in rows if show else ():
    print(json.dumps(row), flush=True)
  return rows


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--torch_python', required=True, help='a Python with torch and torchvision')
  ap.add_argument('--repeats', type=int, default=2)
  ap.add_argument('--peer_steps', type=int, default=8)
  ap.add_argument('--rounds', type=int, default=5, help="bench.py --rounds: steps per row of ours")
  ap.add_argument('--models', default='densenet_bc_100,sparsenet_bc_v1', help='ours; the first is the peer')
  ap.add_argument('--bench_env', action='append', default=[], help='NAME=VALUE for our process')
  ap.add_argument('--one_device', action='store_true', help='also ours on one device (the first model), '
                  'right after ours (with --turns: a process of its own): what the split into one device per '
                  'core buys')
  ap.add_argument('--peers', default='nchw,channels_last', help="PyTorch's layouts to run (nchw, channels_last; "
                  "'' for none: ours alone, e.g. with --one_device)")
  ap.add_argument('--bench_args', default='', help="more flags for each of our processes, e.g. '--blocks=4,4,4 "
                  "--image_size=8': a smaller model than the presets")
  ap.add_argument('--torch_kept_memory', action='store_true', help="also the peer with glibc's malloc set "
                  'as ours sets it (sparsenet_jax/training/host_memory.py), NCHW and channels-last')
  ap.add_argument('--turns', type=int, default=0, help='instead of --repeats: ours and the peers side by side, '
                  'one step each in turn, this many turns per mode')
  ap.add_argument('--gap', type=float, default=0.3, help='--turns: seconds between two steps (idle threads park)')
  a = ap.parse_args()
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
  env.update(item.split('=', 1) for item in a.bench_env)
  peer = [a.torch_python, PEER, '--model=densenet_bc_100', '--batch=64', f'--steps={a.peer_steps}']
  layouts = {'nchw': peer, 'channels_last': peer + ['--channels_last']}
  chosen = [name for name in a.peers.split(',') if name]
  if set(chosen) - set(layouts):
    sys.exit(f'--peers={a.peers}: name nchw, channels_last or both')
  peers = {name: (layouts[name], None) for name in chosen}
  if a.torch_kept_memory:
    kept = dict(os.environ, **host_memory.ENVIRONMENT)
    peers.update({f'{name}, kept memory': (layouts[name], kept) for name in chosen})
  models = a.models.split(',')
  first = models[0]

  def bench(model, timing=f'--rounds={a.rounds}'):
    return [sys.executable, BENCH, f'--model={model}', '--mode=train,eval', '--batch_size=64', timing, '--json',
            '--nocold_compile', *a.bench_args.split()]

  print(f'# {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, load {os.getloadavg()[0]:.1f}', flush=True)
  one_env = dict(env, XLA_FLAGS=ONE_DEVICE)
  for model in models:  # fills the persistent compilation cache; not counted
    json_lines(bench(model, '--rounds=1'), env, show=False)
  if a.one_device:
    json_lines(bench(first, '--rounds=1'), one_env, show=False)
  if a.turns:
    ours = {model: (bench(model, '--turns'), env) for model in models}
    if a.one_device:
      ours[f'{first} on 1 device'] = (bench(first, '--turns'), one_env)
    return take_turns(a, ours, peers)
  if not peers:
    sys.exit('--peers= (none) takes --turns')
  ratios = {}
  for repeat in range(a.repeats):
    names = list(peers) if repeat % 2 == 0 else list(peers)[::-1]
    before, after = names[:len(names) // 2], names[len(names) // 2:]  # half the peers on each side of ours
    torch_rows = {name: json_lines(*peers[name])[0] for name in before}
    ours = {(m, row['mode']): row for m in models for row in json_lines(bench(m), env)}
    if a.one_device:
      one = json_lines(bench(first), one_env)
      for row in one:
        key = f'{first} {row["mode"]}: {ours[first, row["mode"]]["devices"]} devices / 1 device'
        ratios.setdefault(key, []).append(ours[first, row['mode']]['images_per_sec'] / row['images_per_sec'])
    torch_rows.update({name: json_lines(*peers[name])[0] for name in after})
    for mode in ('train', 'eval'):
      for name in peers:
        key = f'{first} {mode} / torch {name}'
        theirs = torch_rows[name][f'{mode}_images_per_sec']
        ratios.setdefault(key, []).append(ours[first, mode]['images_per_sec'] / theirs)
      for other in models[1:]:
        ratios.setdefault(f'{other} {mode} / {first} {mode}', []).append(
            ours[other, mode]['images_per_sec'] / ours[first, mode]['images_per_sec'])
    show(ratios, repeat)


def take_turns(a, ours, peers):
  """`--turns`: every process (`ours` and `peers`: {name: (command, environment)}) started once; then, per
  mode, each runs one step in turn while the others wait. Each turn gives a ratio per peer, our first
  model's images/s over the peer's (one batch size: its step time over ours), and per other model of ours,
  its images/s over our first's."""
  commands = {**ours, **{f'torch {name}': (cmd + ['--turns'], env) for name, (cmd, env) in peers.items()}}
  procs = {}
  try:
    for name, (command, process_env) in commands.items():  # one at a time: each warms up alone
      procs[name] = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                     env=process_env)
      reply(procs[name], name)
    ratios = steps_in_turn(a, procs, list(ours))
    for name, proc in procs.items():
      proc.stdin.close()
      for line in proc.stdout:
        print(line.rstrip(), flush=True)
      if proc.wait():
        sys.exit(f'{name} failed ({proc.returncode})')
  finally:  # after a failure no process is left waiting on its input
    for proc in procs.values():
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  print(f'# ratios of {a.turns} turns each (median [quartiles]; first half, second half), '
        f'{time.strftime("%H:%M UTC", time.gmtime())}, load {os.getloadavg()[0]:.1f}', flush=True)
  half = a.turns // 2
  for key, values in ratios.items():
    print(f'{key}: {spread(values)}; {spread(values[:half])}, {spread(values[half:])}', flush=True)


def steps_in_turn(a, procs, ours):
  """{'NAME MODE / NAME MODE': [ratio of each turn]}: `a.turns` turns of train steps, then of eval steps;
  every other turn runs the processes in the reverse order. `ours` names our processes, the first first."""
  print(f'# turns from {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, load {os.getloadavg()[0]:.1f}',
        flush=True)
  ratios = {}
  for mode in ('train', 'eval'):
    for turn in range(a.turns):
      seconds = {}
      for name in (list(procs) if turn % 2 == 0 else list(procs)[::-1]):
        time.sleep(a.gap)
        procs[name].stdin.write(mode + '\n')
        procs[name].stdin.flush()
        seconds[name] = reply(procs[name], name)['seconds']
      print(json.dumps({'mode': mode, 'turn': turn + 1, **{n: round(s, 4) for n, s in seconds.items()}}), flush=True)
      for name in procs:
        if name != ours[0]:
          over, under = (name, ours[0]) if name in ours else (ours[0], name)
          ratios.setdefault(f'{over} {mode} / {under} {mode}', []).append(seconds[under] / seconds[over])
  return ratios


def reply(proc, name):
  """The next JSON line `proc` prints (its other lines pass through)."""
  for line in proc.stdout:
    if line.startswith('{'):
      return json.loads(line)
    print(line.rstrip(), flush=True)
  sys.exit(f'{name} ended before it answered ({proc.wait()})')


def spread(values):
  """'median [first quartile, third quartile]' of ratios."""
  if len(values) < 2:
    return ', '.join(f'{v:.2f}x' for v in values)
  q1, _, q3 = statistics.quantiles(values, n=4, method='inclusive')
  return f'{statistics.median(values):.2f}x [{q1:.2f}, {q3:.2f}]'


def show(ratios, repeat):
  """Every ratio so far, repeat by repeat (a run cut short still leaves its finished repeats)."""
  print(f'# ratios after repeat {repeat + 1}, {time.strftime("%H:%M UTC", time.gmtime())}, '
        f'load {os.getloadavg()[0]:.1f}', flush=True)
  for key, values in ratios.items():
    print(f'{key}: ' + ', '.join(f'{v:.2f}x' for v in values) + f' (mean {statistics.mean(values):.2f}x)',
          flush=True)


if __name__ == '__main__':
  main()
