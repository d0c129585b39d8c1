"""The fault table, values and flags: every value a script reads (config fields, config files, sweep
files, flag values) checked before anything compiles, and flags that conflict or do not apply refused,
never ignored. See tests/fault_table.py for what each case asserts; `says` is the line's own words.

Every case here fails before JAX compiles anything (most before any data is read), so the table is fast
(docs/failures.md has its time).
"""
import os

import numpy as np
import pytest

from conftest import ROOT
from fault_table import Case, DIGITS

SWEEP = '--sweep=' + os.path.join(ROOT, 'configs', 'sweeps', 'digits.py')
w = '--workdir={tmp}/w'
DIGITS_CONFIG = 'from configs import digits\n\n\ndef get_config():\n  config = digits.get_config()\n'


def files(**texts):
  """A `prepare` that writes each NAME=text into the case's folder ({tmp} in a text is that folder)."""
  def prepare(place):
    for name, text in texts.items():
      with open(os.path.join(place.tmp, name.replace('__', '.')), 'w') as f:
        f.write(text.replace('{tmp}', place.tmp))
  prepare.label = '; '.join(f'{name.replace("__", ".")}: {" ".join(text.split())}' for name, text in texts.items())
  return prepare


def config_file(*lines):
  """{tmp}/c.py: configs/digits.py changed by `lines` (statements on `config`)."""
  prepare = files(c__py=DIGITS_CONFIG + ''.join(f'  {line}\n' for line in lines) + '  return config\n')
  prepare.label = 'c.py: digits, ' + '; '.join(lines)
  return prepare


def tiny_images(place):
  """{tmp}/one.npz: 20 RGB images of 1x1 pixels, labels 0 and 1."""
  np.savez(os.path.join(place.tmp, 'one.npz'), image=np.zeros((20, 1, 1, 3), np.uint8),
           label=np.arange(20) % 2)


def blocker(place):
  """{tmp}/a_file, a regular file where a directory is expected; {tmp}/dir, a directory."""
  open(os.path.join(place.tmp, 'a_file'), 'w').write('not a directory')
  os.mkdir(os.path.join(place.tmp, 'dir'))


def link_to_file(place):
  """{tmp}/link.npz, a symbolic link to {tmp}/target (a file the export must not replace)."""
  open(os.path.join(place.tmp, 'target'), 'w').write('not mine')
  os.symlink(os.path.join(place.tmp, 'target'), os.path.join(place.tmp, 'link.npz'))


C = '--config={tmp}/c.py'
RAISES = files(c__py='def get_config():\n  raise RuntimeError("boom")\n')
SWEEP_OF = ('from sparsenet_jax.tools import sweeps\n\n\ndef get_sweep():\n'
            '  return sweeps.runs("x", "{tmp}/c.py", overrides={})\n')
