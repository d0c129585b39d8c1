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
"""
import argparse
import json
import os
import statistics
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
  if 'train' in modes:
    model.train()
    if cuda:
      torch.cuda.reset_peak_memory_stats()
    train_s = timed(train_step, a.steps, a.warmup, sync)
    row.update(train_images_per_sec=round(a.batch / train_s, 2), train_step_ms_median=round(train_s * 1e3, 2))
    if cuda:
      row['train_peak_memory_bytes'] = torch.cuda.max_memory_allocated()
  if 'eval' in modes:
    model.eval()
    eval_s = timed(eval_step, a.steps, a.warmup, sync)
    row.update(eval_images_per_sec=round(a.batch / eval_s, 2), eval_step_ms_median=round(eval_s * 1e3, 2))
  print(json.dumps(row), flush=True)


if __name__ == '__main__':
  main()
