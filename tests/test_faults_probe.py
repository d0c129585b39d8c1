"""A second, independent fault table: bad inputs to every launch/ script, found by probing them one by one
(odd flag values, damaged config files, workdirs and exports, odd images, the environment). Each case is
one line on stderr, its exit code, and nothing already written changed (tests/fault_table.py).

Probed by hand but not here: permissions (the tests may run as root, who reads and writes anything), an
unknown flag in XLA_FLAGS (XLA's own fatal log line, exit 1: the harness sets XLA_FLAGS), SIGINT while a
run starts (exit 130, one line, no workdir: tests/test_faults_lock_signals.py's ground).
"""
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fault_table import DIGITS, Case

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [DIGITS, '--config.model.growth_rate=4', '--config.model.blocks=(2,3)', '--config.model.path=2',
        '--config.num_epochs=1']


def write(name, text, mode='w'):
  def prepare(place):
    path = os.path.join(place.tmp, name.format(tmp=place.tmp))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
      f.write(text)
  return prepare


def config_file(body):
  return write('c.py', 'from ml_collections import config_dict\n' + body)


def image(name, make):
  def prepare(place):
    make(os.path.join(place.tmp, name))
  return prepare


def png_header(width, height, bits=8, color=2):
  """A PNG whose header claims WIDTHxHEIGHT; its data is one empty row."""
  def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
  head = struct.pack('>IIBBBBB', width, height, bits, color, 0, 0, 0)
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', head) + chunk(b'IDAT', zlib.compress(b'\0' * 4)) +
          chunk(b'IEND', b''))


def in_run(name, damage):
  """Damage the file NAME of the copied run."""
  def prepare(place):
    path = os.path.join(place.run, name)
    damage(path)
  return prepare


def truncate(path):
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])


def json_list(path):
  with open(path, 'w') as f:
    f.write('[1, 2, 3]\n')


def unreadable(path):
  os.chmod(path, 0)


def npz(**arrays):
  def prepare(place):
    np.savez(os.path.join(place.tmp, 'm.npz'), **arrays)
  return prepare


_HELD = []  # the locks held for the cases that find their workdir busy, until the session ends


def held(place):
  """Another command holds the run's workdir: this process takes its lock, as a training run there would."""
  from sparsenet_jax.training import workdir_lock  # pylint: disable=import-outside-toplevel
  _HELD.append(workdir_lock.acquire(place.run, 'train'))


def symlink_loop(place):
  os.symlink(os.path.join(place.tmp, 'b'), os.path.join(place.tmp, 'a'))
  os.symlink(os.path.join(place.tmp, 'a'), os.path.join(place.tmp, 'b'))


def read_only(place):
  os.makedirs(os.path.join(place.tmp, 'ro'))
  os.chmod(os.path.join(place.tmp, 'ro'), 0o555)


def export_meta_damaged(place):
  with np.load(place.export, allow_pickle=False) as f:
    arrays = dict(f)
  key = next(k for k in arrays if 'meta' in k)
  arrays[key] = np.array('{"image_shape": "not a shape"}')
  np.savez(place.export, **arrays)


PREDICT_IMAGES = {
    '16bit.png': lambda p: Image.fromarray(np.full((5, 7), 40000, np.uint16)).save(p),
    'one_pixel.png': lambda p: Image.new('RGB', (1, 1)).save(p),
    'rgba.png': lambda p: Image.new('RGBA', (9, 9)).save(p),
    'palette.png': lambda p: Image.new('P', (9, 9)).save(p),
    'cmyk_jpeg.jpg': lambda p: Image.new('CMYK', (9, 9)).save(p, 'JPEG'),
    'bilevel.png': lambda p: Image.new('1', (9, 9)).save(p),
    'float_tiff.tiff': lambda p: Image.new('F', (9, 9)).save(p, 'TIFF'),
    'animated_gif.gif': lambda p: Image.new('P', (9, 9)).save(p, 'GIF', save_all=True,
                                                          append_images=[Image.new('P', (9, 9))]),
    'tall.png': lambda p: Image.new('L', (1, 3000)).save(p),
}

