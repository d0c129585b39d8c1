r"""Top-5 classes of images, from a run's latest checkpoint or from an exported model.

  python launch/predict.py --workdir=runs/c10 cat.jpg dog.png
  python launch/predict.py --workdir=runs/c10 --json --top=3 photos/*.jpg
  python launch/predict.py --model=c10.npz cat.jpg        # a file written by launch/export.py

Images of any size are resized to the training images' size and converted to their channels
(grayscale or RGB), then normalised with the training data's statistics, as in evaluation.
"""
import json

from absl import flags
from absl import logging

import numpy as np

from sparsenet_jax import cli
from sparsenet_jax.tools import export
from sparsenet_jax.training import restore

flags.DEFINE_string('workdir', None, 'A training run: its latest checkpoint is used.')
flags.DEFINE_string('model', None, 'Or an exported model file (launch/export.py).')
flags.DEFINE_integer('top', 5, 'How many classes to print per image.')
flags.DEFINE_bool('json', False, 'One JSON object per image instead of text.')
FLAGS = flags.FLAGS
cli.positive('top')


def main(argv):
  images = argv[1:]
  cli.require((FLAGS.workdir is None) != (FLAGS.model is None), 'give one of --workdir=RUN or --model=FILE')
  cli.require(images, 'no images: predict.py (--workdir=RUN | --model=FILE) [--top=K] [--json] IMAGE...')
  logging.set_verbosity(logging.ERROR)  # Orbax warns about every read-only checkpoint it opens
  if FLAGS.model:
    model, variables, meta = export.load_exported(FLAGS.model)
  else:
    model, variables, meta = restore.restore_run(FLAGS.workdir)
  pixels = np.stack([export.load_image(path, meta['image_shape']) for path in images])
  probabilities = export.predict(model, variables, meta, pixels)
  for path, p in zip(images, probabilities):
    top = export.top_k(p, meta['class_names'], FLAGS.top)
    if FLAGS.json:
      print(json.dumps({'image': path, 'top': [{'class': name, 'index': i, 'probability': prob}
                                               for i, name, prob in top]}))
    else:
      print(path)
      for i, name, prob in top:
        print(f'  {prob:7.2%}  {name}')


def entry():
  """The shell (sparsenet_jax/cli.py): flags, one line per failure, the exit code."""
  cli.run(main, positional=True)


if __name__ == '__main__':
  entry()
