r"""The 3x3 convolution of the bottleneck layers (4k -> k channels) on XLA:CPU, formulated three ways.

- `lax.conv` (XLA:CPU's YNNPACK fusion), its backward pass by autodiff;
- `conv2d`, the models' 3x3 kernel on XLA:CPU (`model/kernels.py`: the backward pass as forward convs);
- Winograd F(2x2, 3x3): input tiles transformed with strided reshapes (no gathers), 16 batched
  `(tiles, C) x (C, O)` matmuls, the output transform and an interleave: 2.25x fewer multiplications;
- both compiled with Eigen instead of YNNPACK (`xla_cpu_experimental_ynn_fusion_type=''`, a
  per-compile option, so it could serve one step only).

Forward and forward+backward (input and kernel gradients) are timed round robin in one process, median of
`--repeats`; prints each formulation's time and its ratio to `lax.conv`, and the largest difference of its
values from `lax.conv`'s. A probe for BENCHMARKS.md: the models use whatever measures faster.

  python tools/conv3x3_probe.py --batch=32 --repeats=20
"""
import argparse
import statistics
import time

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from sparsenet_jax.model import kernels

_B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)


def conv(x, k):
  return lax.conv_general_dilated(x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _transform_axis(x, axis):
  """B^T along `axis` of a padded input (length 2t + 2) -> a new leading axis of 4, length t along `axis`."""
  n = x.shape[axis]
  pairs = x.reshape(*x.shape[:axis], n // 2, 2, *x.shape[axis + 1:])
  even, odd = jnp.moveaxis(pairs, axis + 1, 0)  # rows 0, 2, ... and 1, 3, ...
  cut = [slice(None)] * even.ndim
  lo, hi = list(cut), list(cut)
  lo[axis], hi[axis] = slice(0, -1), slice(1, None)
  e0, e1, o0, o1 = even[tuple(lo)], even[tuple(hi)], odd[tuple(lo)], odd[tuple(hi)]
  return jnp.stack([e0 - e1, o0 + e1, e1 - o0, o0 - o1])


def winograd(x, k):
  """F(2x2, 3x3), stride 1, SAME padding, even H and W."""
  n, h, w, c = x.shape
  o = k.shape[-1]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  v = _transform_axis(xp, 1)                      # (4, N, h/2, W+2, C)
  v = jnp.moveaxis(_transform_axis(v, 3), 0, 1)   # (4, 4, N, h/2, w/2, C)
  u = jnp.einsum('ai,ijco,bj->abco', _G, k, _G)   # (4, 4, C, O)
  m = jnp.einsum('abtc,abco->abto', v.reshape(4, 4, -1, c), u)  # 16 batched matmuls
  y = jnp.stack([m[0] + m[1] + m[2], m[1] - m[2] - m[3]])        # A^T along the first axis
  y = jnp.stack([y[:, 0] + y[:, 1] + y[:, 2], y[:, 1] - y[:, 2] - y[:, 3]], 1)
  y = y.reshape(2, 2, n, h // 2, w // 2, o)
  return y.transpose(2, 3, 0, 4, 1, 5).reshape(n, h, w, o)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--batch', type=int, default=32, help='per device: 64 split over 2 cores')
  ap.add_argument('--repeats', type=int, default=20)
  a = ap.parse_args()
  rng = np.random.default_rng(0)
  shapes = [((a.batch, 32, 32, 48), 12), ((a.batch, 16, 16, 48), 12), ((a.batch, 8, 8, 48), 12)]
  for shape, features in shapes:
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, shape[-1], features)), jnp.float32)
    dy = jnp.asarray(rng.normal(size=(*shape[:-1], features)), jnp.float32)
    fns = {}
    eigen = {'xla_cpu_experimental_ynn_fusion_type': ''}
    conv2d = lambda x, k: kernels.conv2d(x, k, 1)  # noqa: E731
    for name, f, options in (('lax.conv', conv, None), ('conv2d', conv2d, None), ('winograd', winograd, None),
                             ('eigen', conv, eigen), ('conv2d+eigen', conv2d, eigen)):
      fwd = jax.jit(f).lower(x, k).compile(compiler_options=options)
      grad = jax.jit(jax.grad(lambda x, k, f=f: jnp.sum(f(x, k) * dy), argnums=(0, 1))).lower(x, k).compile(
          compiler_options=options)
      fns[name] = (fwd, grad)
    reference = fns['lax.conv'][0](x, k)
    times = {(name, part): [] for name in fns for part in (0, 1)}
    for _ in range(a.repeats):
      for name, pair in fns.items():
        for part, fn in enumerate(pair):
          t = time.perf_counter()
          jax.block_until_ready(fn(x, k))
          times[name, part].append(time.perf_counter() - t)
    med = {key: statistics.median(v) for key, v in times.items()}
    print(f'# {shape} x (3, 3, {shape[-1]}, {features})')
    for name in fns:
      error = float(jnp.max(jnp.abs(fns[name][0](x, k) - reference)))
      print(f'{name:12s} forward {med[name, 0] * 1e3:7.2f} ms ({med["lax.conv", 0] / med[name, 0]:.2f}x lax.conv), '
            f'forward+backward {med[name, 1] * 1e3:7.2f} ms ({med["lax.conv", 1] / med[name, 1]:.2f}x), '
            f'max |difference| {error:.1e}', flush=True)


if __name__ == '__main__':
  main()
