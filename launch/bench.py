r"""Throughput, compile time and peak memory of one model's train or eval step, on synthetic data.

  python launch/bench.py --model=densenet_bc_100 --batch_size=64 --steps=10 --json
  python launch/bench.py --model=all --mode=train,eval --steps=20 --json   # every preset, both steps
  python launch/bench.py --model=densenet_bc_100,densenet_bc_100:remat,sparsenet_bc_v1:scan --rounds=3
      # compile all, then one step of each in turn, 3 rounds: ratios that share the machine's noise
  python launch/bench.py --model=sparsenet_abc_v4 --scan --steps=0   # compile time and memory only
  python launch/bench.py --model=densenet_bc_190 --remat --steps=0
  python launch/bench.py --model=sparsenet_bc_v1 --sweep_depth=8,16,24 --steps=0 \
      --plot=docs/memory_vs_depth.png           # every --sweep_models at 3 blocks of each depth

The train step is the paper's: softmax cross-entropy, L2 weight decay 1e-4 added to the gradient (as
PyTorch's SGD does), SGD with Nesterov momentum 0.9, BatchNorm statistics updated, the train state
donated. Compilation (trace, lowering, XLA) is excluded from the timing and reported as `compile_seconds`.
The persistent compilation cache is on, but by default only after the first step compile, so that number
is a real compile (`--nocold_compile` lets it load from the cache; `compile_cache_hit` says if it did).
Every step is timed to completion (`block_until_ready`); the median step is reported.
A model may carry options after colons, `NAME:scan:remat:bf16`, which override the flags for that row.
"""
import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt


import jax
import jax.numpy as jnp
import optax

from sparsenet_jax.model import counting
from sparsenet_jax.model import presets

flags.DEFINE_list('model', ['densenet_bc_100'], 'Preset names (NAME[:scan][:remat][:bf16]), or "all".')
flags.DEFINE_list('blocks', None, 'Override the layers per block, e.g. 12,12,12.')
flags.DEFINE_integer('batch_size', 64, 'Images per step.')
flags.DEFINE_integer('steps', 10, 'Timed steps after one warm-up step; 0 compiles only.')
flags.DEFINE_integer('rounds', 0, 'Instead of --steps: compile every row first, then time one step of each '
                     'row in turn, this many rounds (machine noise then hits every row alike).')
flags.DEFINE_list('mode', ['train'], 'Which steps to time: train, eval or both (train,eval).')
flags.DEFINE_enum('precision', 'fp32', ['fp32', 'bf16'], 'Compute precision; parameters stay fp32.')
flags.DEFINE_bool('remat', False, 'Recompute every layer in the backward pass.')
flags.DEFINE_bool('scan', False, 'Run the capped layers of each block as one scan.')
flags.DEFINE_integer('num_classes', 10, 'Classifier outputs.')
flags.DEFINE_integer('image_size', 32, 'Input height and width.')
flags.DEFINE_string('compilation_cache_dir', os.path.expanduser('~/.cache/sparsenet_jax/xla'),
                    'JAX persistent compilation cache; empty disables it.')
flags.DEFINE_bool('cold_compile', True, 'Time the step compile with the persistent cache bypassed.')
flags.DEFINE_list('sweep_depth', None, 'Layers per block to sweep (3 equal blocks each), e.g. 8,16,24.')
flags.DEFINE_list('sweep_models', ['sparsenet_bc_v1', 'densenet_bc_100'], 'Presets of --sweep_depth.')
flags.DEFINE_string('plot', None, 'With --sweep_depth: write peak memory (and speed) vs depth here.')
flags.DEFINE_bool('json', False, 'One JSON object per line instead of text.')
FLAGS = flags.FLAGS

WEIGHT_DECAY = 1e-4
_CACHE_HITS = []
jax.monitoring.register_event_listener(
    lambda event, **kw: _CACHE_HITS.append(event) if event == '/jax/compilation_cache/cache_hits' else None)


