r"""Throughput, compile time and peak memory of the training code's own train and eval steps, on synthetic data.

  python launch/bench.py --model=densenet_bc_100 --batch_size=64 --steps=10 --json
  python launch/bench.py --model=all --mode=train,eval --steps=20 --json   # every preset, both steps
  python launch/bench.py --model=densenet_bc_100,densenet_bc_100:remat,sparsenet_bc_v1:scan --rounds=3
      # compile all, then one step of each in turn, 3 rounds: ratios that share the machine's noise
  python launch/bench.py --model=sparsenet_bc_v1,sparsenet_bc_v1:xla,sparsenet_bc_v1:fwdvjp --rounds=3
      # the per-backend kernel choices, side by side
  python launch/bench.py --model=densenet_bc_100 --mode=train,eval --turns --json
      # a step each time stdin names a mode: another process takes turns (tools/peer_ratios.py --turns)
  python launch/bench.py --model=sparsenet_abc_v4 --scan --steps=0   # compile time and memory only
  python launch/bench.py --model=sparsenet_bc_v1 --sweep_depth=8,16,24 --steps=0 \
      --plot=docs/memory_vs_depth.png           # every --sweep_models at 3 blocks of each depth

The steps timed are `steps.make_train_step` and `steps.make_eval_step`, the ones `train.py` runs: the
model built from a config as training builds it (`presets.from_config`), the optimiser of
`configs/default.py` (`optimizer.from_config`: the paper's SGD, Nesterov 0.9, L2 1e-4 before it),
`shard_map` over `steps.make_mesh()`, uint8 images augmented on the device, the train state donated.
Compilation (trace, lowering, XLA) is excluded from the timing and reported as `compile_seconds`.
By default the persistent compilation cache is off (even when $JAX_COMPILATION_CACHE_DIR turns it on),
so that number is a real compile; `--nocold_compile` lets steps load from the cache in `--compilation_cache`
(`compile_cache_hit` says if one did). JAX decides at the process's first compile whether it uses the
cache, so the choice holds for every row of a run.
Every step is timed to completion (`block_until_ready`); the median step is reported. Peak memory is
XLA's analysis of the compiled step, per device.

A model may carry options after colons, which override the flags for that row: `scan`, `remat`, `bf16`,
`xla` / `fwdvjp` / `matmul` (conv_impl) and `checkpoint` / `tied` (remat_impl; either turns remat on), e.g.
`densenet_bc_100:remat:tied`. Without them the kernels are 'auto', the backend's choice.
"""
import json
import statistics
import sys
import time

from absl import flags
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs import default
from sparsenet_jax import cli
from sparsenet_jax.data import datasets
from sparsenet_jax.model import counting
from sparsenet_jax.model import kernels
from sparsenet_jax.model import network
from sparsenet_jax.model import presets
from sparsenet_jax.model import spec as spec_lib
from sparsenet_jax.model.spec import PRECISIONS
from sparsenet_jax.training import cpu_devices
from sparsenet_jax.training import host_memory
from sparsenet_jax.training import optimizer
from sparsenet_jax.training import steps

flags.DEFINE_list('model', ['densenet_bc_100'], 'Preset names with options (NAME[:scan][:remat][:bf16]'
                  '[:xla|:fwdvjp|:matmul][:checkpoint|:tied]), or "all".')
flags.DEFINE_list('blocks', None, 'Override the layers per block, e.g. 12,12,12.')
flags.DEFINE_integer('batch_size', 64, 'Images per step (global: split over every device).')
flags.DEFINE_integer('steps', 10, 'Timed steps after one warm-up step; 0 compiles only.')
flags.DEFINE_integer('rounds', None, 'Instead of --steps: compile every row first, then time one step of '
                     'each row in turn, this many rounds (machine noise then hits every row alike).')
flags.DEFINE_bool('turns', False, 'Instead of --steps or --rounds, for one model: compile and warm up its rows, '
                  'print {"ready": true}, then time one step of the row each line of standard input names '
                  '(train or eval), printing {"mode": ..., "seconds": ...}, until the input ends; then the '
                  'rows as usual. Another process can so take turns with this one step by step '
                  '(tools/peer_ratios.py --turns).')
flags.DEFINE_list('mode', ['train'], 'Which steps to time: train, eval or both (train,eval).')
flags.DEFINE_enum('precision', 'fp32', list(PRECISIONS), 'Compute precision; '
                  'parameters stay fp32.')
