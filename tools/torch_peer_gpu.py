"""The PyTorch peer on a GPU: torchvision's DenseNet as CIFAR DenseNet-BC, timed like launch/bench.py.

The model comes from the shared CPU peer (`shared/tools/torch_peer.py`, passed with --peer) so both
machines time the same network; this script only adds CUDA timing (synchronised, median per step),
cuDNN autotuning, and optional bf16 autocast / channels-last. Not a project dependency: it needs torch
and torchvision, which the GPU machines have.

  python tools/torch_peer_gpu.py --peer=../shared/tools/torch_peer.py --model densenet_bc_100 --batch 64
"""
import argparse
import importlib.util
import json
import statistics
import time

import torch
import torch.nn as nn


def load_peer(path):
  spec = importlib.util.spec_from_file_location('torch_peer', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def timed(fn, steps):
  """Median seconds of `fn()` over `steps` calls, each synchronised, after 3 warm-up calls."""
  for _ in range(3):
    fn()
  torch.cuda.synchronize()
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--peer', required=True)
  ap.add_argument('--model', default='densenet_bc_100')
  ap.add_argument('--batch', type=int, default=64)
  ap.add_argument('--steps', type=int, default=20)
  ap.add_argument('--precision', choices=['fp32', 'bf16'], default='fp32')
  ap.add_argument('--channels_last', action='store_true')
  a = ap.parse_args()
  torch.backends.cudnn.benchmark = True
  torch.manual_seed(0)
  fmt = torch.channels_last if a.channels_last else torch.contiguous_format
  model = load_peer(a.peer).build(a.model).cuda().to(memory_format=fmt)
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
  x = torch.randn(a.batch, 3, 32, 32, device='cuda').to(memory_format=fmt)
  y = torch.randint(0, 10, (a.batch,), device='cuda')
  loss_fn = nn.CrossEntropyLoss()
  def autocast():
    return torch.autocast('cuda', dtype=torch.bfloat16, enabled=a.precision == 'bf16')

  def train_step():
    opt.zero_grad(set_to_none=True)
    with autocast():
      loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()

  def eval_step():
    with torch.no_grad(), autocast():
      model(x)

  model.train()
  torch.cuda.reset_peak_memory_stats()
  train_s = timed(train_step, a.steps)
  peak = torch.cuda.max_memory_allocated()
  model.eval()
  eval_s = timed(eval_step, a.steps)
  print(json.dumps({
      'model': a.model, 'framework': f'torch {torch.__version__}', 'device': torch.cuda.get_device_name(),
      'batch_size': a.batch, 'precision': a.precision, 'channels_last': a.channels_last,
      'params': sum(p.numel() for p in model.parameters()),
      'train_images_per_sec': round(a.batch / train_s, 1), 'train_step_ms_median': round(train_s * 1e3, 2),
      'eval_images_per_sec': round(a.batch / eval_s, 1), 'eval_step_ms_median': round(eval_s * 1e3, 2),
      'train_peak_memory_bytes': peak}), flush=True)


if __name__ == '__main__':
  main()
