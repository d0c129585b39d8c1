"""One description of each run: training writes it (run.json, and inside every checkpoint), and the resume
rule, the report's grouping and the sweeps read it. Real processes where the issue is a process's
behaviour (a requeued job whose data moved), in-process for the rule itself."""
import json
import os
import shutil

import numpy as np
import pytest

from conftest import ROOT, override
from configs import default
from sparsenet_jax.model import presets
from sparsenet_jax.model import spec as spec_lib
from sparsenet_jax.tools import report
from sparsenet_jax.training import record
from test_faults import run

NPZ_CONFIG = '--config=' + os.path.join(ROOT, 'configs', 'cifar10_npz.py')
# A two-layer SparseNet on 16x16 images: a few seconds a run.
NPZ_TINY = ['--config.model.growth_rate=4', '--config.model.blocks=(1,1)', '--config.model.path=2',
            '--config.batch_size=20', '--config.eval_batch_size=40', '--config.dataset.validation_size=40',
            '--config.checkpoint_every_epochs=1', '--config.eval_every_epochs=1', '--config.log_every_steps=1']


def _npz(path, seed):
  rng = np.random.default_rng(seed)
  np.savez(path, image=rng.integers(0, 256, (100, 16, 16, 3), np.uint8), label=rng.integers(0, 4, 100))
  return str(path)


def _description(workdir):
  return json.load(open(os.path.join(workdir, record.DESCRIPTION)))


def test_a_requeued_run_whose_data_moved_continues_and_other_data_is_refused(tmp_path):
  """The SLURM case: every requeue gets another scratch directory. Moving the data (data_dir, mirror, the
  npz's own path) changes nothing; other content is refused naming both fingerprints. (A preset without
  paper numbers in summary.py: tests/test_summary_cli.py.)"""
  a = _npz(tmp_path / 'a.npz', 0)
  workdir = str(tmp_path / 'run')
  first = [NPZ_CONFIG, f'--workdir={workdir}', *NPZ_TINY, f'--config.dataset.train_path={a}',
           '--config.dataset.data_dir=/scratch/job1']
  r = run(*first, '--config.num_train_steps=3')
  assert r.returncode == 0, r.stderr[-2000:]
  described = _description(workdir)
  assert described['dataset'] == 'npz' and described['image_shape'] == [16, 16, 3]
  assert described['num_classes'] == 4 and described['train_size'] == 60 and described['steps_per_epoch'] == 3
  assert described['model'] == presets.get('sparsenet_bc_v1', growth_rate=4, blocks=(1, 1), path=2,
                                           num_classes=4).architecture()
  meta = json.load(open(next((tmp_path / 'run' / 'checkpoints' / '3' / 'meta').glob('*'))))
  assert {k: meta[k] for k in described} == described  # the checkpoint embeds the same description

  moved = shutil.copy(a, tmp_path / 'moved.npz')
  r = run(NPZ_CONFIG, f'--workdir={workdir}', *NPZ_TINY, f'--config.dataset.train_path={moved}',
          '--config.dataset.data_dir=/scratch/job2', '--config.dataset.mirror=http://127.0.0.1:9/',
          '--config.num_train_steps=6', '--extend')
  assert r.returncode == 0, r.stderr[-2000:]
  assert 'resumed from step 3' in r.stderr
  assert [s['from_step'] for s in record.starts(workdir)] == [0, 3]

  other = _npz(tmp_path / 'other.npz', 1)
  before = open(os.path.join(workdir, 'metrics.jsonl')).read()
  r = run(NPZ_CONFIG, f'--workdir={workdir}', *NPZ_TINY, f'--config.dataset.train_path={other}',
          '--config.num_train_steps=9', '--extend')
  assert r.returncode == 2
  line, = r.stderr.strip().splitlines()
  assert line.startswith(f'config error: {workdir} was trained on npz data with fingerprint '
                         f'{described["fingerprint"]}, but the data this command reads (npz) has fingerprint ')
  assert line.split('has fingerprint ')[1].split(':')[0] not in ('', described['fingerprint'])
  assert open(os.path.join(workdir, 'metrics.jsonl')).read() == before


def _config(**fields):
  return override(json.loads(default.paper_config('cifar10', 'sparsenet_bc_v1').to_json_best_effort()), fields)


# A valid value other than the preset's for every model field the config leaves open (None).
_MODEL_VALUES = {'growth_rate': 8, 'blocks': (2, 2, 2), 'connectivity': 'log', 'path': 10, 'near': 3,
                 'bottleneck': False, 'attention': 'se', 'compression': 'half', 'conv_bias': False,
                 'stem': 'imagenet', 'stem_relu': False, 'stem_features': 24, 'num_classes': 7, 'se_reduction': 4,
                 'bn_momentum': 0.99, 'bn_epsilon': 1e-5, 'dropout': 0.2, 'scan': True, 'scan_chunk': 2,
                 'remat': True, 'conv_impl': 'xla', 'remat_impl': 'tied'}


def _changed(field):
  """A valid value of `field` other than the paper config's."""
  value = record.flatten(_config())[field]
  if field.startswith('model.'):
    return _MODEL_VALUES[field[len('model.'):]]
  if field in ('learning_rates', 'lr_boundaries_epochs'):
    return list(value) + [value[-1] / 10 if field == 'learning_rates' else value[-1] + 10]
  if value is None:
    return 'somewhere'
  return {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v * 2,
          str: lambda v: v + '_elsewhere', tuple: lambda v: tuple(v) + (1.0,)}[type(value)](value)


