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
                  'right after ours: what the split into one device per core buys')
  ap.add_argument('--torch_kept_memory', action='store_true', help="also the peer with glibc's malloc set "
                  'as ours sets it (sparsenet_jax/training/host_memory.py), NCHW and channels-last')
  a = ap.parse_args()
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
  env.update(item.split('=', 1) for item in a.bench_env)
  peer = [a.torch_python, PEER, '--model=densenet_bc_100', '--batch=64', f'--steps={a.peer_steps}']
  peers = {'nchw': (peer, None), 'channels_last': (peer + ['--channels_last'], None)}
  if a.torch_kept_memory:
    kept = dict(os.environ, **host_memory.ENVIRONMENT)
    peers.update({'nchw, kept memory': (peer, kept), 'channels_last, kept memory': (peer + ['--channels_last'], kept)})
  models = a.models.split(',')
  first = models[0]

  def bench(model, rounds=a.rounds):
    return [sys.executable, BENCH, f'--model={model}', '--mode=train,eval', '--batch_size=64',
            f'--rounds={rounds}', '--json', '--nocold_compile']

  ratios = {}
  print(f'# {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, load {os.getloadavg()[0]:.1f}', flush=True)
  for model in models:  # fills the persistent compilation cache; not counted
    json_lines(bench(model, 1), env, show=False)
  if a.one_device:
    json_lines(bench(first, 1), dict(env, XLA_FLAGS=ONE_DEVICE), show=False)
  for repeat in range(a.repeats):
    names = list(peers) if repeat % 2 == 0 else list(peers)[::-1]
    before, after = names[:len(names) // 2], names[len(names) // 2:]  # half the peers on each side of ours
    torch_rows = {name: json_lines(*peers[name])[0] for name in before}
    ours = {(m, row['mode']): row for m in models for row in json_lines(bench(m), env)}
    if a.one_device:
      one = json_lines(bench(first), dict(env, XLA_FLAGS=ONE_DEVICE))
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


def show(ratios, repeat):
  """Every ratio so far, repeat by repeat (a run cut short still leaves its finished repeats)."""
  print(f'# ratios after repeat {repeat + 1}, {time.strftime("%H:%M UTC", time.gmtime())}, '
        f'load {os.getloadavg()[0]:.1f}', flush=True)
  for key, values in ratios.items():
    print(f'{key}: ' + ', '.join(f'{v:.2f}x' for v in values) + f' (mean {statistics.mean(values):.2f}x)',
          flush=True)


if __name__ == '__main__':
  main()
