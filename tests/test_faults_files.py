"""The fault table, files: every file the project reads, damaged on a copy of the trained run or its export,
through each script that reads it: a workdir's config.json, run.json, metrics.jsonl and starts.jsonl; its
checkpoints; an exported model; images; the prepared dataset cache. Each refusal is one line naming the file
and what is wrong, with nothing changed (tests/fault_table.py). The damage a reader skips with a warning
and carries on (a cut or damaged line of a JSON-lines file, a run the report cannot read) is in
tests/test_faults_skipped.py."""
import json
import os
import shutil
import struct
import zlib

import numpy as np
import pytest

from conftest import ROOT
from fault_table import Case, TINY
from file_damage import DELETE, both, checkpoints_as, directory, edit_json, no_checkpoints, resumed_once, setting
from file_damage import cut, unfinished, write

# ----------------------------------------------------------------------------------------------------
# The workdir's JSON files, through a resume (main.py).

MAIN = [*TINY, '--workdir={run}']
SWEEP = ['--sweep=' + os.path.join(ROOT, 'configs', 'sweeps', 'digits.py') + ':seeds=1', '--workdir={tmp}/sweep',
         '--dry_run']
SWEEP_RUN = 'digits_num_epochs1_seed0'  # the name the digits sweep gives its one run
JSON_DAMAGE = [  # (what, prepare of the file NAME, the line says)
    ('not JSON', lambda n: write(n, b'{"model": '), 'is not JSON'),
    ('empty', lambda n: write(n, b''), 'is empty'),
    ('a 0xff byte', lambda n: write(n, b'\xff{}'), 'is not UTF-8 text .byte 0xff'),
    ('a JSON list', lambda n: write(n, b'[1, 2]'), 'a JSON list'),
    ('a directory', directory, 'cannot read .*: Is a directory'),
]
CONFIG_DAMAGE = [
    ('{}', write('{run}/config.json', b'{}'), 'model.name must be a preset name, the file lacks it'),
    ('no model.name', edit_json('{run}/config.json', setting('model', 'name', DELETE)), 'model.name must be'),
    ('dataset.name a number', edit_json('{run}/config.json', setting('dataset', 'name', 7)), 'dataset.name .* has 7'),
    ('num_epochs a string', edit_json('{run}/config.json', setting('num_epochs', 'many')), 'num_epochs must be a n'),
    ('seed a string', edit_json('{run}/config.json', setting('seed', 'x')), "seed must be an integer, .* has 'x'"),
    ('num_train_steps 1.5', edit_json('{run}/config.json', setting('num_train_steps', 1.5)), 'num_train_steps'),
]
DESCRIPTION_DAMAGE = [
    ('{}', write('{run}/run.json', b'{}'), 'holds no model description'),
    ('growth_rate a string', edit_json('{run}/run.json', setting('model', 'growth_rate', 'x')), 'model cannot be b'),
    ('an unknown model field', edit_json('{run}/run.json', setting('model', 'depth', 3)), 'unknown model field'),
    ('image_shape [8, 8]', edit_json('{run}/run.json', setting('image_shape', [8, 8])), r'image_shape must be \['),
    ('image_shape 0', edit_json('{run}/run.json', setting('image_shape', [8, 0, 1])), 'image_shape must be'),
    ('std [0]', edit_json('{run}/run.json', setting('std', [0])), 'std must be positive'),
    ('mean of 3 channels', edit_json('{run}/run.json', setting('mean', [1, 2, 3])), 'mean must be 1 finite'),
    ('mean a string', edit_json('{run}/run.json', setting('mean', ['x'])), 'mean must be 1 finite'),
    ('3 class names', edit_json('{run}/run.json', setting('class_names', ['a', 'b', 'c'])), 'class_names has 3'),
]
RESTORE = 'restore it from a copy, or start the run again in another workdir'
REWRITTEN = 'delete it, and the next start of the run writes it again'
WORKDIR = (
    [Case(f'main: config.json {what}', 'main.py', MAIN, 2, rf'workdir error: (?=.*/config.json).*{says}.*{RESTORE}',
          prepare=damage('{run}/config.json'), needs=('run',)) for what, damage, says in JSON_DAMAGE] +
    [Case(f'main: config.json {what}', 'main.py', MAIN, 2, rf'workdir error: .*/config.json: .*{says}.*{RESTORE}',
          prepare=damage, needs=('run',)) for what, damage, says in CONFIG_DAMAGE] +
    [Case(f'main: run.json {what}', 'main.py', MAIN, 2, rf'workdir error: (?=.*/run.json).*{says}.*{REWRITTEN}',
          prepare=damage('{run}/run.json'), needs=('run',)) for what, damage, says in JSON_DAMAGE] +
    [Case(f'main: run.json {what}', 'main.py', MAIN, 2,
          rf'workdir error: .*/run.json is damaged: .*{says}.*{REWRITTEN}',
          prepare=damage, needs=('run',)) for what, damage, says in DESCRIPTION_DAMAGE] +
    [Case('main: metrics.jsonl a directory', 'main.py', MAIN, 2, 'cannot read .*/metrics.jsonl: Is a directory',
          prepare=directory('{run}/metrics.jsonl'), needs=('run',)),
     Case('sweep: a run whose metrics.jsonl is a directory', 'sweep.py', SWEEP, 2,
          f'error: cannot read .*/{SWEEP_RUN}/metrics.jsonl: Is a directory',
          prepare=lambda p: os.makedirs(f'{p.tmp}/sweep/{SWEEP_RUN}/metrics.jsonl')),
     Case('main: starts.jsonl a directory, no checkpoints', 'main.py', MAIN, 2,
          'cannot read .*/starts.jsonl: Is a directory',
          prepare=both(unfinished, no_checkpoints, directory('{run}/starts.jsonl')), needs=('run',))]
)

