r"""Parameters and FLOPs of one model, or of every preset beside the paper's figures.

  python launch/summary.py --model=sparsenet_abc_v1
  python launch/summary.py --model=sparsenet_v1 --blocks=12,12,12
  python launch/summary.py --model=all [--json]
  python launch/summary.py --model=sparsenet_bc_v1 --draw=connections.png
  python launch/summary.py --model=sparsenet_bc_v1 --connectivity=log --scan    # how each block runs
  python launch/summary.py --model=fig3       # the paper's Fig. 3 networks side by side (presets.FIG3)
  python launch/summary.py --model=imagenet_budget   # SparseNet ImageNet candidates at DenseNet's budgets

A model with layers whose output nothing later reads (`near=0`: docs/model.md section 6) gets a warning
on stderr naming them.
"""
import json
import sys

from absl import flags

from sparsenet_jax import cli
from sparsenet_jax.model import connectivity
from sparsenet_jax.model import presets
from sparsenet_jax.model import spec as spec_lib
# JAX, Flax and matplotlib load only once the flags are good: a bad flag costs a fraction of a second.

flags.DEFINE_string('model', 'sparsenet_abc_v1', 'A preset name, "all", "fig3" (the paper\'s Fig. 3 '
                    'networks, presets.FIG3, beside DenseNet-40) or "imagenet_budget" (budget.imagenet_candidates '
                    'at 224 px: minutes).')
flags.DEFINE_integer('num_classes', None, 'Classifier outputs; default: the preset\'s (10, or 1000 for the '
                     'ImageNet presets).')
flags.DEFINE_list('blocks', None, 'Layers per block, e.g. 12,12,12.')
flags.DEFINE_integer('growth_rate', None, 'k.')
flags.DEFINE_string('path', None, 'Connections kept per layer; "none" for DenseNet.')
flags.DEFINE_integer('near', None, 'How many of the path + 2 groups are the nearest ones.')
flags.DEFINE_enum('connectivity', None, list(connectivity.PATTERNS), 'Connection pattern.')
flags.DEFINE_bool('scan', False, 'Print how each block runs with model.scan (which layers are scanned).')
flags.DEFINE_integer('scan_chunk', None, 'Growing layers per scan (with --scan).')
flags.DEFINE_integer('image_size', None, 'Input height and width; default: 224 for models with the ImageNet '
                     'stem, else 32.')
flags.DEFINE_bool('json', False, 'One JSON object per line instead of a table.')
flags.DEFINE_string('draw', None, 'Write the connection pattern of the model to this PNG.')
FLAGS = flags.FLAGS
cli.positive('num_classes', 'blocks', 'growth_rate', 'scan_chunk', 'image_size')
cli.non_negative('near')
cli.output_file('draw')
# What each way of running reads besides --model and --num_classes; a flag given that it does not read is
# refused rather than ignored.
READS = {'fig3': (),  # presets.FIG3 fixes blocks, growth_rate and path; the table counts parameters only
         'scan': ('blocks', 'growth_rate', 'path', 'near', 'connectivity', 'scan', 'scan_chunk'),
         'table': ('blocks', 'growth_rate', 'path', 'near', 'connectivity', 'image_size', 'json', 'draw')}


def check_flags():
  """Every flag given applies to what was asked, before any model is built."""
  way = 'fig3' if FLAGS.model == 'fig3' else 'scan' if FLAGS.scan else 'table'
  for name in set(READS['scan'] + READS['table']) - set(READS[way]):
    if FLAGS[name].present:
      why = {'fig3': 'to --model=fig3 (its networks are presets.FIG3; only --num_classes applies)',
             'scan': 'with --scan (it prints how each block runs, nothing else)', 'table': 'without --scan'}[way]
      cli.require(False, f'--{name} does not apply {why}')