CASES = [
    # main.py: flag values and overrides.
    Case('main: empty num_epochs', 'main.py', [*TINY, '--workdir={tmp}/w', '--config.num_epochs='], 2),
    Case('main: inf num_epochs', 'main.py', [*TINY, '--workdir={tmp}/w', '--config.num_epochs=1e999'], 2),
    Case('main: negative growth', 'main.py', [*TINY, '--workdir={tmp}/w', '--config.model.growth_rate=-4'], 2,
         says='growth_rate'),
    Case('main: tuple growth', 'main.py', [*TINY, '--workdir={tmp}/w', '--config.model.growth_rate=(2,3)'], 2),
    Case('main: blocks with a string', 'main.py', [*TINY, '--workdir={tmp}/w', '--config.model.blocks=(2,"a")'], 2),
    Case('main: blocks empty tuple', 'main.py', [DIGITS, '--workdir={tmp}/w', '--config.model.blocks=()'], 2,
         says='blocks'),
    # config_flags joins a tuple given twice: blocks=(2,3) then blocks=3 trained (2, 3, 3), exit 0.
    Case('main: blocks given twice', 'main.py', [*TINY, '--workdir={tmp}/w', '--config.model.blocks=3'], 2,
         says='more than once'),
    Case('main: blocks given twice, empty', 'main.py', [*TINY, '--workdir={tmp}/w', '--config.model.blocks=()'], 2,
         says='more than once'),
    Case('main: nan learning rate', 'main.py', [*TINY, '--workdir={tmp}/w', '--config.learning_rate=nan'], 2),
    Case('main: huge batch', 'main.py', [*TINY, '--workdir={tmp}/w', '--config.batch_size=99999999999999999999'], 2),
    Case('main: unicode field', 'main.py', [*TINY, '--workdir={tmp}/w', '--config.épocas=1'], 2),
    Case('main: bad value, workdir with a space', 'main.py',
         [*TINY, '--workdir={tmp}/a dir ü', '--config.num_epochs=-1'], 2),
    Case('main: empty workdir', 'main.py', [*TINY, '--workdir=', '--config.num_epochs=-1'], 2),
    Case('main: mode bogus', 'main.py', [*TINY, '--workdir={tmp}/w', '--mode=bogus'], 2),
    Case('main: process id alone', 'main.py', [*TINY, '--workdir={tmp}/w', '--process_id=3'], 2),
    Case('main: negative processes', 'main.py', [*TINY, '--workdir={tmp}/w', '--num_processes=-1'], 2),
    Case('main: stray argument', 'main.py', [*TINY, '--workdir={tmp}/w', 'extra'], 2),
    # main.py: config files.
    Case('main: config syntax error', 'main.py', ['--config={tmp}/c.py', '--workdir={tmp}/w'], 2,
         prepare=config_file('def get_config(:\n')),
    Case('main: config returns an int', 'main.py', ['--config={tmp}/c.py', '--workdir={tmp}/w'], 2,
         prepare=config_file('def get_config():\n  return 3\n')),
    Case('main: config returns a dict', 'main.py', ['--config={tmp}/c.py', '--workdir={tmp}/w'], 2,
         prepare=config_file('def get_config():\n  return {"num_epochs": 1}\n')),
    Case('main: config import fails', 'main.py', ['--config={tmp}/c.py', '--workdir={tmp}/w'], 2,
         prepare=config_file('import no_such_module_xyz\ndef get_config():\n  return None\n')),
    Case('main: config raises', 'main.py', ['--config={tmp}/c.py', '--workdir={tmp}/w'], 2,
         prepare=config_file('def get_config():\n  raise RuntimeError("boom\\nsecond line")\n')),
    Case('main: config empty ConfigDict', 'main.py', ['--config={tmp}/c.py', '--workdir={tmp}/w'], 2,
         prepare=config_file('def get_config():\n  return config_dict.ConfigDict()\n')),
    Case('main: config a folder', 'main.py', ['--config={tmp}', '--workdir={tmp}/w'], 2),
    Case('main: config arg it does not take', 'main.py', [DIGITS + ':nope', '--workdir={tmp}/w'], 2),
    Case('main: config not python', 'main.py', ['--config={tmp}/c.py', '--workdir={tmp}/w'], 2,
         prepare=write('c.py', b'\xff\xfe\x00garbage', 'wb')),
    # main.py: workdirs.
    Case('main: workdir a file', 'main.py', [*TINY, '--workdir={tmp}/f'], 2, prepare=write('f', 'x')),
    Case('main: workdir a symlink loop', 'main.py', [*TINY, '--workdir={tmp}/a'], 2, prepare=symlink_loop),
    Case('main: workdir under a file', 'main.py', [*TINY, '--workdir={tmp}/f/w'], 2, prepare=write('f', 'x')),
    Case('main: config.json a list', 'main.py', [*TINY, '--workdir={run}'], 2, needs=['run'],
         prepare=in_run('config.json', json_list)),
    Case('main: config.json truncated', 'main.py', [*TINY, '--workdir={run}'], 2, needs=['run'],
         prepare=in_run('config.json', truncate)),
    Case('main: metrics.jsonl a list, eval', 'main.py', [*TINY, '--workdir={run}', '--mode=eval'], 0, needs=['run'],
         prepare=in_run('metrics.jsonl', json_list)),
    Case('main: finished run, drifted growth', 'main.py',
         [*TINY, '--workdir={run}', '--config.model.growth_rate=6'], 2, needs=['run']),
    Case('main: workdir held by another command', 'main.py', [*TINY, '--workdir={run}', '--extend'], 2,
         needs=['run'], prepare=held, says='busy'),
    Case('export: workdir held by another command', 'export.py', ['--workdir={run}', '--out={tmp}/m.npz'], 2,
         needs=['run'], prepare=held, says='busy'),
    # summary.py
    Case('summary: blocks letters', 'summary.py', ['--blocks=a,b'], 2),
    Case('summary: blocks empty', 'summary.py', ['--blocks='], 2),
    Case('summary: growth zero', 'summary.py', ['--growth_rate=0'], 2),
    Case('summary: path unicode', 'summary.py', ['--path=ü'], 2),
    Case('summary: path negative', 'summary.py', ['--path=-1'], 2),
    Case('summary: near negative', 'summary.py', ['--near=-1'], 2),
    Case('summary: image size 1', 'summary.py', ['--image_size=1'], 2),
    Case('summary: image size huge', 'summary.py', ['--image_size=10000000000'], 2, says='larger'),
    Case('summary: classes zero', 'summary.py', ['--num_classes=0'], 2),
    Case('summary: unknown model', 'summary.py', ['--model=nope'], 2),
    Case('summary: scan chunk zero', 'summary.py', ['--scan', '--scan_chunk=0'], 2),
    Case('summary: draw into a missing folder', 'summary.py', ['--draw={tmp}/no/x.png'], 2),
    Case('summary: draw onto a folder', 'summary.py', ['--draw={tmp}'], 2),
    # bench.py
    Case('bench: steps negative', 'bench.py', ['--steps=-1'], 2),
    Case('bench: batch zero', 'bench.py', ['--batch_size=0'], 2),
    Case('bench: unknown model', 'bench.py', ['--model=nope'], 2),
    Case('bench: unknown option', 'bench.py', ['--model=densenet_bc_100:bogus'], 2),
    Case('bench: mode bogus', 'bench.py', ['--mode=bogus'], 2),
    Case('bench: blocks letters', 'bench.py', ['--blocks=x,y'], 2),
    Case('bench: sweep depth zero', 'bench.py', ['--sweep_depth=0'], 2),
    Case('bench: plot without sweep', 'bench.py', ['--plot={tmp}/p.png'], 2),
    Case('bench: rounds negative', 'bench.py', ['--rounds=-2'], 2),
    Case('bench: image size huge', 'bench.py', ['--image_size=10000000000', '--steps=0'], 2, says='larger'),
    # bench_stream.py
    Case('bench_stream: root missing', 'bench_stream.py', ['--root={tmp}/none'], 2),
    Case('bench_stream: root a file', 'bench_stream.py', ['--root={tmp}/f'], 2, prepare=write('f', 'x')),
    Case('bench_stream: workers negative', 'bench_stream.py', ['--root={tmp}', '--workers=-1'], 2),
    Case('bench_stream: workers letters', 'bench_stream.py', ['--root={tmp}', '--workers=a'], 2),
    Case('bench_stream: size garbage', 'bench_stream.py', ['--root={tmp}', '--synthetic=2', '--synthetic_size=axb'], 2),
    Case('bench_stream: size zero', 'bench_stream.py', ['--root={tmp}', '--synthetic=2', '--synthetic_size=0x0'], 2),
    Case('bench_stream: synthetic negative', 'bench_stream.py', ['--root={tmp}', '--synthetic=-1'], 2),
    Case('bench_stream: empty root', 'bench_stream.py', ['--root={tmp}'], 2),
    Case('bench_stream: odd class folders', 'bench_stream.py', ['--root={tmp}', '--steps=1'], 2,
         prepare=write('train/a b ü/x.JPEG', 'not a jpeg')),
    # sweep.py
    Case('sweep: file missing', 'sweep.py', ['--sweep={tmp}/none.py', '--workdir={tmp}/w'], 2),
    Case('sweep: bad parameter', 'sweep.py', ['--sweep={tmp}/s.py:=', '--workdir={tmp}/w'], 2,
         prepare=write('s.py', 'x = 1\n')),
    Case('sweep: file with a syntax error', 'sweep.py', ['--sweep={tmp}/s.py', '--workdir={tmp}/w'], 2,
         prepare=write('s.py', 'def (\n')),
    Case('sweep: bad regex', 'sweep.py', ['--sweep={tmp}/s.py', '--workdir={tmp}/w', '--only=('], 2,
         prepare=write('s.py', 'x = 1\n')),
    Case('sweep: devices zero', 'sweep.py', ['--sweep={tmp}/s.py', '--workdir={tmp}/w', '--devices_per_run=0'], 2,
         prepare=write('s.py', 'x = 1\n')),
    Case('sweep: parallel negative', 'sweep.py', ['--sweep={tmp}/s.py', '--workdir={tmp}/w', '--max_parallel=-1'],
         2, prepare=write('s.py', 'x = 1\n')),
    Case('sweep: workdir a file', 'sweep.py', ['--sweep={tmp}/s.py', '--workdir={tmp}/f', '--dry_run'], 2,
         prepare=write('s.py', 'x = 1\n')),
    # report.py
    Case('report: workdir missing', 'report.py', ['--workdir={tmp}/none'], 2),
    Case('report: workdir a file', 'report.py', ['--workdir={tmp}/f'], 2, prepare=write('f', 'x')),
    Case('report: no runs', 'report.py', ['--workdir={tmp}', '--out={tmp}/r'], 2),
    Case('report: out a file', 'report.py', ['--workdir={run}', '--out={tmp}/f'], 2, needs=['run'], says='--out',
         prepare=write('f', 'x')),
    Case('report: symlink loop', 'report.py', ['--workdir={tmp}/a', '--out={tmp}/r'], 2, prepare=symlink_loop),
    Case('report: config.json a list', 'report.py', ['--workdir={run}', '--out={tmp}/r'], 2, needs=['run'],
         says='config.json holds a JSON list',
         prepare=in_run('config.json', json_list)),
    Case('report: metrics.jsonl truncated', 'report.py', ['--workdir={run}', '--out={tmp}/r'], 0, needs=['run'],
         prepare=in_run('metrics.jsonl', truncate)),
    # export.py
    Case('export: workdir missing', 'export.py', ['--workdir={tmp}/none', '--out={tmp}/m.npz'], 3,
         says='no checkpoints'),
    Case('export: out ends with a slash', 'export.py', ['--workdir={run}', '--out={tmp}/m.npz/'], 2, needs=['run']),
    Case('export: out folder missing', 'export.py', ['--workdir={run}', '--out={tmp}/no/m.npz'], 2, needs=['run']),
    Case('export: out a folder', 'export.py', ['--workdir={run}', '--out={tmp}'], 2, needs=['run']),
    Case('export: out a foreign file', 'export.py', ['--workdir={run}', '--out={tmp}/f.npz'], 2, needs=['run'],
         prepare=write('f.npz', 'precious')),
    Case('export: out empty', 'export.py', ['--workdir={run}', '--out='], 2, needs=['run']),
    Case('export: workdir a symlink loop', 'export.py', ['--workdir={tmp}/a', '--out={tmp}/m.npz'], 3,
         prepare=symlink_loop),
    Case('export: run.json truncated', 'export.py', ['--workdir={run}', '--out={tmp}/m.npz'], 0, needs=['run'],
         prepare=in_run('run.json', truncate)),
    # predict.py
    Case('predict: no images', 'predict.py', ['--model={export}'], 2, needs=['export']),
    Case('predict: both sources', 'predict.py', ['--model={export}', '--workdir={run}', 'x.png'], 2,
         needs=['export']),
    Case('predict: top zero', 'predict.py', ['--model={export}', '--top=0', 'x.png'], 2, needs=['export']),
    Case('predict: top a float', 'predict.py', ['--model={export}', '--top=1.5', 'x.png'], 2, needs=['export']),
    Case('predict: image missing', 'predict.py', ['--model={export}', '{tmp}/none.png'], 2, needs=['export']),
    Case('predict: image a folder', 'predict.py', ['--model={export}', '{tmp}'], 2, needs=['export']),
    Case('predict: image empty', 'predict.py', ['--model={export}', '{tmp}/e.png'], 2, needs=['export'],
         prepare=write('e.png', '')),
    Case('predict: image text', 'predict.py', ['--model={export}', '{tmp}/t.png'], 2, needs=['export'],
         prepare=write('t.png', 'hello')),
    Case('predict: image truncated', 'predict.py', ['--model={export}', '{tmp}/x.png'], 2, needs=['export'],
         prepare=image('x.png', lambda p: (Image.effect_noise((64, 64), 50).save(p), truncate(p)))),
    Case('predict: huge header', 'predict.py', ['--model={export}', '{tmp}/h.png'], 2, needs=['export'],
         prepare=write('h.png', png_header(2**31 - 1, 2**31 - 1), 'wb')),
    Case('predict: wide header', 'predict.py', ['--model={export}', '{tmp}/h.png'], 2, needs=['export'],
         prepare=write('h.png', png_header(60000, 60000), 'wb')),
    Case('predict: image a symlink loop', 'predict.py', ['--model={export}', '{tmp}/a'], 2, needs=['export'],
         prepare=symlink_loop),
    Case('predict: model missing', 'predict.py', ['--model={tmp}/none.npz', 'x.png'], 2),
    Case('predict: model text', 'predict.py', ['--model={tmp}/m.npz', 'x.png'], 2, prepare=write('m.npz', 'x')),
    Case('predict: model empty npz', 'predict.py', ['--model={tmp}/m.npz', 'x.png'], 2, prepare=npz()),
    Case('predict: model npz of junk', 'predict.py', ['--model={tmp}/m.npz', 'x.png'], 2,
         prepare=npz(meta=np.array(3), w=np.zeros(3))),
    Case('predict: model npz of objects', 'predict.py', ['--model={tmp}/m.npz', 'x.png'], 2,
         prepare=npz(meta=np.array([{'a': 1}], dtype=object))),
    Case('predict: model truncated', 'predict.py', ['--model={export}', 'x.png'], 2, needs=['export'],
         prepare=lambda place: truncate(place.export)),
    Case('predict: model meta damaged', 'predict.py', ['--model={export}', 'x.png'], 2, needs=['export'],
         prepare=export_meta_damaged),
    Case('predict: model a folder', 'predict.py', ['--model={tmp}', 'x.png'], 2),
    *[Case(f'predict: {name} image', 'predict.py', ['--model={export}', '{tmp}/' + name], 0,
           needs=['export'], prepare=image(name, make)) for name, make in PREDICT_IMAGES.items()],
    Case('predict: odd image name', 'predict.py', ['--model={export}', '{tmp}/-a b ü.png'], 0, needs=['export'],
         prepare=image('-a b ü.png', lambda p: Image.new('L', (4, 4)).save(p))),
    # prepare_data.py
    Case('prepare_data: unknown dataset', 'prepare_data.py', ['--dataset=bogus'], 2),
    Case('prepare_data: data_dir a file', 'prepare_data.py', ['--dataset=cifar10', '--data_dir={tmp}/f'], 2,
         prepare=write('f', 'x')),
    Case('prepare_data: mirror not a url', 'prepare_data.py',
         ['--dataset=cifar10', '--data_dir={tmp}/d', '--mirror=::nope'], 2),
    # The environment: read at import, so each in its own process.
    Case('env: cache dir under a file', 'main.py', [*TINY, '--workdir={tmp}/w'], 2, says='compilation_cache',
         env={'JAX_COMPILATION_CACHE_DIR': '/dev/null/x'}, process=True),
    Case('env: HOME unset, bad value', 'summary.py', ['--growth_rate=-1'], 2, env={'HOME': ''}, process=True),
]


@pytest.mark.parametrize('case', CASES, ids=str)
def test_fault(case, faults, tmp_path):
  faults.check(case, tmp_path)
