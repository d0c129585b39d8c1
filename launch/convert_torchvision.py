r"""A torchvision DenseNet state dict (`.pth`) as this project's exported model (format: sparsenet_jax/tools/export.py).

  python launch/convert_torchvision.py --weights=densenet121-a639ec97.pth --model=densenet_121 --out=d121.npz
  python launch/predict.py --model=d121.npz cat.jpg

--model is the preset of the same architecture (densenet_121, densenet_169, densenet_201, densenet_161); the
class count is read off the state dict's classifier, every other shape is checked against the preset and a
mismatch is refused naming the key. The export normalises with ImageNet's statistics, as torchvision's
weights expect, and names the 1000 ImageNet classes as torchvision does. Reading a `.pth` needs torch:
`pip install -e '.[torch]'` (docs/imagenet.md); nothing else in the project does.
"""
from absl import flags

from sparsenet_jax import cli
from sparsenet_jax.errors import ArgumentError, ExportError
from sparsenet_jax.model import presets

flags.DEFINE_string('weights', None, 'A torchvision DenseNet state dict (.pth), as torch.save wrote it.')
flags.DEFINE_string('model', None, 'The preset of the same architecture: densenet_121, densenet_169, ...')
flags.DEFINE_string('out', None, 'The file to write (an .npz).')
flags.DEFINE_integer('image_size', 224, 'Height and width predict.py resizes images to.')
flags.DEFINE_bool('overwrite', False, 'Replace --out if it exists.')
flags.mark_flags_as_required(['weights', 'model', 'out'])
FLAGS = flags.FLAGS
cli.positive('image_size')


def read_state_dict(path):
  """{key: float32 numpy array} of a `.pth` holding a state dict (or a checkpoint dict with one under
  'state_dict'); tensors only, never pickled code (`weights_only`)."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ExportError("reading a .pth needs torch: pip install -e '.[torch]'") from None
  try:
    loaded = torch.load(path, map_location='cpu', weights_only=True)
  except FileNotFoundError:
    raise ExportError(f'no such file: {path}') from None
  except Exception as e:  # torch raises many kinds for a file that is not a state dict
    raise ExportError(f'cannot read {path} as a torch state dict: {cli.first_line(e)}') from None
  if isinstance(loaded, dict) and isinstance(loaded.get('state_dict'), dict):
    loaded = loaded['state_dict']
  if not isinstance(loaded, dict) or not all(torch.is_tensor(v) for v in loaded.values()):
    raise ExportError(f'{path} holds no state dict (a mapping of names to tensors)')
  return {k.removeprefix('module.'): v.detach().float().numpy() for k, v in loaded.items()}


def imagenet_class_names(num_classes):
  """torchvision's names of the 1000 ImageNet classes, or [] (predict prints indices) when the model has
  another class count or torchvision is not installed."""
  if num_classes != 1000:
    return []
  try:
    from torchvision.models import DenseNet121_Weights  # pylint: disable=import-outside-toplevel
  except ImportError:
    return []
  return list(DenseNet121_Weights.IMAGENET1K_V1.meta['categories'])


def main(argv):
  del argv
  spec = presets.get(FLAGS.model)  # an unknown preset fails before torch loads
  if spec.stem != 'imagenet' or spec.connectivity != 'dense' or spec.conv_bias:
    raise ArgumentError(f'--model={FLAGS.model} is not a DenseNet with the ImageNet stem, as torchvision builds '
                        f'them: {", ".join(presets.IMAGENET_DENSENETS)}')
  state_dict = read_state_dict(FLAGS.weights)
  from sparsenet_jax.tools import torchvision_weights  # pylint: disable=import-outside-toplevel  (JAX: later)
  spec = presets.get(FLAGS.model, num_classes=torchvision_weights.num_classes(state_dict))
  names = imagenet_class_names(spec.num_classes)
  params = torchvision_weights.write_export(FLAGS.out, state_dict, spec, FLAGS.model, [FLAGS.image_size] * 2 + [3],
                                            names, overwrite=FLAGS.overwrite)
  print(f'wrote {FLAGS.out}: {FLAGS.model}, {params:,} params, {spec.num_classes} classes '
        f'({"named" if names else "unnamed"}), from {FLAGS.weights}')


def entry():
  """The shell (sparsenet_jax/cli.py): flags, one line per failure, the exit code."""
  cli.run(main, input_errors=(ValueError, OSError))


if __name__ == '__main__':
  entry()