flags.DEFINE_bool('remat', False, 'Recompute every layer in the backward pass.')
flags.DEFINE_bool('scan', False, 'Run the capped layers of each block as one scan.')
flags.DEFINE_enum('augment', 'cifar', list(datasets.AUGMENTATIONS), "Train-step augmentation ('cifar': pad-4 crop, "
                  "flip; 'random_resized_crop' happens in Grain's workers, so the step only normalises).")
flags.DEFINE_integer('num_classes', None, 'Classifier outputs; default: the preset\'s (10, or 1000 for the '
                     'ImageNet presets).')
flags.DEFINE_integer('image_size', 32, 'Input height and width.')
cli.define_compilation_cache(' Used only with --nocold_compile.')
flags.DEFINE_bool('cold_compile', True, 'Time real compiles: the persistent cache stays off.')
flags.DEFINE_list('sweep_depth', None, 'Layers per block to sweep (3 equal blocks each), e.g. 8,16,24.')
flags.DEFINE_list('sweep_models', ['sparsenet_bc_v1', 'densenet_bc_100'], 'Presets of --sweep_depth.')
flags.DEFINE_string('plot', None, 'With --sweep_depth: write peak memory (and speed) vs depth here.')
flags.DEFINE_bool('json', False, 'One JSON object per line instead of text.')
flags.DEFINE_enum('cpu_split', 'auto', ['auto', 'always'], "XLA:CPU's one device per core: 'auto' where the "
                  "train step gains, as training decides (training/cpu_devices.py); 'always', as for any step")
FLAGS = flags.FLAGS
cli.positive('blocks', 'batch_size', 'rounds', 'num_classes', 'image_size', 'sweep_depth')
cli.non_negative('steps')
cli.output_file('plot')

OPTIONS = {'scan': ('scan', True), 'remat': ('remat', True), 'bf16': ('precision', 'bf16'),
           'xla': ('conv_impl', 'xla'), 'fwdvjp': ('conv_impl', 'forward_vjp'), 'matmul': ('conv_impl', 'matmul'),
           'checkpoint': ('remat_impl', 'checkpoint'), 'tied': ('remat_impl', 'tied')}
_CACHE_HITS = []
jax.monitoring.register_event_listener(
    lambda event, **kw: _CACHE_HITS.append(event) if event == '/jax/compilation_cache/cache_hits' else None)


def peak_memory(compiled):
  """Arguments + outputs + temporaries, less what donation aliases: what the step holds at once."""
  m = compiled.memory_analysis()
  total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
  return int(total), int(m.temp_size_in_bytes)


def check_flags(num_devices):
  """What the flag validators cannot check, before any work: a bad value costs one line, not a compile,
  and a flag that does not apply to what was asked is refused, not ignored."""
  given = [name for name in FLAGS if FLAGS[name].present]
  cli.require(not ('rounds' in given and 'steps' in given), '--rounds replaces --steps: give one of them')
  cli.require(not FLAGS.turns or not ({'rounds', 'steps', 'sweep_depth'} & set(given)),
              '--turns replaces --steps, --rounds and --sweep_depth: give one of them')
  cli.require(not FLAGS.turns or len(FLAGS.model) == 1, '--turns times one model (a row per --mode)')
  for name in ('plot', 'sweep_models'):
    cli.require(name not in given or FLAGS.sweep_depth, f'--{name} applies only with --sweep_depth')
  for name in ('model', 'blocks'):
    cli.require(name not in given or not FLAGS.sweep_depth, f'--{name} does not apply with --sweep_depth '
                '(it runs every --sweep_models at 3 blocks of each depth)')
  cli.require('augment' not in given or 'train' in FLAGS.mode, '--augment applies only to the train step '
              '(--mode=train)')
  if FLAGS.batch_size % num_devices:
    raise ValueError(f'--batch_size={FLAGS.batch_size} is not divisible by the {num_devices} devices')
  if not FLAGS.model and not FLAGS.sweep_depth:
    raise ValueError('--model names no model')
  if not FLAGS.mode or set(FLAGS.mode) - {'train', 'eval'}:
    raise ValueError(f'--mode takes train, eval or train,eval, got {",".join(FLAGS.mode)!r}')