# ----------------------------------------------------------------------------------------------------
# Checkpoints, through every script that reads them.

CHECKPOINT_READERS = [('main', 'main.py', MAIN), ('eval', 'main.py', [*MAIN, '--mode=eval']),
                      ('export', 'export.py', ['--workdir={run}', '--out={tmp}/out.npz']),
                      ('predict', 'predict.py', ['--workdir={run}', '{tmp}/any.png'])]
CHECKPOINTS = (
    [Case(f'{name}: checkpoints a {kind}', script, args, 3,
          r'checkpoint error: .*/checkpoints is a (file|link to nothing), not a directory of checkpoints',
          prepare=both(unfinished, checkpoints_as(kind)), needs=('run',))
     for kind in ('file', 'dangling link') for name, script, args in CHECKPOINT_READERS] +
    [Case(f'{name}: checkpoints deleted', script, args, 3,
          'holds no checkpoint .deleted or moved' if name == 'main' else 'no checkpoints in .*: train first',
          prepare=both(unfinished, no_checkpoints), needs=('run',)) for name, script, args in CHECKPOINT_READERS] +
    [Case('main: checkpoints deleted, --extend', 'main.py', [*MAIN, '--config.num_epochs=2', '--extend'], 3,
          r'metrics.jsonl records training up to step 23, but .* holds no checkpoint', prepare=no_checkpoints,
          needs=('run',)),
     Case('main: every checkpoint deleted, a start from step 10', 'main.py', MAIN, 3,
          r'starts.jsonl records a start from step 10, but .* holds no checkpoint .* add --restart',
          prepare=both(unfinished, resumed_once, lambda p: shutil.rmtree(f'{p.run}/checkpoints/23')),
          needs=('run',)),
     Case('main: a checkpoint step that is a file', 'main.py', MAIN, 3, 'starts.jsonl records a start from step 10',
          prepare=both(unfinished, resumed_once, lambda p: shutil.rmtree(f'{p.run}/checkpoints/23'),
                       write('{run}/checkpoints/23', b'x')), needs=('run',)),
     Case('main: --restart with its checkpoints there', 'main.py', [*MAIN, '--restart'], 2,
          r'error: --restart starts again only a run whose checkpoints are gone, but .* holds step 23',
          prepare=unfinished, needs=('run',)),
     Case('main: --restart --mode=eval', 'main.py', [*MAIN, '--restart', '--mode=eval'], 2,
          'usage error: --restart trains: it does not go with --mode=eval', needs=('run',))]
)