FINITE = r'must be a finite number'
# (script, args, exit code, what the line says, prepare, needs)
ROWS = [
    # Config values: finite numbers, ranges, seeds (main.py, before anything is loaded).
    ('main.py', [DIGITS, w, '--config.num_epochs=nan'], 2, r'config\.num_epochs ' + FINITE + ' > 0, got nan'),
    ('main.py', [DIGITS, w, '--config.num_epochs=inf'], 2, r'config\.num_epochs ' + FINITE + ' > 0, got inf'),
    ('main.py', [DIGITS, w, '--config.num_epochs=-inf'], 2, r'config\.num_epochs ' + FINITE),
    ('main.py', [DIGITS, w, '--config.num_epochs=-5'], 2, r'config\.num_epochs ' + FINITE),
    ('main.py', [DIGITS, w, '--config.num_epochs=1e12'], 2, r'more than the 2147483647 a run can count'),
    ('main.py', [DIGITS, w, '--config.seed=99999999999999999999'], 2, r'config\.seed must be an integer in \[0, '
     r'4294967295\], got 99999999999999999999'),
    ('main.py', [DIGITS, w, '--config.seed=-1'], 2, r'config\.seed must be an integer in \[0, 4294967295\]'),
    ('main.py', [DIGITS, w, '--config.seed=4294967296'], 2, r'config\.seed must be an integer in'),
    ('main.py', [DIGITS, w, '--config.learning_rates=(0.1,inf,0.001)'], 2,
     r"config\.learning_rates: '\(0\.1,inf,0\.001\)' is not a finite number"),
    ('main.py', [DIGITS, w, '--config.learning_rates=(0.1,nan,0.001)'], 2,
     r"config\.learning_rates: '\(0\.1,nan,0\.001\)' is not a finite number"),
    ('main.py', [DIGITS, w, '--config.learning_rates=(0.1,-0.01,0.001)'], 2, r'must be non-negative numbers'),
    ('main.py', [DIGITS, w, '--config.learning_rates=(0.1,0.01)'], 2, r'learning_rates has 2 values; it needs'),
    ('main.py', [DIGITS, w, '--config.lr_boundaries_epochs=(15.0,inf)'], 2,
     r"config\.lr_boundaries_epochs: '\(15\.0,inf\)' is not a finite number"),
    ('main.py', [DIGITS, w, '--config.weight_decay=nan'], 2, r'config\.weight_decay ' + FINITE + ' >= 0, got nan'),
    ('main.py', [DIGITS, w, '--config.weight_decay=inf'], 2, r'config\.weight_decay ' + FINITE),
    ('main.py', [DIGITS, w, '--config.weight_decay=-0.0001'], 2, r'config\.weight_decay ' + FINITE),
    ('main.py', [DIGITS, w, '--config.optimizer.kwargs.momentum=-1'], 2,
     r'config\.optimizer\.kwargs\.momentum must be a finite number in \[0, 1\), got -1'),
    ('main.py', [DIGITS, w, '--config.optimizer.kwargs.momentum=nan'], 2, r'kwargs\.momentum must be a finite'),
    ('main.py', [DIGITS, w, '--config.optimizer.kwargs.momentum=1.5'], 2, r'kwargs\.momentum must be a finite'),
    ('main.py', [DIGITS, w, '--config.optimizer.name=adamw'], 2, r'optax\.adamw does not take'),
    ('main.py', [DIGITS, w, '--config.num_train_steps=-5'], 2, r'config\.num_train_steps must be an integer in '
     r'\[-1, 2147483647\]'),
    ('main.py', [DIGITS, w, '--config.num_train_steps=3000000000'], 2, r'config\.num_train_steps must be'),
    ('main.py', [DIGITS, w, '--config.dataset.validation_size=-1'], 2, r'dataset\.validation_size must be an integer'),
    ('main.py', [DIGITS, w, '--config.dataset.num_classes=0'], 2, r'dataset\.num_classes must be a positive'),
    ('main.py', [DIGITS, w, '--config.max_device_dataset_bytes=0'], 2, r'max_device_dataset_bytes must be a pos'),
    ('main.py', [DIGITS, w, '--config.keep_checkpoints=0'], 2, r'config\.keep_checkpoints must be a positive'),
    ('main.py', [DIGITS, w, '--config.model.path=None'], 2, r'None is no value on the command line.*'
     r'--config\.model\.connectivity=dense'),
    ('main.py', [DIGITS, w, '--config.model.growth_rate=none'], 2, r'--config\.model\.growth_rate=none: None is no'),
    ('main.py', [DIGITS, w, '--config.seed=None'], 2, r'--config\.seed=None: None is no value'),
    ('main.py', [DIGITS, w, '--config.model.connectivity=dense', '--config.model.path=4'], 2,
     r"path=4 does not apply to connectivity='dense', which reads no parameters"),
    ('main.py', [DIGITS, w, '--config.model.connectivity=log', '--config.model.near=1'], 2,
     r"near=1 does not apply to connectivity='log'"),
    # An input too small for the network: found from the spec, before the model is traced.
    ('main.py', [DIGITS, w, '--config.model.blocks=(2,2,2,2,2,2)'], 2, r'8x8 images are too small for blocks='
     r'\(2, 2, 2, 2, 2, 2\): its 5 transition\(s\) .* at least 32x32 \(spec\.min_image_size\)'),
    ('main.py', [DIGITS, w, '--config.model.blocks=(1,1,1,1,1)'], 2, r'8x8 images .* at least 16x16'),
    ('main.py', [DIGITS, w, '--config.dataset.name=npz', '--config.dataset.train_path={tmp}/one.npz',
                 '--config.dataset.test_path={tmp}/one.npz', '--config.batch_size=4', '--config.eval_batch_size=4'],
     2, r'1x1 images are too small .* at least 4x4', tiny_images),
    # Multi-process flags, and flags that do not apply.
    ('main.py', [DIGITS, w, '--process_id=5', '--num_processes=2'], 2,
     r'--process_id=5 must be below --num_processes=2: the processes are 0 \.\. 1'),
    ('main.py', [DIGITS, w, '--process_id=2', '--num_processes=2'], 2, r'--process_id=2 must be below'),
    ('main.py', [DIGITS, w, '--process_id=0'], 2, r'--process_id=0 needs --num_processes'),
    ('main.py', [DIGITS, w, '--num_processes=2'], 2, r'needs --coordinator_address, --num_processes and '
     r'--process_id together'),
    ('main.py', [DIGITS, w, '--coordinator_address=127.0.0.1:1'], 2,
     r'needs --coordinator_address, --num_processes and --process_id together'),
    ('main.py', [DIGITS, w, '--mode=eval', '--extend'], 2, r'--extend trains a finished run further; it does not '
     r'apply to --mode=eval'),
    # Config files (written into the case's folder).
    ('main.py', [C, w], 2, r'config file .*c\.py: get_config\(\) returned dict, not an ml_collections\.ConfigDict',
     files(c__py='def get_config():\n  return {"seed": 0}\n')),
    ('main.py', [C, w, '--config.seed=1'], 2, r'returned dict, not an ml_collections\.ConfigDict',
     files(c__py='def get_config():\n  return {"seed": 0}\n')),
    ('main.py', [C, w], 2, r'returned list, not an ml_collections\.ConfigDict',
     files(c__py='def get_config():\n  return [1]\n')),
    ('main.py', [C, w], 2, r'get_config\(\) returns no config\.dataset, which the code reads',
     config_file("del config['dataset']")),
    ('main.py', [C, w], 2, r'get_config\(\) returns no config\.optimizer', config_file("del config['optimizer']")),
    ('main.py', [C, w], 2, r'get_config\(\) returns no config\.seed', config_file("del config['seed']")),
    ('main.py', [C, w], 2, r'get_config\(\) returns no config\.model\.name', config_file("del config.model['name']")),
    ('main.py', [C, w], 2, r'returns no config\.dataset\.download', config_file("del config.dataset['download']")),
    ('main.py', [C, w], 2, r'config file .*c\.py defines no get_config\(\)', files(c__py='CONFIG = 1\n')),
    ('main.py', [C, w], 2, r'config file .*c\.py: RuntimeError: boom', RAISES),
    ('main.py', [C, w], 2, r'config file .*c\.py: ZeroDivisionError', files(c__py='1 / 0\n')),
    ('main.py', [C, w], 2, r"sets config\.num_epoch, a field no code reads; did you mean 'num_epochs'\?",
     config_file('config.num_epoch = 3.0')),
    ('main.py', [C, w], 2, r"sets config\.dataset\.trainpath, a field no code reads; did you mean "
     r"'dataset\.train_path'\?", config_file("config.dataset.trainpath = 'x.npz'")),
    ('main.py', [C, w], 2, r"sets config\.model\.growthrate, a field no code reads; did you mean "
     r"'model\.growth_rate'\?", config_file('config.model.growthrate = 4')),
    ('main.py', [C, w], 2, r'sets config\.dataset\.name\.x, a field no code reads',
     config_file('config.dataset = {"name": {"x": 1}}')),
    ('main.py', [C, w], 2, r"config\.dataset must be a section \(a ConfigDict\), got 'digits'",
     files(c__py="import ml_collections\nfrom configs import digits\n\n\ndef get_config():\n"
                 "  return ml_collections.ConfigDict(dict(digits.get_config().to_dict(), dataset='digits'))\n")),
    ('main.py', [C, w], 2, r"config\.learning_rates: inf is not a finite number",
     config_file("config.learning_rates = (0.1, float('inf'), 0.001)")),
    ('main.py', [C, w], 2, r'config\.optimizer\.kwargs\.b2 must be a finite number in \[0, 1\), got 1\.0',
     config_file("config.optimizer.name = 'adam'", 'config.optimizer.kwargs = {"b2": 1.0}')),
    ('main.py', [C, w], 2, r'config\.optimizer\.kwargs\.eps must be a finite number >= 0',
     config_file("config.optimizer.name = 'adam'", 'config.optimizer.kwargs = {"eps": -1e-8}')),
    ('main.py', [C, w], 2, r"config\.seed must be an integer in \[0, 4294967295\], got 1099511627776",
     config_file('config.seed = 2 ** 40')),
    ('main.py', [C, w], 2, r"config\.num_epochs must be a finite number > 0, got nan",
     config_file("config.num_epochs = float('nan')")),
    ('main.py', [C, w], 2, r"c\.py: TypeError: Could not override field 'seed' \(reference\)\. 0 is of original type",
     config_file("config.seed = '0'")),  # ml_collections' own refusal of another type
    # summary.py: flags that do not apply, and the smallest input (the same function as training's).
    ('summary.py', ['--model=fig3', '--growth_rate=4'], 2, r'--growth_rate does not apply to --model=fig3'),
    ('summary.py', ['--model=fig3', '--blocks=3,3'], 2, r'--blocks does not apply to --model=fig3'),
    ('summary.py', ['--model=fig3', '--path=4'], 2, r'--path does not apply to --model=fig3'),
    ('summary.py', ['--model=fig3', '--json'], 2, r'--json does not apply to --model=fig3'),
    ('summary.py', ['--model=fig3', '--draw={tmp}/x.png'], 2, r'--draw does not apply to --model=fig3'),
    ('summary.py', ['--connectivity=dense', '--path=4'], 2, r"path=4 does not apply to connectivity='dense'"),
    ('summary.py', ['--connectivity=log', '--near=2'], 2, r"near=2 does not apply to connectivity='log'"),
    ('summary.py', ['--scan', '--json'], 2, r'--json does not apply with --scan'),
    ('summary.py', ['--scan', '--draw={tmp}/x.png'], 2, r'--draw does not apply with --scan'),
    ('summary.py', ['--scan', '--image_size=16'], 2, r'--image_size does not apply with --scan'),
    ('summary.py', ['--scan_chunk=2'], 2, r'--scan_chunk does not apply without --scan'),
    ('summary.py', ['--model=sparsenet_bc_v1', '--image_size=2'], 2,
     r'--image_size=2: 2x2 images are too small for blocks=\(8, 12, 16\).* at least 4x4'),
    ('summary.py', ['--blocks=1,1,1,1,1,1', '--image_size=16'], 2, r'16x16 images .* at least 32x32'),
    ('summary.py', ['--model=all', '--image_size=1'], 2, r'--image_size=1: 1x1 images are too small'),
    ('summary.py', ['--draw={tmp}/no_dir/x.png'], 2, r'--draw must be a file in an existing directory, got '),
    ('summary.py', ['--draw={tmp}/dir'], 2, r'--draw must be a file in an existing directory', blocker),
    ('summary.py', ['--draw={tmp}/a_file/x.png'], 2, r'--draw must be a file in an existing directory', blocker),
    # bench.py: flags that conflict or do not apply.
    ('bench.py', ['--steps=0', '--rounds=2'], 2, r'--rounds replaces --steps: give one of them'),
    ('bench.py', ['--plot={tmp}/x.png'], 2, r'--plot applies only with --sweep_depth'),
    ('bench.py', ['--sweep_models=densenet_40'], 2, r'--sweep_models applies only with --sweep_depth'),
    ('bench.py', ['--sweep_depth=2', '--model=densenet_40'], 2, r'--model does not apply with --sweep_depth'),
    ('bench.py', ['--sweep_depth=2', '--blocks=2,2'], 2, r'--blocks does not apply with --sweep_depth'),
    ('bench.py', ['--mode=eval', '--augment=none'], 2, r'--augment applies only to the train step'),
    ('bench.py', ['--model=densenet_40', '--image_size=2', '--steps=0'], 2,
     r'--image_size=2 for densenet_40: 2x2 images are too small .* at least 4x4'),
    ('bench.py', ['--sweep_depth=2', '--plot={tmp}/no_dir/x.png'], 2, r'--plot must be a file in an existing dir'),
    # sweep.py: sweep files and the configs of their runs, checked before anything starts.
    ('sweep.py', ['--sweep={tmp}/s.py', w, '--dry_run'], 2, r's\.py: get_sweep\(\*\*\{\}\): RuntimeError: boom',
     files(s__py='def get_sweep():\n  raise RuntimeError("boom")\n')),
    ('sweep.py', ['--sweep={tmp}/s.py', w], 2, r'get_sweep\(\*\*\{\}\): RuntimeError: boom',
     files(s__py='def get_sweep():\n  raise RuntimeError("boom")\n')),
    ('sweep.py', [SWEEP + ':num_epochs=-5', w, '--dry_run'], 2,
     r'run digits_num_epochs-5_seed0 does not build: config\.num_epochs must be a finite number > 0'),
    ('sweep.py', [SWEEP + ':num_epochs=-5', w], 2, r'run digits_num_epochs-5_seed0 does not build'),
    ('sweep.py', [SWEEP + ':num_epochs=-5', w, '--slurm'], 2, r'run digits_num_epochs-5_seed0 does not build'),
    ('sweep.py', [SWEEP + ':num_epochs=1e999', w, '--dry_run'], 2, r'does not build: config\.num_epochs .* got inf'),
    ('sweep.py', ['--sweep={tmp}/s.py', w, '--dry_run'], 2, r'run x does not build: config file .*c\.py: '
     r'RuntimeError: boom', files(s__py=SWEEP_OF, c__py='def get_config():\n  raise RuntimeError("boom")\n')),
    ('sweep.py', ['--sweep={tmp}/s.py', w], 2, r'run x does not build: config file .*c\.py: RuntimeError',
     files(s__py=SWEEP_OF, c__py='def get_config():\n  raise RuntimeError("boom")\n')),
    ('sweep.py', ['--sweep={tmp}/s.py', w, '--dry_run'], 2, r'run x does not build: config file .*c\.py defines no '
     r'get_config\(\)', files(s__py=SWEEP_OF, c__py='CONFIG = 1\n')),
    ('sweep.py', ['--sweep={tmp}/s.py', w, '--dry_run'], 2, r"run x does not build: config file .*c\.py sets "
     r"config\.num_epoch, a field no code reads", files(s__py=SWEEP_OF, c__py=DIGITS_CONFIG +
                                                        '  config.num_epoch = 1.0\n  return config\n')),
    ('sweep.py', ['--sweep={tmp}/s.py', w, '--dry_run'], 2, r'run x does not build: config file .*c\.py: '
     r'get_config\(\) returned dict', files(s__py=SWEEP_OF, c__py='def get_config():\n  return {}\n')),
    ('sweep.py', ['--sweep={tmp}/s.py', w, '--dry_run'], 2, r'run x does not build: 8x8 images are too small .* '
     r'at least 32x32', files(s__py=SWEEP_OF.replace('{}', '{"model.blocks": (2, 2, 2, 2, 2, 2)}'),
                              c__py=DIGITS_CONFIG + '  return config\n')),
    ('sweep.py', ['--sweep={tmp}/s.py', w, '--dry_run'], 2, r'run x does not build: config\.seed must be an integer',
     files(s__py=SWEEP_OF.replace('{}', '{"seed": -1}'), c__py=DIGITS_CONFIG + '  return config\n')),
    ('sweep.py', [SWEEP, w, '--slurm', '--dry_run'], 2, r'--dry_run lists the runs and --slurm writes their array'),
    ('sweep.py', [SWEEP, '--workdir={tmp}/a_file/sweep', '--slurm'], 1,
     r'^I/O error: cannot use .*a_file/sweep: Not a directory$', blocker),
    # export.py: --out is a file in a directory that exists, and --overwrite replaces only a regular file.
    ('export.py', ['--workdir={run}', '--out={tmp}/dir', '--overwrite'], 2,
     r'--out must be a file in an existing directory, got .*/dir', blocker, ('run',)),
    ('export.py', ['--workdir={run}', '--out={tmp}/no_dir/m.npz'], 2, r'--out must be a file in an existing dir'),
    ('export.py', ['--workdir={run}', '--out={tmp}/link.npz', '--overwrite'], 2,
     r'link\.npz is a symbolic link; an export replaces only a regular file, even with --overwrite', link_to_file,
     ('run',)),
    ('export.py', ['--workdir={run}', '--out={tmp}/link.npz'], 2, r'link\.npz is a symbolic link', link_to_file,
     ('run',)),
    # prepare_data.py: a mirror that is not a URL, refused before the data directory is made.
    ('prepare_data.py', ['--dataset=cifar10', '--data_dir={tmp}/data', '--mirror=notaurl'], 2,
     r"^data error: dataset\.mirror must be an http://, https:// or file:// base URL, got 'notaurl'$"),
    ('prepare_data.py', ['--dataset=svhn', '--data_dir={tmp}/data', '--mirror=ftp://x/'], 2,
     r'dataset\.mirror must be'),
    ('main.py', [DIGITS, w, '--config.dataset.mirror=notaurl'], 2, r'^data error: dataset\.mirror must be an http'),
    # predict.py, report.py: one source of a model; an OSError worded as a sentence naming the path.
    ('predict.py', ['--workdir={tmp}', '--model={tmp}/m.npz', 'x.png'], 2, r'give one of --workdir=RUN or --model'),
    ('report.py', ['--workdir={run}', '--out={tmp}/a_file/report'], 1,
     r'^I/O error: cannot use .*a_file/report: (Not a directory|File exists)$', blocker, ('run',)),
]


def name(script, args, prepare=None, *_):
  """The case's id: its command, and what its `prepare` wrote where that tells it from its neighbours."""
  label = getattr(prepare, 'label', '')
  return f'{script} {" ".join(args)}'.replace(ROOT, '.') + (f' [{label}]' if label else '')


CASES = [Case(name(script, args, *rest), script, args, code, says, *rest)
         for script, args, code, says, *rest in ROWS]


@pytest.mark.parametrize('case', CASES, ids=str)
def test_value(case, faults, tmp_path):
  faults.check(case, tmp_path)


@pytest.mark.parametrize('path', sorted(p for p in os.listdir(os.path.join(ROOT, 'configs')) if p.endswith('.py')
                                        and p not in ('__init__.py', 'default.py')))
def test_every_config_of_the_repository_passes_the_checks(path):
  """check_file is as strict as the code: every config the repository ships has exactly the fields the
  code reads (load_config checks it as main.py does), and every value in range."""
  from sparsenet_jax.tools import sweep_models
  sweep_models.checked_config(f'configs/{path}', ROOT, {})
