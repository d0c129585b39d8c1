"""Prediction and export from a real run on CIFAR-10 images in the image-folder layout."""
import glob
import json
import os
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import CIFAR10_CLASSES, ROOT, build, write_image_folder
from configs import digits as digits_config
from sparsenet_jax.training import checkpoints
from sparsenet_jax.data import datasets
from sparsenet_jax.tools import export
from sparsenet_jax.model import network
from sparsenet_jax.training import restore
from sparsenet_jax.training import steps
from sparsenet_jax.training import train

CLASSES = sorted(CIFAR10_CLASSES)


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  """20 training and 10 test JPEGs per class, written by the test."""
  return write_image_folder(str(tmp_path_factory.mktemp('images')))


def folder_test_images(folder):
  return sorted(glob.glob(os.path.join(folder, 'test', '*', '*.jpg')))


def folder_config(folder):
  """A very small SparseNet-bc on the 200 training images: 4 epochs of 3 steps."""
  config = digits_config.get_config()
  config.model.growth_rate = 4
  config.model.blocks = (2, 3)
  config.model.path = 2
  config.dataset.name = 'image_folder'
  config.dataset.root = folder
  config.num_epochs = 4.0
  config.learning_rates = (0.1, 0.01)
  config.lr_boundaries_epochs = (3.0,)
  config.eval_every_epochs = 1
  config.checkpoint_every_epochs = 2
  config.eval_batch_size = 100
  return config


@pytest.fixture(scope='module')
def run(tmp_path_factory, folder):
  workdir = str(tmp_path_factory.mktemp('folder_run'))
  config = folder_config(folder)
  final = train.train_and_evaluate(config, workdir)
  return workdir, config, final, folder_test_images(folder)


def cli(*args):
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def labels_of(paths):
  return [CLASSES.index(os.path.basename(os.path.dirname(p))) for p in paths]


@pytest.mark.slow
def test_predict_prints_top5_with_class_names(run):
  workdir, _, final, TEST_IMAGES = run
  text = cli('launch/predict.py', f'--workdir={workdir}', *TEST_IMAGES)
  assert text.returncode == 0, text.stderr
  lines = text.stdout.splitlines()
  assert len(TEST_IMAGES) == 100 and len(lines) == 6 * len(TEST_IMAGES)
  for i, path in enumerate(TEST_IMAGES):
    block = lines[6 * i:6 * i + 6]
    assert block[0] == path
    probabilities = [float(line.split()[0].rstrip('%')) for line in block[1:]]
    # five roundings to 0.01%
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 100 + 5 * 0.005
    assert len({line.split()[1] for line in block[1:]}) == 5 and all(line.split()[1] in CLASSES for line in block[1:])

  as_json = cli('launch/predict.py', f'--workdir={workdir}', '--json', *TEST_IMAGES)
  assert as_json.returncode == 0, as_json.stderr
  objects = [json.loads(line) for line in as_json.stdout.splitlines()]
  assert [o['image'] for o in objects] == TEST_IMAGES
  assert all(len(o['top']) == 5 for o in objects)
  # The files, decoded and normalised by predict, are judged exactly as evaluation judged them.
  top1 = [o['top'][0]['index'] for o in objects]
  assert all(CLASSES[o['top'][0]['index']] == o['top'][0]['class'] for o in objects)
  accuracy = np.mean(np.array(top1) == labels_of(TEST_IMAGES))
  assert accuracy == pytest.approx(final['eval_accuracy'], abs=0.011)