# What training records for the paper config on CIFAR-10 (the fingerprint stands for the data's content).
_DESCRIBED = record.Description('sparsenet_bc_v1', presets.get('sparsenet_bc_v1').architecture(), 'cifar10',
                                '0123456789abcdef', [32, 32, 3], 10, [], [0.0] * 3, [1.0] * 3, 'cifar', 50000, 781)


def _resume_allowed(tmp_path, field, value):
  workdir = str(tmp_path / field)
  os.makedirs(workdir)
  record.write_config(workdir, json.dumps(_config()))
  record.write_description(workdir, _DESCRIBED)
  try:
    record.check_resume(workdir, _config(**{field: value}), extend=True)
    return True
  except record.DriftError:
    return False


def _grouped(field, value):
  def run_of(config):
    return report.Run('w', 'r', report.normalize(config, _DESCRIBED), [], (), _DESCRIBED,
                      record.identity(config, _DESCRIBED))
  return report.group_key(report.group_fields(run_of(_config()))) == report.group_key(
      report.group_fields(run_of(_config(**{field: value}))))


def test_the_resume_rule_the_report_grouping_and_the_field_kinds_are_one_rule(tmp_path):
  """record.NEUTRAL holds exactly the model's layout fields (their kind in ModelSpec) plus the named
  cadence and data-location fields; a resume may change those and the length, and the report groups runs
  that differ in those and the seed. Every field of the config is checked against the rule."""
  layout = {f'model.{f}' for f in spec_lib.FIELDS if spec_lib.KIND[f] == spec_lib.LAYOUT}
  assert set(record.NEUTRAL) == layout | set(record.CADENCE) | set(record.DATA_LOCATION)
  assert not set(record.NEUTRAL) & set(record.LENGTH)
  fields = record.flatten(_config())
  assert set(record.NEUTRAL) | set(record.LENGTH) | set(record.REPLICATE) <= set(fields)
  for field in fields:
    if field == 'model.name' or field.startswith('optimizer.kwargs'):
      continue
    value = _changed(field)
    resumable, grouped = _resume_allowed(tmp_path, field, value), _grouped(field, value)
    if field in record.NEUTRAL:
      assert resumable and grouped, field
    elif field in record.LENGTH:
      assert resumable and not grouped, field
    elif field in record.REPLICATE:
      assert not resumable and grouped, field
    else:
      assert not resumable and not grouped, field


def test_one_model_spelled_two_ways_is_one_identity():
  """The preset's own path written out is no change: the model is compared resolved."""
  assert record.identity(_config()) == record.identity(_config(**{'model.path': 14, 'model.near': 7}))
  assert record.identity(_config()) != record.identity(_config(**{'model.path': 12}))


def test_the_report_costs_a_run_from_its_description(tmp_path):
  """A run's params come from run.json (the model it resolved, the data's class count), not from a
  re-reading of its config: here the config leaves num_classes open and the data has 100 classes."""
  workdir = tmp_path / 'run'
  os.makedirs(workdir)
  config = _config()
  record.write_config(str(workdir), json.dumps(config))
  spec = presets.get('sparsenet_bc_v1', num_classes=100)
  record.write_description(str(workdir), record.Description(
      'sparsenet_bc_v1', spec.architecture(), 'cifar100', 'f' * 16, [32, 32, 3], 100, [], [0.0] * 3,
      [1.0] * 3, 'cifar', 50000, 781))
  group, = report.group_runs(report.find_runs(str(tmp_path)))
  params, _ = report.cost(group)
  assert params == 828_442 + 90 * (_classifier_inputs(spec) + 1)  # 90 more classes: kernel rows and biases


def _classifier_inputs(spec):
  from sparsenet_jax.model import counting, network
  variables = counting.abstract_variables(network.make(spec))
  return variables['params']['classifier']['kernel'].shape[0]


def test_config_files_accept_any_preset():
  from configs import cifar10_densenet_bc
  config = cifar10_densenet_bc.get_config('model=sparsenet_abc_v2')
  assert config.model.name == 'sparsenet_abc_v2' and config.num_epochs == 300.0  # DenseNet's recipe
  with pytest.raises(ValueError, match='allowed values'):
    cifar10_densenet_bc.get_config('model=no_such_preset')


def test_dry_run_reads_the_data_registry(tmp_path):
  """A sweep's dry run counts each model on its data's real shape and classes (an npz of 16x16 images with
  4 classes here), and a missing npz is one line, not a guess."""
  from sparsenet_jax.tools import sweep_models
  npz = _npz(tmp_path / 'd.npz', 0)
  overrides = {'dataset.name': 'npz', 'dataset.train_path': npz, 'dataset.validation_size': 10}
  spec, shape = sweep_models.model_and_input('configs/digits.py', ROOT, overrides)
  assert shape == (16, 16, 3) and spec.num_classes == 4
  with pytest.raises(ValueError, match='npz file not found'):
    missing = dict(overrides, **{'dataset.train_path': str(tmp_path / 'x')})
    sweep_models.model_and_input('configs/digits.py', ROOT, missing)