def make_steps(model, tx):
  """(train_step, eval_step); train_step(state, x, y) -> (state, loss), its state donated."""
  def train_step(state, x, y):
    def loss_fn(params):
      logits, updates = model.apply({'params': params, 'batch_stats': state['batch_stats']}, x,
                                    train=True, mutable=['batch_stats'])
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates
    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    deltas, opt_state = tx.update(grads, state['opt_state'], state['params'])
    return {'params': optax.apply_updates(state['params'], deltas), 'opt_state': opt_state,
            'batch_stats': updates['batch_stats']}, loss

  def eval_step(state, x, y):
    logits = model.apply({'params': state['params'], 'batch_stats': state['batch_stats']}, x)
    return state, optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)


def peak_memory(compiled):
  """Arguments + outputs + temporaries, less what donation aliases: what the step holds at once."""
  m = compiled.memory_analysis()
  total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
  return int(total), int(m.temp_size_in_bytes)


def enable_compilation_cache():
  if FLAGS.compilation_cache_dir and not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', FLAGS.compilation_cache_dir)


OPTIONS = ('scan', 'remat', 'bf16')


def parse_model(spec):
  """'NAME[:option...]' -> (NAME, {scan, remat, precision}) with the flags as defaults."""
  name, *options = spec.split(':')
  presets.hyperparameters(name)  # unknown names fail here, before the first (slow) compile
  unknown = set(options) - set(OPTIONS)
  if unknown:
    raise ValueError(f'unknown option(s) {sorted(unknown)} in {spec!r}; allowed: {", ".join(OPTIONS)}')
  return name, {'scan': FLAGS.scan or 'scan' in options, 'remat': FLAGS.remat or 'remat' in options,
                'precision': 'bf16' if 'bf16' in options else FLAGS.precision}


class Row:
  """One benchmark row: the model built and its step compiled; `step()` times one step."""

  def __init__(self, name, options, overrides, mode):
    dtype = jnp.bfloat16 if options['precision'] == 'bf16' else jnp.float32
    model = presets.build(name, num_classes=FLAGS.num_classes, dtype=dtype, remat=options['remat'],
                          scan=options['scan'], **overrides)
    shape = (FLAGS.image_size, FLAGS.image_size, 3)
    tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.sgd(0.1, momentum=0.9, nesterov=True))

    def init(key):
      variables = model.init(key, jnp.zeros((1, *shape)), train=False)
      return {'params': variables['params'], 'batch_stats': variables['batch_stats'],
              'opt_state': tx.init(variables['params'])}

    x = jax.ShapeDtypeStruct((FLAGS.batch_size, *shape), jnp.float32)
    y = jax.ShapeDtypeStruct((FLAGS.batch_size,), jnp.int32)
    train_step, eval_step = make_steps(model, tx)
    step = train_step if mode == 'train' else eval_step
    _CACHE_HITS.clear()
    start = time.perf_counter()
    self.compiled = step.lower(jax.eval_shape(init, jax.random.key(0)), x, y).compile()
    compile_seconds = time.perf_counter() - start
    cache_hit = bool(_CACHE_HITS)
    enable_compilation_cache()  # after the first step compile when --cold_compile: see the docstring
    peak, temp = peak_memory(self.compiled)
    kx, ky, kinit = jax.random.split(jax.random.key(0), 3)
    self.x = jax.random.normal(kx, x.shape, x.dtype)
    self.y = jax.random.randint(ky, y.shape, 0, FLAGS.num_classes)
    self.state = jax.jit(init)(kinit)
    self.loss = None
    self.times = []
    # A scan body is traced once: count FLOPs on the unrolled model, the same function.
    self.flops = counting.flops(model.clone(scan=False), shape) * (3 if mode == 'train' else 1)
    self.info = {
        'model': name, 'blocks': list(model.blocks), 'batch_size': FLAGS.batch_size,
        'devices': 1, 'device': jax.devices()[0].device_kind, 'mode': mode,
        'precision': options['precision'], 'remat': options['remat'], 'scan': options['scan'],
        'compile_seconds': round(compile_seconds, 2), 'compile_cache_hit': cache_hit,
        'flops_per_image': self.flops, 'peak_memory_bytes': peak, 'temp_memory_bytes': temp,
        'params': counting.param_count(model, shape)}

  def step(self, timed=True):
    t = time.perf_counter()
    self.state, self.loss = self.compiled(self.state, self.x, self.y)
    jax.block_until_ready((self.state, self.loss))
    if timed:
      self.times.append(time.perf_counter() - t)

  def result(self):
    times = self.times
    step_s = statistics.median(times) if times else float('nan')
    ips = FLAGS.batch_size / step_s
    return {**self.info, 'steps': len(times), 'images_per_sec': round(ips, 3),
            'step_ms_median': round(step_s * 1e3, 2),
            'step_ms_min': round(min(times) * 1e3, 2) if times else float('nan'),
            'achieved_gflops': round(self.flops * ips / 1e9, 2),
            'final_loss': float(self.loss) if times else float('nan')}