def test_exported_model_gives_the_checkpoints_logits(run, tmp_path):
  workdir, config, final, _ = run
  out = str(tmp_path / 'model.sparsenet')  # any name: export never appends '.npz'
  result = cli('launch/export.py', f'--workdir={workdir}', f'--out={out}')
  assert result.returncode == 0, result.stderr
  assert os.listdir(tmp_path) == ['model.sparsenet']

  model, variables, meta = export.load_exported(out)
  assert meta['class_names'] == CLASSES and meta['image_shape'] == [32, 32, 3]
  assert meta['step'] == final['step'] == 12

  # The checkpoint as training restores it: the whole train state, through the training code.
  data = datasets.load(config.dataset)
  mesh = steps.make_mesh()
  trained_model, tx, _ = build(config, data.num_classes, 3)
  state, saved, _ = checkpoints.restore(
      checkpoints.manager(workdir, read_only=True),
      lambda s: steps.create_train_state(config.seed, network.make(s), tx, (32, 32, 3), mesh, abstract=True),
      trained_model.spec, (32, 32, 3), mesh)
  assert meta['model'] == saved['model'] == trained_model.spec.architecture()

  checkpoint_vars = {'params': state.params, 'batch_stats': state.batch_stats}
  images = data.test.images
  expected = export.logits(trained_model, jax.device_get(checkpoint_vars), saved, images)
  got = export.logits(model, variables, meta, images)
  np.testing.assert_array_equal(got, expected)
  accuracy = np.mean(np.argmax(got, -1) == data.test.labels)
  assert accuracy == pytest.approx(final['eval_accuracy'], abs=0.011)

  # What predict reads from a workdir is the same model as the exported file.
  run_model, run_vars, _ = restore.restore_run(workdir)
  np.testing.assert_array_equal(export.logits(run_model, run_vars, meta, images), got)


def test_exported_file_loads_and_predicts_without_training_code(run, tmp_path):
  workdir, _, _, TEST_IMAGES = run
  _, variables, meta = restore.restore_run(workdir)
  path = str(tmp_path / 'm.npz')
  export.save_exported(path, variables, meta)
  with zipfile.ZipFile(path) as z:  # plain .npy members, nothing pickled
    assert all(n.endswith('.npy') for n in z.namelist())
  code = ('import json, sys; from sparsenet_jax.tools import export; '
          'm, v, meta = export.load_exported(sys.argv[2]); '
          'import numpy as np; p = export.predict(m, v, meta, np.zeros((2, 32, 32, 3), np.uint8)); '
          'print(json.dumps([p.shape, sorted(k for k in sys.modules if k.startswith("sparsenet_jax") '
          'or k.split(".")[0] in ("orbax", "optax", "tensorflow_datasets", "sklearn"))]))')
  result = cli('-c', code, ROOT, path)
  assert result.returncode == 0, result.stderr
  shape, modules = json.loads(result.stdout)
  assert shape == [2, 10]
  # The model core, the export module, the (pure) error classes, the image decoder and the run description's
  # checks (pure Python) only: no training loop, data source, optimiser or checkpoint code.
  assert modules == ['sparsenet_jax', 'sparsenet_jax.data', 'sparsenet_jax.data.images', 'sparsenet_jax.errors',
                     'sparsenet_jax.model',
                     'sparsenet_jax.model.connectivity',
                     'sparsenet_jax.model.counting', 'sparsenet_jax.model.kernels', 'sparsenet_jax.model.layers',
                     'sparsenet_jax.model.network', 'sparsenet_jax.model.scan', 'sparsenet_jax.model.spec',
                     'sparsenet_jax.tools', 'sparsenet_jax.tools.export', 'sparsenet_jax.training',
                     'sparsenet_jax.training.description']


def test_bad_inputs_are_one_line_errors(run, tmp_path):
  workdir, _, _, TEST_IMAGES = run
  not_an_image = tmp_path / 'notes.png'
  not_an_image.write_text('not an image')
  result = cli('launch/predict.py', f'--workdir={workdir}', TEST_IMAGES[0], str(not_an_image))
  assert result.returncode == 2 and result.stdout == ''
  assert result.stderr.strip().splitlines() == [f'error: cannot read {not_an_image} as an image: '
                                                f'cannot identify image file {str(not_an_image)!r}']
  result = cli('launch/predict.py', f'--workdir={tmp_path}', TEST_IMAGES[0])
  assert result.returncode == 3 and len(result.stderr.strip().splitlines()) == 1
  result = cli('launch/predict.py', f'--model={not_an_image}', TEST_IMAGES[0])
  assert result.returncode == 2 and result.stderr.strip() == (
      f'error: {not_an_image} is not an exported model (not an .npz archive)')