# ----------------------------------------------------------------------------------------------------
# Exported models, through predict.py (and export.py, which reads the file it would replace).


def exported(change=None, arrays=None, meta_bytes=None):
  """The export rewritten: `change(meta)` on its header, `arrays(dict)` on its arrays, or raw header bytes."""
  def prepare(place):
    with np.load(place.export, allow_pickle=False) as npz:
      data = {k: npz[k] for k in npz.files}
    meta = json.loads(data['__meta__'].tobytes())
    if change:
      change(meta)
    if arrays:
      arrays(data)
    raw = meta_bytes if meta_bytes is not None else json.dumps(meta).encode()
    data['__meta__'] = np.frombuffer(raw, np.uint8)
    with open(place.export, 'wb') as f:
      np.savez(f, **data)
  return prepare


def first(name_start, new):
  """The first array whose name starts with `name_start` replaced by `new(array)`."""
  def arrays(data):
    key = sorted(k for k in data if k.startswith(name_start))[0]
    data[key] = new(data[key])
  return arrays


def poke(value):
  def new(a):
    a = a.copy()
    a.flat[0] = value
    return a
  return new


EXPORT_DAMAGE = [
    ('__meta__ not JSON', exported(meta_bytes=b'{"format": '), '__meta__ is not a JSON header'),
    ('__meta__ not UTF-8', exported(meta_bytes=b'\xff\xfe'), '__meta__ is not a JSON header'),
    ('__meta__ a list', exported(meta_bytes=b'[]'), '__meta__ holds a JSON list'),
    ('another format', exported(setting('format', 'other')), "format 'other' version 1"),
    ('format version 2', exported(setting('format_version', 2)), 'version 2; this code reads'),
    ('no std', exported(setting('std', DELETE)), '__meta__ lacks std'),
    ('no model', exported(setting('model', DELETE)), '__meta__ lacks model'),
    ('no image_shape', exported(setting('image_shape', DELETE)), '__meta__ lacks image_shape'),
    ('no class_names', exported(setting('class_names', DELETE)), '__meta__ lacks class_names'),
    ('std [0]', exported(setting('std', [0])), r'std must be positive .*got \[0\]'),
    ('std negative', exported(setting('std', [-3.0])), 'std must be positive'),
    ('std empty', exported(setting('std', [])), 'std must be 1 finite numbers'),
    ('mean NaN', exported(setting('mean', [float('nan')])), 'mean must be 1 finite numbers'),
    ('mean of 3 channels', exported(setting('mean', [1, 2, 3])), 'mean must be 1 finite numbers'),
    ('2 class names for 10 classes', exported(setting('class_names', ['a', 'b'])), 'class_names has 2 names'),
    ('class names numbers', exported(setting('class_names', list(range(10)))), 'class_names must be a list of str'),
    ('image_shape of 2', exported(setting('image_shape', [8, 8])), 'image_shape must be'),
    ('image_shape negative', exported(setting('image_shape', [8, -8, 1])), 'image_shape must be'),
    ('image_shape too large for the arrays', exported(setting('image_shape', [8, 8, 3])), 'mean must be 3 finite'),
    ('growth_rate a string', exported(setting('model', 'growth_rate', 'x')), 'its model cannot be built'),
    ('an unknown model field', exported(setting('model', 'depth', 1)), 'unknown model field'),
    ('another growth rate', exported(setting('model', 'growth_rate', 5)), 'variables do not fit the model'),
    ('an array cut', exported(arrays=first('params/', lambda a: a[..., :1])), 'variables do not fit the model'),
    ('an array missing', exported(arrays=lambda d: d.pop(sorted(k for k in d if k.startswith('params/'))[0])),
     'variables do not fit .*the file missing'),
    ('an extra array', exported(arrays=lambda d: d.update({'params/extra': np.zeros(3, np.float32)})),
     'params/extra: the model has missing'),
    ('a NaN weight', exported(arrays=first('params/', poke(np.nan))), 'holds NaN or infinite values'),
    ('an infinite statistic', exported(arrays=first('batch_stats/', poke(np.inf))), 'holds NaN or infinite'),
    ('integer weights', exported(arrays=first('params/', lambda a: a.astype(np.int32))), 'is int32, not floating'),
    ('cut in half', cut('{export}'), r'is not an exported model \(not an .npz archive\)'),
    ('empty', write('{export}', b''), r'is not an exported model \(not an .npz archive\)'),
    ('a plain npz', lambda p: np.savez(p.export, image=np.zeros(3)), 'has no __meta__'),
]