def bench(name, options, overrides, mode):
  """One benchmark row, timed over `FLAGS.steps` steps after a warm-up step."""
  row = Row(name, options, overrides, mode)
  if FLAGS.steps:
    row.step(timed=False)
    for _ in range(FLAGS.steps):
      row.step()
  return row.result()


def round_robin(specs):
  """Every row compiled and warmed up first, then one step of each in turn, FLAGS.rounds times."""
  rows = [Row(*spec) for spec in specs]
  for row in rows:
    row.step(timed=False)
  for _ in range(FLAGS.rounds):
    for row in rows:
      row.step()
  return [row.result() for row in rows]


def label(r):
  """A row's model with its options, as --model takes it."""
  return r['model'] + ''.join(f':{o}' for o, on in (('scan', r['scan']), ('remat', r['remat']),
                                                     ('bf16', r['precision'] == 'bf16')) if on)


def plot_sweep(rows, filename):
  """Peak memory (and, when timed, images/s) against layers per block, one line per model."""
  timed = all(r['steps'] for r in rows)
  fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(9 if timed else 4.8, 3.6), squeeze=False)
  for name in dict.fromkeys(label(r) for r in rows):
    mine = [r for r in rows if label(r) == name]
    depth = [r['blocks'][0] for r in mine]
    axes[0][0].plot(depth, [r['peak_memory_bytes'] / 2**20 for r in mine], 'o-', label=name)
    if timed:
      axes[0][1].plot(depth, [r['images_per_sec'] for r in mine], 'o-', label=name)
  axes[0][0].set(xlabel='layers per block (3 blocks)', ylabel='peak memory, MiB',
                 title=f'{rows[0]["mode"]} step, batch {rows[0]["batch_size"]}')
  if timed:
    axes[0][1].set(xlabel='layers per block (3 blocks)', ylabel='images / s', title=rows[0]['device'])
  for ax in axes[0]:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(filename, dpi=80)


def main(argv):
  del argv
  if not FLAGS.cold_compile:
    enable_compilation_cache()
  try:
    bad = set(FLAGS.mode) - {'train', 'eval'}
    if bad or not FLAGS.mode:
      raise ValueError(f'--mode takes train, eval or train,eval, got {",".join(FLAGS.mode)!r}')
    if FLAGS.sweep_depth:
      runs = [(*parse_model(n), {'blocks': (int(d),) * 3}) for n in FLAGS.sweep_models
              for d in FLAGS.sweep_depth]
    else:
      models = presets.names() if FLAGS.model == ['all'] else FLAGS.model
      blocks = {'blocks': tuple(int(b) for b in FLAGS.blocks)} if FLAGS.blocks else {}
      runs = [(*parse_model(n), blocks) for n in models]
    specs = [(*run, mode) for run in runs for mode in FLAGS.mode]
    results = round_robin(specs) if FLAGS.rounds else (bench(*spec) for spec in specs)
    rows = []
    for r in results:
      rows.append(r)
      if FLAGS.json:
        print(json.dumps(r), flush=True)
      else:
        print(f'{label(r)} blocks={r["blocks"]} {r["mode"]} {r["precision"]} batch {r["batch_size"]}: '
              f'{r["images_per_sec"]:.1f} images/s, {r["step_ms_median"]:.0f} ms/step, '
              f'{r["achieved_gflops"]:.1f} GFLOP/s, compile {r["compile_seconds"]:.1f} s, '
              f'peak {r["peak_memory_bytes"] / 2**20:.0f} MiB, {r["params"]:,} params', flush=True)
    if FLAGS.plot:
      plot_sweep(rows, FLAGS.plot)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)