def overrides():
  o = {} if FLAGS.num_classes is None else {'num_classes': FLAGS.num_classes}
  if FLAGS.blocks is not None:
    o['blocks'] = tuple(int(b) for b in FLAGS.blocks)  # integers: cli.positive refused anything else
  if FLAGS.growth_rate is not None:
    o['growth_rate'] = FLAGS.growth_rate
  if FLAGS.path is not None:
    try:
      o['path'] = None if FLAGS.path.lower() == 'none' else int(FLAGS.path)
    except ValueError:
      raise ValueError(f'--path must be an integer or "none", got {FLAGS.path!r}')
  if FLAGS.near is not None:
    o['near'] = FLAGS.near
  if FLAGS.connectivity is not None:
    o['connectivity'] = FLAGS.connectivity
  if FLAGS.scan_chunk is not None:
    o['scan_chunk'] = FLAGS.scan_chunk
  return o


def schedule_lines(name, model):
  """One line per block: which layers run scanned (padded growing chunks, the steady window) and which
  unrolled, as `model.scan=True` would run them."""
  from sparsenet_jax.model import network  # pylint: disable=import-outside-toplevel
  spec = model.spec.replace(scan=True)
  lines = []
  for b, plan in enumerate(network.block_plans(spec)):
    parts = []
    for seg in network.block_schedule(plan, spec):
      first, last = seg.layers.start + 1, seg.layers.stop
      span = f'{first}' if first == last else f'{first}-{last}'
      parts.append({'layer': f'unrolled {span}', 'grow': f'scanned (growing) {span}',
                    'steady': f'scanned (far {seg.far} + near {seg.near}) {span}'}[seg.kind])
    merged = []  # consecutive unrolled layers read as one range
    for p in parts:
      if merged and p.startswith('unrolled') and merged[-1].startswith('unrolled'):
        merged[-1] = merged[-1].split('-')[0] + '-' + p.split()[-1].split('-')[-1]
      else:
        merged.append(p)
    rows, width, k = plan.rows, plan.input_width, plan.growth_rate
    how = ', read by channel counts' if connectivity.cuts_pieces(rows + (plan.output_row,), width, k) else ''
    lines.append(f'{name} block {b + 1} ({len(rows)} layers, '
                 f'{connectivity.num_connections(rows, width, k)} connections{how}): {"; ".join(merged)}')
  return lines


def dead_layer_warnings(name, model):
  """One line per block with layers whose output no later layer, transition or head reads."""
  lines = []
  for b, plan in enumerate(model.plans()):
    dead = connectivity.unread_layers(plan.rows, plan.output_row, plan.input_width, plan.growth_rate)
    if dead:
      lines.append(f'warning: {name} block {b + 1}: {len(dead)} of {len(plan.rows)} layers are dead, their '
                   f'outputs read by no later layer, transition or head (near={model.spec.near}): layers '
                   f'{", ".join(str(j + 1) for j in dead)}')
  return lines


def fig3_lines(models):
  """The paper's Fig. 3 networks side by side: blocks, k, path, parameters and their ratio to DenseNet-40."""
  from sparsenet_jax.model import counting  # pylint: disable=import-outside-toplevel
  base = counting.param_count(models[0])
  lines = ['| Fig. 3 network | blocks | k | path | params | vs DenseNet-40 |', '|---|---|---:|---:|---:|---:|']
  for name, model in zip(presets.FIG3, models):
    s, n = model.spec, counting.param_count(model)
    lines.append(f'| {name} | {"-".join(map(str, s.blocks))} | {s.growth_rate} | {s.path or "dense"} | '
                 f'{n:,} | {n / base:.3f} |')
  return lines