def png(width, height):
  """A valid PNG header (and an empty image stream) of any size: a decoder's limits are found from it."""
  def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)) +
          chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b''))


def image(kind):
  """{tmp}/x.png made as `kind`."""
  def prepare(place):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    path = os.path.join(place.tmp, 'x.png')
    good = os.path.join(place.tmp, 'good.jpg')
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(good)
    data = {'empty': b'', 'text': b'a shopping list', 'a huge header': png(20000, 20000),
            'over the warning limit': png(10000, 10000), 'npy': b'\x93NUMPY\x01\x00',
            'cut JPEG': open(good, 'rb').read()[:600], 'PNG signature only': b'\x89PNG\r\n\x1a\n'}.get(kind)
    if kind == 'a directory':
      os.makedirs(path)
    elif data is not None:
      open(path, 'wb').write(data)
  return prepare


IMAGE_DAMAGE = [
    ('empty', 'is empty .0 bytes.'), ('text', 'cannot identify image file'),
    ('a huge header', "larger than the image decoder accepts .89,478,485 pixels, PIL's limit"),
    ('over the warning limit', 'larger than the image decoder accepts'), ('npy', 'cannot identify image file'),
    ('cut JPEG', 'cannot read .*x.png as an image: .*[Tt]runcated'),
    ('PNG signature only', 'cannot read .*x.png as an image'), ('a directory', 'cannot read .*x.png: Is a directory'),
    ('missing', 'cannot read .*x.png: No such file or directory'),
]
MODEL = ['--model={export}', '{tmp}/good.jpg']
EXPORTS = (
    [Case(f'predict: export {what}', 'predict.py', MODEL, 2, f'error: .*model.npz.*{says}',
          prepare=both(image('none'), damage), needs=('export',)) for what, damage, says in EXPORT_DAMAGE] +
    [Case(f'export: --out an export with {what}', 'export.py', ['--workdir={run}', '--out={export}'], 2,
          r'model.npz exists and is not an exported model: add --overwrite', prepare=damage, needs=('run', 'export'))
     for what, damage, _ in EXPORT_DAMAGE[:2] + EXPORT_DAMAGE[-3:-1]]
)
IMAGES = (
    [Case(f'predict: image {kind}', 'predict.py', ['--model={export}', '{tmp}/good.jpg', '{tmp}/x.png'], 2,
          f'error: .*{says}', prepare=image(kind), needs=('export',)) for kind, says in IMAGE_DAMAGE] +
    [Case(f'predict --workdir: image {kind}', 'predict.py', ['--workdir={run}', '{tmp}/x.png'], 2,
          f'error: .*{says}', prepare=image(kind), needs=('run',)) for kind, says in IMAGE_DAMAGE[:3]]
)


