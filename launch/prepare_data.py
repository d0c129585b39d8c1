r"""Download, verify and cache CIFAR-10, CIFAR-100 or SVHN ahead of training (a login node before sbatch).

  python launch/prepare_data.py --dataset=cifar100
  python launch/prepare_data.py --dataset=svhn --data_dir=/shared/datasets
  python launch/prepare_data.py --dataset=cifar10 --mirror=https://cluster.example/datasets/

Training does the same on first use; this only does it earlier. Prints what it fetched, the sizes and
where the arrays went. Bad arguments or data: one line on stderr, exit 2.
"""
import os

from absl import flags

from sparsenet_jax import cli
from sparsenet_jax.data import cifar_svhn
from sparsenet_jax.data import download

DATASETS = tuple(cifar_svhn.ARCHIVES)

flags.DEFINE_enum('dataset', None, DATASETS, 'The dataset to prepare.')
flags.DEFINE_string('data_dir', None, 'Where the arrays go (config.dataset.data_dir); default '
                    f'${download.DATA_DIR_ENV} or {download.DEFAULT_DATA_DIR}.')
flags.DEFINE_string('mirror', None, 'A base URL serving the canonical files under their own names '
                    '(config.dataset.mirror); checksums stay the canonical ones.')
flags.mark_flag_as_required('dataset')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  download.check_mirror(FLAGS.mirror)  # before the data directory is made
  directory = download.data_dir(FLAGS.data_dir)
  prepared = cifar_svhn.prepare(FLAGS.dataset, directory, allow_download=True, mirror=FLAGS.mirror)
  size = download.megabytes(os.path.getsize(prepared.cache))
  if not prepared.created:
    print(f'{FLAGS.dataset}: already prepared in {prepared.cache} ({size}); nothing fetched')
    return
  for url, nbytes in prepared.fetched:
    print(f'fetched {url} ({download.megabytes(nbytes)}, sha256 verified)')
  counts = ', '.join(f'{n:,} {split}' for split, n in prepared.examples.items())
  kept = '; the downloaded archives were deleted' if prepared.fetched else ''
  print(f'{FLAGS.dataset}: {counts} images -> {prepared.cache} ({size}){kept}')


def entry():
  """The shell (sparsenet_jax/cli.py): flags, one line per failure, the exit code."""
  cli.run(main)


if __name__ == '__main__':
  entry()