def test_images_of_any_size_and_mode_become_training_images(tmp_path, folder):
  TEST_IMAGES = folder_test_images(folder)
  gray = tmp_path / 'gray.png'
  Image.fromarray(np.full((50, 70), 200, np.uint8)).save(gray)
  rgba = tmp_path / 'rgba.png'
  Image.fromarray(np.full((9, 9, 4), (10, 20, 30, 0), np.uint8)).save(rgba)
  assert export.load_image(str(gray), (32, 32, 3)).tolist() == np.full((32, 32, 3), 200).tolist()
  assert export.load_image(str(rgba), (8, 8, 3))[0, 0].tolist() == [10, 20, 30]
  one = export.load_image(TEST_IMAGES[0], (8, 8, 1))
  assert one.shape == (8, 8, 1) and one.dtype == np.uint8
  with pytest.raises(export.ExportError, match='4-channel'):
    export.load_image(str(gray), (8, 8, 4))


def test_a_plain_npz_is_not_an_exported_model(tmp_path):
  path = str(tmp_path / 'data.npz')
  np.savez(path, image=np.zeros((1, 2, 2, 3), np.uint8))
  with pytest.raises(export.ExportError, match='not an exported model'):
    export.load_exported(path)


def test_top_k_names_classes_and_falls_back_to_indices():
  p = np.array([0.1, 0.6, 0.3])
  assert export.top_k(p, ['a', 'b', 'c'], 2) == [(1, 'b', 0.6), (2, 'c', 0.3)]
  assert export.top_k(p, [], 5) == [(1, '1', 0.6), (2, '2', 0.3), (0, '0', 0.1)]


def test_restoring_a_run_is_one_function_used_by_every_caller(run, monkeypatch):
  """Eval mode calls `restore.restore_run` (spied here); predict and export are entry points that call it
  too (read from their source); it and training's resume are the only callers of the one chain,
  `checkpoints.restore_checkpoint`; the report reads the run's description and opens no checkpoint;
  nothing outside training/ opens a checkpoint."""
  workdir, config, _, _ = run
  calls, chain = [], []
  real, real_chain = restore.restore_run, checkpoints.restore_checkpoint
  monkeypatch.setattr(restore, 'restore_run', lambda *a, **k: calls.append(a[0]) or real(*a, **k))
  monkeypatch.setattr(checkpoints, 'restore_checkpoint', lambda *a, **k: chain.append(a[0]) or real_chain(*a, **k))
  from sparsenet_jax.tools import report
  train.evaluate(config, workdir)
  assert calls == [workdir] and len(chain) == 1
  group = report.group_runs([report.read_run(workdir, 'run')])[0]
  assert report.cost(group) is not None and calls == [workdir] and len(chain) == 1
  for script in ('predict.py', 'export.py'):
    source = open(os.path.join(ROOT, 'launch', script)).read()
    assert 'restore.restore_run(' in source and 'checkpoints.manager' not in source
  def grep(pattern):
    found = subprocess.run(['git', 'grep', '-l', pattern], cwd=ROOT, capture_output=True, text=True).stdout.split()
    return sorted(f for f in found if not f.startswith('tests/'))
  assert grep('checkpoints.manager(\\|CheckpointManager(') == [
      'sparsenet_jax/training/checkpoints.py', 'sparsenet_jax/training/restore.py',
      'sparsenet_jax/training/train.py']
  assert grep('restore_checkpoint(') == ['sparsenet_jax/training/checkpoints.py', 'sparsenet_jax/training/restore.py']