def image_folder(place):
  """A folder whose class b holds only files that do not decode, one of each kind."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  for split in ('train', 'test'):
    for c in 'ab':
      os.makedirs(os.path.join(place.tmp, 'folder', split, c))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(os.path.join(place.tmp, 'folder', split, 'a', '0.png'))
  bad = os.path.join(place.tmp, 'folder', 'train', 'b')
  for name, data in (('empty.png', b''), ('text.jpg', b'notes'), ('bomb.png', png(20000, 20000)),
                     ('header.png', png(8, 8))):
    open(os.path.join(bad, name), 'wb').write(data)


IMAGES.append(Case('main: an image folder whose class holds only damaged files', 'main.py',
                   [*TINY, '--workdir={tmp}/w', '--config.dataset.name=image_folder',
                    '--config.dataset.root={tmp}/folder'], 2,
                   'data error: no readable .png/.jpg/.jpeg images in class folder .*/train/b', prepare=image_folder))

# ----------------------------------------------------------------------------------------------------
# The prepared dataset cache (DATA_DIR/cifar10.npz), through training and prepare_data.py.


def cache(damage=None, **replace):
  """A small valid cifar10 cache written by the project's own writer, then `replace`d arrays or `damage`."""
  def prepare(place):
    from sparsenet_jax.data import cifar_svhn  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(0)
    splits = {s: (rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int32))
              for s, n in (('train', 8), ('test', 4))}
    os.makedirs(os.path.join(place.tmp, 'data'))
    path = cifar_svhn.cache_path(os.path.join(place.tmp, 'data'), 'cifar10')
    cifar_svhn._write_cache(path, splits, [str(i) for i in range(10)])  # pylint: disable=protected-access
    if replace:
      with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
      arrays.update(replace)
      for key in [k for k, v in replace.items() if v is None]:
        del arrays[key]
      with open(path, 'wb') as f:
        np.savez(f, **arrays)
    if damage:
      damage(path)
  return prepare


def flip(path):
  data = bytearray(open(path, 'rb').read())
  data[len(data) // 3] ^= 0xff
  open(path, 'wb').write(data)


def replaced(data):
  def damage(path):
    if data is None:
      os.remove(path)
      os.makedirs(path)
    else:
      open(path, 'wb').write(data(open(path, 'rb').read()) if callable(data) else data)
  return damage


CACHE_DAMAGE = [
    ('cut in half', cache(replaced(lambda d: d[:len(d) // 2])), 'BadZipFile'),
    ('its last byte cut', cache(replaced(lambda d: d[:-1])), 'BadZipFile'),
    ('empty', cache(replaced(b'')), 'BadZipFile'),
    ('text', cache(replaced(b'not an archive')), 'BadZipFile'),
    ('a directory', cache(replaced(None)), r'is not a file .the prepared cifar10 goes there.'),
    ('another format version', cache(version=np.array(7)), 'cache format 7, this code reads 1'),
    ('no test labels', cache(test_label=None), 'it lacks test_label'),
    ('float images', cache(train_image=np.zeros((8, 32, 32, 3), np.float32)), 'train holds float32 images'),
    ('8x8 images', cache(train_image=np.zeros((8, 8, 8, 3), np.uint8)), r'train holds uint8 images \(8, 8, 8, 3\)'),
    ('fewer labels than images', cache(train_label=np.zeros(3, np.int32)), r'labels \(3,\)'),
    ('float labels', cache(test_label=np.zeros(4, np.float32)), 'float32 labels'),
    ('class names as objects', cache(class_names=np.array([None] * 10)), 'class_names.npy holds Python objects'),
    ('a byte flipped', cache(flip), 'Bad CRC-32'),
]
TO_DO = '(delete it and run again .or run launch/prepare_data.py --dataset=cifar10. to prepare it anew|move it aside)'
C10 = ['--config=' + os.path.join(ROOT, 'configs', 'cifar10_v1.py'), '--workdir={tmp}/w',
       '--config.dataset.data_dir={tmp}/data', '--config.dataset.download=False']
CACHES = (
    [Case(f'main: cifar10 cache {what}', 'main.py', C10, 2, f'data error: .*cifar10.npz.*{says}.*{TO_DO}',
          prepare=damage) for what, damage, says in CACHE_DAMAGE] +
    [Case(f'prepare_data: cifar10 cache {what}', 'prepare_data.py', ['--dataset=cifar10', '--data_dir={tmp}/data'],
          2, f'data error: .*cifar10.npz.*{says}.*{TO_DO}', prepare=damage)
     for what, damage, says in CACHE_DAMAGE if what != 'a byte flipped']  # found when the pixels are read
)
CASES = WORKDIR + CHECKPOINTS + EXPORTS + IMAGES + CACHES


@pytest.mark.parametrize('case', CASES, ids=str)
def test_file(case, faults, tmp_path):
  result = faults.check(case, tmp_path)
  if not result['stderr'].startswith('usage error'):  # a flag refused (--restart --mode=eval) names no file
    assert str(tmp_path) in result['stderr']  # the line names the damaged file (or the folder holding it)
