"""Fine-tuning out: `config.init_from` (an exported file or a workdir) starts a run from its weights; another
class count gets a new classifier, said in one line; another architecture is refused naming the field.

A tiny SparseNet-bc trains 3 steps on digits and is exported; the fine-tuning runs train at learning rate 0,
so every weight they took over must come out bit for bit (BatchNorm statistics still move in train mode).
"""
import jax
import numpy as np
import pytest

from conftest import override
from configs import digits as digits_config
from sparsenet_jax.data import datasets
from sparsenet_jax.errors import ConfigError
from sparsenet_jax.tools import export
from sparsenet_jax.training import restore
from sparsenet_jax.training import train


def tiny(**changes):
  return override(digits_config.get_config(), {'model.growth_rate': 4, 'model.blocks': (2, 2), 'model.path': 2,
                                                'num_train_steps': 3, 'log_every_steps': 1,
                                                'eval_batch_size': 400, **changes})


FROZEN = dict(learning_rates=(0.0,), lr_boundaries_epochs=())  # the weights taken over must not move


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  """(workdir, exported file) of a 10-class digits run."""
  root = tmp_path_factory.mktemp('source')
  workdir, path = str(root / 'run'), str(root / 'digits.npz')
  train.train_and_evaluate(tiny(), workdir)
  _, variables, meta = restore.restore_run(workdir)
  export.save_exported(path, variables, meta, source=workdir)
  return workdir, path


@pytest.fixture(scope='module')
def five_classes(tmp_path_factory):
  """Digits 0-4 as npz files: a 5-class dataset of the same image shape."""
  data = datasets.load(digits_config.get_config().dataset)
  root = tmp_path_factory.mktemp('five')
  paths = []
  for name, split in (('train', data.train), ('test', data.test)):
    keep = split.labels < 5
    paths.append(str(root / f'{name}.npz'))
    np.savez(paths[-1], image=split.images[keep], label=split.labels[keep])
  return paths


def params_without_classifier(variables):
  return {k: v for k, v in variables['params'].items() if k != 'classifier'}


def test_an_export_fine_tunes_on_five_classes_with_a_new_classifier(source, five_classes, tmp_path, capsys):
  workdir = str(tmp_path / 'five')
  config = tiny(**FROZEN, **{'dataset.name': 'npz', 'dataset.train_path': five_classes[0],
                             'dataset.test_path': five_classes[1], 'init_from': source[1]})
  final = train.train_and_evaluate(config, workdir)
  assert np.isfinite(final['eval_loss'])
  lines = [line for line in capsys.readouterr().err.splitlines() if 'init_from' in line]
  assert lines == [f'init_from {source[1]}: 10 classes there, 5 here: a new classifier, every other weight '
                   'from there']
  _, exported, _ = export.load_exported(source[1])
  _, tuned, meta = restore.restore_run(workdir)
  assert meta['model']['num_classes'] == 5 and tuned['params']['classifier']['bias'].shape == (5,)
  jax.tree.map(np.testing.assert_array_equal, params_without_classifier(tuned), params_without_classifier(exported))


def test_a_workdir_with_the_same_classes_hands_over_every_weight(source, tmp_path, capsys):
  workdir = str(tmp_path / 'same')
  train.train_and_evaluate(tiny(**FROZEN, init_from=source[0], seed=7), workdir)  # another seed: another init
  assert f'init_from {source[0]}: every weight from there' in capsys.readouterr().err
  _, before, _ = restore.restore_run(source[0])
  _, after, _ = restore.restore_run(workdir)
  jax.tree.map(np.testing.assert_array_equal, after['params'], before['params'])


def test_another_architecture_is_refused_naming_the_field(source, tmp_path):
  with pytest.raises(ConfigError, match=r'was written for growth_rate=4, but the config gives growth_rate=6; '
                     r'fine-tuning keeps the architecture'):
    train.train_and_evaluate(tiny(init_from=source[1], **{'model.growth_rate': 6}), str(tmp_path / 'wide'))
  with pytest.raises(ConfigError, match='no such exported file or workdir'):
    train.train_and_evaluate(tiny(init_from=str(tmp_path / 'nothing.npz')), str(tmp_path / 'none'))
  assert not (tmp_path / 'wide').exists()  # a refused start leaves no workdir behind
