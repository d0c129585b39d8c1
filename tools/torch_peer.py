"""The PyTorch peer: torchvision's DenseNet as CIFAR DenseNet-BC, timed like launch/bench.py, on a CPU or a GPU.

What a torchvision user gets: eager mode, NCHW (or `--channels_last`), the same network as our
densenet_bc_100 (769,162 parameters, printed) with the CIFAR stem (one 3x3 conv, no stride, no pooling),
the paper's SGD (Nesterov 0.9, L2 1e-4), batch 64 of 32x32x3. Every step is timed to completion (CUDA
synchronised on a GPU) and the median is reported, after warm-up steps. On the CPU it uses `--threads`
threads (default: one per core of this process, as XLA:CPU does). Not a project dependency: run it from an
environment with torch and torchvision (`pip install torch torchvision`); `tools/peer_ratios.py` alternates
it with launch/bench.py and prints the ratios.

  python tools/torch_peer.py --model=densenet_bc_100 --batch=64 --steps=8 [--channels_last]
  python tools/torch_peer.py --device=cuda --steps=20 [--precision=bf16 --channels_last]
  python tools/torch_peer.py --turns   # a step each time stdin names a mode, as launch/bench.py --turns
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
from torchvision.models import DenseNet

# name: (growth rate, layers per block, stem features): torchvision's DenseNet with DenseNet-BC's numbers.
MODELS = {
    'densenet_bc_100': (12, (16, 16, 16), 24),
    'densenet_bc_250': (24, (41, 41, 41), 48),
    'densenet_bc_190': (40, (31, 31, 31), 80),
}


def build(name, num_classes=10):
  """torchvision's DenseNet-BC (bottleneck width 4k, compression 0.5) with the CIFAR stem."""
  k, blocks, stem = MODELS[name]
  model = DenseNet(growth_rate=k, block_config=blocks, num_init_features=stem, bn_size=4, drop_rate=0,
                   num_classes=num_classes)
  model.features.conv0 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
  model.features.norm0 = nn.Identity()
  model.features.relu0 = nn.Identity()
  model.features.pool0 = nn.Identity()
  return model


def timed(fn, steps, warmup, sync):
  """Median seconds of `fn()` over `steps` calls, each completed (`sync`), after `warmup` calls."""
  for _ in range(warmup):
    fn()
  sync()
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    sync()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def taking_turns(steps, set_mode, warmup, sync):
  """{mode: median seconds} of the steps stdin asks for, one line (a mode) each, timed and printed at once."""
  for mode, fn in steps.items():
    set_mode[mode]()
    for _ in range(warmup):
      fn()
  sync()
  print(json.dumps({'ready': True}), flush=True)
  times = {mode: [] for mode in steps}
  for line in sys.stdin:
    mode = line.strip()
    if mode not in steps:
      sys.exit(f'--turns: stdin named {mode!r}; this run has {", ".join(steps)}')
    set_mode[mode]()
    t = time.perf_counter()
    steps[mode]()
    sync()
    times[mode].append(time.perf_counter() - t)
    print(json.dumps({'mode': mode, 'seconds': times[mode][-1]}), flush=True)
  return {mode: statistics.median(t) for mode, t in times.items() if t}


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--model', default='densenet_bc_100', choices=sorted(MODELS))
  ap.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
  ap.add_argument('--batch', type=int, default=64)
  ap.add_argument('--steps', type=int, default=8)
  ap.add_argument('--warmup', type=int, default=2)
  ap.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)), help='CPU threads')
  ap.add_argument('--precision', choices=['fp32', 'bf16'], default='fp32')
  ap.add_argument('--channels_last', action='store_true')
  ap.add_argument('--mode', default='train,eval', help='train, eval or train,eval')
  ap.add_argument('--turns', action='store_true', help='after --warmup steps of each mode, print {"ready": '
                  'true}, then time one step of the mode each line of stdin names, printing its seconds, until '
                  'the input ends; then the row as usual, from those steps (launch/bench.py --turns)')
  a = ap.parse_args()
  cuda = a.device == 'cuda'
  if cuda:
    torch.backends.cudnn.benchmark = True
  else:
    torch.set_num_threads(a.threads)
  torch.manual_seed(0)
  fmt = torch.channels_last if a.channels_last else torch.contiguous_format
  model = build(a.model).to(a.device).to(memory_format=fmt)
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
  x = torch.randn(a.batch, 3, 32, 32, device=a.device).to(memory_format=fmt)
  y = torch.randint(0, 10, (a.batch,), device=a.device)
  loss_fn = nn.CrossEntropyLoss()
  sync = torch.cuda.synchronize if cuda else (lambda: None)

  def autocast():
    return torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.precision == 'bf16')

  def train_step():
    opt.zero_grad(set_to_none=True)
    with autocast():
      loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()

  def eval_step():
    with torch.no_grad(), autocast():
      model(x)

  row = {'model': a.model, 'framework': f'torch {torch.__version__}', 'device': a.device,
         'threads': None if cuda else torch.get_num_threads(), 'batch_size': a.batch, 'precision': a.precision,
         'channels_last': a.channels_last, 'params': sum(p.numel() for p in model.parameters())}
  modes = a.mode.split(',')
  step, set_mode = {'train': train_step, 'eval': eval_step}, {'train': model.train, 'eval': model.eval}
  if a.turns:
    times = taking_turns({m: step[m] for m in modes}, set_mode, a.warmup, sync)
  else:
    times = {}
    for mode in modes:
      set_mode[mode]()
      if cuda and mode == 'train':
        torch.cuda.reset_peak_memory_stats()
      times[mode] = timed(step[mode], a.steps, a.warmup, sync)
  for mode, seconds in times.items():
    row[f'{mode}_images_per_sec'] = round(a.batch / seconds, 2)
    row[f'{mode}_step_ms_median'] = round(seconds * 1e3, 2)
  if cuda and 'train' in modes:
    row['train_peak_memory_bytes'] = torch.cuda.max_memory_allocated()
  print(json.dumps(row), flush=True)


if __name__ == '__main__':
  main()