def imagenet_budget_lines():
  """SparseNet-bc on the ImageNet stem at DenseNet-121's and -169's budgets: for each depth and growth rate
  the path the budget solver picks (`budget.imagenet_candidates`), its parameters and FLOPs at 224 px,
  printed as found."""
  from sparsenet_jax.model import counting, network  # pylint: disable=import-outside-toplevel
  from sparsenet_jax.tools import budget  # pylint: disable=import-outside-toplevel
  yield '| budget | L | blocks | k | path | params | vs budget | GFLOPs at 224 (2 x MACs) |'
  yield '|---|---:|---|---:|---:|---:|---:|---:|'
  for name, target in budget.IMAGENET_TARGETS.items():
    base = counting.flops(presets.build(name), (224, 224, 3))
    yield f'| {name} | {name[-3:]} | {"-".join(map(str, presets.get(name).blocks))} | ' \
          f'{presets.get(name).growth_rate} | dense | {target:,} | | {base / 1e9:.2f} |'
    for m in budget.imagenet_candidates(target):
      f = counting.flops(network.make(budget.imagenet_spec(m.blocks, m.growth_rate, m.path)), (224, 224, 3))
      yield (f'| {name} | {m.layers} | {"-".join(map(str, m.blocks))} | {m.growth_rate} | {m.path} | '
             f'{m.params:,} | {(m.params / target - 1) * 100:+.2f}% | {f / 1e9:.2f} |')


def image_size(spec) -> int:
  """--image_size, or the size the model is made for: 224 with the ImageNet stem, else 32."""
  return FLAGS.image_size or (224 if spec.stem == 'imagenet' else 32)


def row(name, model, o):
  from sparsenet_jax.model import counting  # pylint: disable=import-outside-toplevel
  size = image_size(model.spec)
  r = counting.summarize(model, (size, size, 3))
  paper = presets.paper_params(name) if name in presets.PRESETS and model.spec == presets.get(name) else None
  return {'model': name, 'params': r['params'], 'flops': r['flops'], 'xla_flops': r['xla_flops'],
                 'paper_params': paper}


def main(argv):
  del argv
  check_flags()
  o = overrides()
  if FLAGS.model == 'imagenet_budget':
    for line in imagenet_budget_lines():
      print(line, flush=True)
    return
  if FLAGS.model == 'fig3':
    models = [presets.build('densenet_40', **o, **fields) for fields in presets.FIG3.values()]
    print('\n'.join(fig3_lines(models)))
    return
  names = presets.names() if FLAGS.model == 'all' else [FLAGS.model]
  if FLAGS.model == 'all' and FLAGS.draw:
    raise ValueError('--draw needs one --model, not "all"')
  models = [presets.build(name, **o) for name in names]  # bad input fails before any output
  if not FLAGS.scan:  # the table counts FLOPs on --image_size images
    for model in models:
      try:
        size = image_size(model.spec)
        spec_lib.check_image_size(model.spec, (size, size))
      except ValueError as e:
        raise ValueError(f'--image_size={size}: {e}') from None
  for name, model in zip(names, models):
    for line in dead_layer_warnings(name, model):
      print(line, file=sys.stderr)
  if FLAGS.scan:
    for name, model in zip(names, models):
      print('\n'.join(schedule_lines(name, model)))
    return
  if not FLAGS.json:
    print('| model | params | paper params | diff | MFLOPs (2 x MACs) | XLA MFLOPs |')
    print('|---|---:|---:|---:|---:|---:|')
  for name, model in zip(names, models):
    r = row(name, model, o)
    if FLAGS.json:
      print(json.dumps(r), flush=True)
    else:
      paper = r['paper_params']
      diff = f'{(r["params"] / paper - 1) * 100:+.2f}%' if paper else '-'
      paper_s = f'{paper / 1e6:.2f}M' if paper else '-'
      print(f'| {name} | {r["params"]:,} | {paper_s} | {diff} | {r["flops"] / 1e6:,.1f} | '
            f'{r["xla_flops"] / 1e6:,.1f} |', flush=True)
    if FLAGS.draw:
      spec = model.spec
      shape = f'path={spec.path}, near={spec.near}' if spec.connectivity == 'sparsenet' else spec.connectivity
      from sparsenet_jax.tools import plots  # pylint: disable=import-outside-toplevel
      plots.draw_connections(model.plans(), f'{name}: {shape}', FLAGS.draw)
      print(f'wrote {FLAGS.draw}', file=sys.stderr)


def entry():
  """The shell (sparsenet_jax/cli.py): flags, one line per failure, the exit code."""
  cli.run(main, input_errors=(ValueError,))


if __name__ == '__main__':
  entry()
