r"""Parameters and FLOPs of one model, or of every preset beside the paper's figures.

  python launch/summary.py --model=sparsenet_abc_v1
  python launch/summary.py --model=sparsenet_v1 --blocks=12,12,12
  python launch/summary.py --model=all [--json]
  python launch/summary.py --model=sparsenet_bc_v1 --draw=connections.png
"""
import json
import sys

from absl import app
from absl import flags


from sparsenet_jax.model import counting
from sparsenet_jax.tools import plots
from sparsenet_jax.model import presets

flags.DEFINE_string('model', 'sparsenet_abc_v1', 'A preset name, or "all".')
flags.DEFINE_integer('num_classes', 10, 'Classifier outputs.')
flags.DEFINE_list('blocks', None, 'Layers per block, e.g. 12,12,12.')
flags.DEFINE_integer('growth_rate', None, 'k.')
flags.DEFINE_string('path', None, 'Connections kept per layer; "none" for DenseNet.')
flags.DEFINE_integer('near', None, 'How many of the path + 2 groups are the nearest ones.')
flags.DEFINE_integer('image_size', 32, 'Input height and width.')
flags.DEFINE_bool('json', False, 'One JSON object per line instead of a table.')
flags.DEFINE_string('draw', None, 'Write the connection pattern of the model to this PNG.')
FLAGS = flags.FLAGS


def overrides():
  o = {'num_classes': FLAGS.num_classes}
  if FLAGS.blocks is not None:
    try:
      o['blocks'] = tuple(int(b) for b in FLAGS.blocks)
    except ValueError:
      raise ValueError(f'--blocks must be comma-separated integers, got {",".join(FLAGS.blocks)}')
  if FLAGS.growth_rate is not None:
    o['growth_rate'] = FLAGS.growth_rate
  if FLAGS.path is not None:
    try:
      o['path'] = None if FLAGS.path.lower() == 'none' else int(FLAGS.path)
    except ValueError:
      raise ValueError(f'--path must be an integer or "none", got {FLAGS.path!r}')
  if FLAGS.near is not None:
    o['near'] = FLAGS.near
  return o


def row(name, model, o):
  r = counting.summarize(model, (FLAGS.image_size, FLAGS.image_size, 3))
  paper = presets.PAPER_PARAMS[name] if o == {'num_classes': 10} else None
  return {'model': name, 'params': r['params'], 'flops': r['flops'], 'xla_flops': r['xla_flops'],
                 'paper_params': paper}


def main(argv):
  del argv
  try:
    o = overrides()
    names = presets.names() if FLAGS.model == 'all' else [FLAGS.model]
    if FLAGS.model == 'all' and FLAGS.draw:
      raise ValueError('--draw needs one --model, not "all"')
    models = [presets.build(name, **o) for name in names]  # bad input fails before any output
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
        plots.draw_connections(model.plans(), f'{name}: path={model.path}, near={model.near if model.near is not None or model.path is None else model.path // 2}', FLAGS.draw)
        print(f'wrote {FLAGS.draw}', file=sys.stderr)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)