def parse_model(text, blocks=None):
  """'NAME[:option...]' -> (config, ModelSpec): the default training config for preset NAME with the
  flags, then the row's options, applied; the spec is what `train.py` would build from that config."""
  name, *options = text.split(':')
  presets.get(name)  # unknown names fail here, before the first (slow) compile
  unknown = set(options) - set(OPTIONS)
  if unknown:
    raise ValueError(f'unknown option(s) {sorted(unknown)} in {text!r}; allowed: {", ".join(OPTIONS)}')
  chosen = {}
  for option in options:
    field, value = OPTIONS[option]
    if chosen.setdefault(field, value) != value:
      raise ValueError(f'conflicting options in {text!r}: {field} is set twice')
  fields = {'scan': FLAGS.scan, 'remat': FLAGS.remat or 'remat_impl' in chosen, 'precision': FLAGS.precision,
            **chosen}
  config = default.get_config()
  config.precision = fields.pop('precision')
  config.model = default.model_config(name, num_classes=FLAGS.num_classes, **fields,
                                      **({'blocks': tuple(blocks)} if blocks else {}))
  spec = presets.from_config(config)
  try:
    spec_lib.check_image_size(spec, (FLAGS.image_size, FLAGS.image_size))
  except ValueError as e:
    raise ValueError(f'--image_size={FLAGS.image_size} for {text}: {e}') from None
  return config, spec


def keep_host_memory(specs):
  """As launch/main.py, before JAX starts its backends: one device per core on a CPU where the largest
  model's train step gains from it (`cpu_devices.split`), and glibc kept from unmapping a step's
  temporaries when the largest step's are large (`host_memory.keep`)."""
  hw = (FLAGS.image_size,) * 2
  sync = (None if FLAGS.cpu_split == 'always'  # None: not known, split
          else max(cpu_devices.sync_bytes(spec, hw, FLAGS.batch_size) for spec in specs))
  batch = -(-FLAGS.batch_size // cpu_devices.split(jax, (FLAGS.batch_size,), sync=sync))
  host_memory.keep(jax, step=max(host_memory.step_bytes(spec, hw, batch, 'train' in FLAGS.mode) for spec in specs))


def synthetic_batch(mesh, shape, num_classes):
  """uint8 images, int labels and an all-true mask, sharded over the mesh as `steps.Feeder` hands them."""
  rng, n = np.random.default_rng(0), FLAGS.batch_size
  batch = (rng.integers(0, 256, (n, *shape), np.uint8), rng.integers(0, num_classes, n, np.int32),
           np.ones(n, bool))
  return jax.device_put(batch, NamedSharding(mesh, P('data')))


class Row:
  """One benchmark row: `step` (a jitted step of `steps`) compiled for `args`; `step()` times one call."""

  def __init__(self, mode, step, args, info, flops):
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), args)
    _CACHE_HITS.clear()
    start = time.perf_counter()
    self.compiled = step.lower(*abstract).compile()
    compile_seconds = time.perf_counter() - start
    cache_hit = bool(_CACHE_HITS)
    peak, temp = peak_memory(self.compiled)
    self.mode, self.args, self.loss, self.times = mode, list(args), None, []
    self.flops = flops * (3 if mode == 'train' else 1)
    self.info = {**info, 'mode': mode, 'augment': FLAGS.augment if mode == 'train' else 'none',
                 'compile_seconds': round(compile_seconds, 2), 'compile_cache_hit': cache_hit,
                 'flops_per_image': self.flops, 'peak_memory_bytes': peak, 'temp_memory_bytes': temp}

  def step(self, timed=True):
    t = time.perf_counter()
    out = self.compiled(*self.args)
    jax.block_until_ready(out)
    if timed:
      self.times.append(time.perf_counter() - t)
    if self.mode == 'train':
      self.args[0], metrics = out  # the old state was donated
      self.loss = metrics['train_loss']
    else:
      self.loss = out[0] / FLAGS.batch_size  # the eval step returns sums

  def result(self):
    times = self.times
    step_s = statistics.median(times) if times else float('nan')
    ips = FLAGS.batch_size / step_s
    return {**self.info, 'steps': len(times), 'images_per_sec': round(ips, 3),
            'step_ms_median': round(step_s * 1e3, 2),
            'step_ms_min': round(min(times) * 1e3, 2) if times else float('nan'),
            'achieved_gflops': round(self.flops * ips / 1e9, 2),
            'final_loss': float(self.loss) if times else float('nan')}


