"""The fault table, first part: every launch/ script given nonsense on its command line (flags, arguments,
config overrides, paths that are not what they should be). See tests/fault_table.py for what each case
asserts."""
import os

import pytest

from conftest import ROOT
from fault_table import Case, DIGITS

C10 = '--config=' + os.path.join(ROOT, 'configs', 'cifar10_v1.py')
SWEEP = '--sweep=' + os.path.join(ROOT, 'configs', 'sweeps', 'digits.py')


def files(place):
  """A file that is neither a directory nor a model, and a sweep file that does not parse."""
  open(os.path.join(place.tmp, 'a_file'), 'w').write('not a directory, not a model')
  open(os.path.join(place.tmp, 'bad_sweep.py'), 'w').write('def get_sweep(:\n')


w = '--workdir={tmp}/run'
ROWS = [
    ('main.py', [DIGITS, w, 'stray'], 2),
    ('main.py', [DIGITS, w, '--no_such_flag=1'], 2),
    ('main.py', [DIGITS], 2),  # --workdir missing
    ('main.py', [C10 + ':variant=bc,foo=1', w], 2),
    ('main.py', [C10 + ':=1', w], 2),
    ('main.py', [C10 + ':variant=zz', w], 2),
    ('main.py', [DIGITS + ':variant=bc', w], 2),  # digits takes no arguments
    ('main.py', [DIGITS, w, '--config.model.growht_rate=3'], 2),
    ('main.py', [DIGITS, w, '--config.num_epochs=abc'], 2),
    ('main.py', [DIGITS, w, '--config.batch_size=0'], 2),
    ('main.py', [DIGITS, w, '--config.batch_size=-64'], 2),
    ('main.py', [DIGITS, w, '--config.num_epochs=0'], 2),
    ('main.py', [DIGITS, w, '--config.eval_batch_size=0'], 2),
    ('main.py', [DIGITS, w, '--config.log_every_steps=0'], 2),
    ('main.py', [DIGITS, w, '--num_processes=0'], 2),
    ('main.py', [DIGITS, w, '--process_id=-1'], 2),
    ('main.py', [DIGITS, w, '--mode=nope'], 2),
    ('summary.py', ['stray'], 2),
    ('summary.py', ['--nope'], 2),
    ('summary.py', ['--image_size=0'], 2),
    ('summary.py', ['--num_classes=0'], 2),
    ('summary.py', ['--growth_rate=-1'], 2),
    ('summary.py', ['--blocks=0,4'], 2),
    ('summary.py', ['--blocks=a,b'], 2),
    ('summary.py', ['--scan_chunk=0'], 2),
    ('summary.py', ['--near=-1'], 2),
    ('summary.py', ['--model=no_such_preset'], 2),
    ('bench.py', ['stray'], 2),
    ('bench.py', ['--batch_size=0'], 2),
    ('bench.py', ['--batch_size=-8'], 2),
    ('bench.py', ['--steps=-1'], 2),
    ('bench.py', ['--rounds=0'], 2),
    ('bench.py', ['--image_size=0'], 2),
    ('bench.py', ['--num_classes=0'], 2),
    ('bench.py', ['--blocks=0'], 2),
    ('bench.py', ['--sweep_depth=0'], 2),
    ('bench.py', ['--model=no_such_preset'], 2),
    ('sweep.py', ['stray', SWEEP, w], 2),
    ('sweep.py', [SWEEP, w, '--devices_per_run=0'], 2),
    ('sweep.py', [SWEEP, w, '--max_parallel=0'], 2),
    ('sweep.py', [SWEEP + ':foo=1', w, '--dry_run'], 2),
    ('sweep.py', [SWEEP, '--workdir={tmp}/a_file', '--dry_run'], 2),
    ('sweep.py', [SWEEP, '--workdir={tmp}/a_file'], 2),
    ('sweep.py', ['--sweep={tmp}/bad_sweep.py', w, '--dry_run'], 2),
    ('sweep.py', [w], 2),  # --sweep missing
    ('report.py', ['stray', w], 2),
    ('report.py', ['--nope', w], 2),
    ('report.py', ['--workdir={tmp}/no_such_dir'], 2),
    ('predict.py', ['--top=0', '--model={tmp}/a_file', 'x.png'], 2),
    ('predict.py', ['x.png'], 2),  # neither --workdir nor --model
    ('predict.py', ['--model={tmp}/a_file'], 2),  # no images
    ('predict.py', ['--model={tmp}/a_file', 'x.png'], 2),  # not an exported model
    ('predict.py', ['--workdir={tmp}/no_such_run', 'x.png'], 3),
    ('export.py', ['stray', w, '--out=x.npz'], 2),
    ('export.py', [w], 2),  # --out missing
    ('export.py', ['--workdir={tmp}/no_such_run', '--out={tmp}/x.npz'], 3),
    ('bench_stream.py', [], 2),  # --root missing
    ('bench_stream.py', ['--root={tmp}/no_such_dir'], 2),
    ('bench_stream.py', ['--root={tmp}', '--workers=-1'], 2),
    ('bench_stream.py', ['--root={tmp}', '--batch_size=0'], 2),
    ('prepare_data.py', [], 2),  # --dataset missing
    ('prepare_data.py', ['--dataset=imagenet'], 2),
    ('prepare_data.py', ['stray', '--dataset=cifar10'], 2),
    ('prepare_data.py', ['--dataset=cifar10', '--data_dir={tmp}/a_file'], 2),  # a file, not a directory
]
CASES = [Case(f'{script} {" ".join(args)}'.replace(ROOT, '.'), script, args, code,
              prepare=files) for script, args, code in ROWS]


@pytest.mark.parametrize('case', CASES, ids=str)
def test_cli(case, faults, tmp_path):
  faults.check(case, tmp_path)