def make_rows(config, spec, mesh):
  """One Row per --mode for one model, built as `train.py` builds it, sharing one train state (the eval
  row reads a copy of its variables: the train step donates the state)."""
  shape = (FLAGS.image_size, FLAGS.image_size, 3)
  data = datasets.facts(config.dataset)  # the default config's CIFAR-10: its statistics and size
  model = network.make(spec.replace(axis_name=steps.batch_norm_axis(config.sync_batch_norm)))  # as train.py
  tx, schedule = optimizer.from_config(config, max(1, data.train_size // FLAGS.batch_size))
  state = steps.create_train_state(config.seed, model, tx, shape, mesh)
  images, labels, mask = synthetic_batch(mesh, shape, spec.num_classes)
  cost = counting.summarize(model, shape, with_xla=False)  # scanned models are counted unrolled
  flops = cost['flops']
  info = {'model': config.model.name, 'blocks': list(spec.blocks), 'batch_size': FLAGS.batch_size,
          'devices': mesh.size, 'device': jax.devices()[0].device_kind, 'precision': config.precision,
          'remat': spec.remat, 'scan': spec.scan, 'conv_impl': spec.conv_impl, 'remat_impl': spec.remat_impl,
          'conv_kernel': kernels.conv_kernel(spec.conv_impl),
          'remat_kernel': kernels.remat_impl(spec.remat_impl) if spec.remat else None,
          'optimizer': config.optimizer.name, 'params': cost['params']}
  rows = []
  for mode in FLAGS.mode:
    if mode == 'train':
      step = steps.make_train_step(model, tx, schedule, mesh, data.mean, data.std, FLAGS.augment)
      rows.append(Row(mode, step, (state, images, labels), info, flops))
    else:
      variables = jax.jit(lambda v: jax.tree.map(jnp.copy, v))(steps.variables(state))
      step = steps.make_eval_step(network.make(spec), mesh, data.mean, data.std)
      rows.append(Row(mode, step, (variables, images, labels, mask), info, flops))
  return rows


def bench(runs, mesh):
  """Each model's rows, each timed over `FLAGS.steps` steps after a warm-up step."""
  for run in runs:
    for row in make_rows(*run, mesh):
      if FLAGS.steps:
        row.step(timed=False)
        for _ in range(FLAGS.steps):
          row.step()
      yield row.result()


def round_robin(runs, mesh):
  """Every row compiled and warmed up first, then one step of each in turn, FLAGS.rounds times."""
  rows = [row for run in runs for row in make_rows(*run, mesh)]
  for row in rows:
    row.step(timed=False)
  for _ in range(FLAGS.rounds):
    for row in rows:
      row.step()
  return [row.result() for row in rows]


def turns(runs, mesh):
  """Every row compiled and warmed up, then one timed step of the row each line of stdin names, its
  seconds printed at once (the caller decides when the next step runs); the rows' results at the end."""
  rows = {row.mode: row for run in runs for row in make_rows(*run, mesh)}
  for row in rows.values():
    row.step(timed=False)
  print(json.dumps({'ready': True}), flush=True)
  for line in sys.stdin:
    mode = line.strip()
    if mode not in rows:
      raise ValueError(f'--turns: standard input named {mode!r}; this run has {", ".join(rows)}')
    rows[mode].step()
    print(json.dumps({'mode': mode, 'seconds': rows[mode].times[-1]}), flush=True)
  return [row.result() for row in rows.values()]


def label(r):
  """A row's model with its options, as --model takes it."""
  values = dict(r, remat_impl=r['remat_impl'] if r['remat'] else None)
  return r['model'] + ''.join(f':{o}' for o, (field, value) in OPTIONS.items() if values[field] == value)


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
  cli.use_compilation_cache(not FLAGS.cold_compile)  # off by default: compile_seconds times real compiles
  if FLAGS.sweep_depth:
    runs = [parse_model(n, (int(d),) * 3) for n in FLAGS.sweep_models for d in FLAGS.sweep_depth]
  else:
    models = presets.names() if FLAGS.model == ['all'] else FLAGS.model
    runs = [parse_model(n, FLAGS.blocks and [int(b) for b in FLAGS.blocks]) for n in models]
  keep_host_memory([spec for _, spec in runs])
  mesh = steps.make_mesh()
  check_flags(mesh.size)
  results = (turns if FLAGS.turns else round_robin if FLAGS.rounds else bench)(runs, mesh)
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


def entry():
  """The shell (sparsenet_jax/cli.py): flags, one line per failure, the exit code."""
  cli.run(main, input_errors=(ValueError,))


if __name__ == '__main__':
  entry()
