"""CIFAR-10/100 and SVHN fetched, verified, decoded and cached on first use, against a real HTTP server on
127.0.0.1 serving small archives written here in the real formats; no internet, no TensorFlow."""
import errno
import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
import types

import chex
import ml_collections
import numpy as np
import pytest
import scipy.io

from conftest import ROOT
from sparsenet_jax.data import cifar_svhn
from sparsenet_jax.data import datasets
from sparsenet_jax.data import download
from sparsenet_jax.data import tfds_copy
from sparsenet_jax.data.download import Remote

MAIN = os.path.join(ROOT, 'launch', 'main.py')
PREPARE = os.path.join(ROOT, 'launch', 'prepare_data.py')
CIFAR10_NAMES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')


# The server.

class Server:
  """Serves `files` by name; counts requests; `drop` files end mid-body; `hold` blocks a response until set."""

  def __init__(self):
    self.files, self.requests, self.drop = {}, [], set()
    self.hold = threading.Event()
    self.hold.set()
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def do_GET(self):  # pylint: disable=invalid-name
        name = self.path.rsplit('/', 1)[-1]
        server.requests.append(name)
        server.hold.wait(120)
        if name not in server.files:
          self.send_error(404)
          return
        data = server.files[name]
        self.send_response(200)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if name in server.drop:
          self.wfile.write(data[:len(data) // 2])
          self.wfile.flush()
          self.close_connection = True
          return
        self.wfile.write(data)

      def log_message(self, *args):
        pass

    self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}/files/'
    threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

  def close(self):
    self.hold.set()
    self.httpd.shutdown()
    self.httpd.server_close()


@pytest.fixture
def server():
  s = Server()
  yield s
  s.close()


# Archives in the real formats.

def _tar_gz(members):
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return buffer.getvalue()


def _cifar_records(rng, n, label_columns):
  """(records bytes, NHWC images, labels): each record is its label bytes, then the R, G and B planes."""
  labels = np.stack([rng.integers(0, c, n, dtype=np.uint8) for c in label_columns], axis=1)
  images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  blob = b''.join(l.tobytes() + im.transpose(2, 0, 1).tobytes() for l, im in zip(labels, images))
  return blob, images, labels


def cifar10_archive(seed=0, per_batch=40, test=60):
  rng = np.random.default_rng(seed)
  members, train = {}, []
  for i in range(1, 6):
    blob, images, labels = _cifar_records(rng, per_batch, [10])
    members[f'cifar-10-batches-bin/data_batch_{i}.bin'] = blob
    train.append((images, labels[:, 0]))
  blob, test_images, test_labels = _cifar_records(rng, test, [10])
  members['cifar-10-batches-bin/test_batch.bin'] = blob
  members['cifar-10-batches-bin/batches.meta.txt'] = ('\n'.join(CIFAR10_NAMES) + '\n\n').encode()
  members['cifar-10-batches-bin/readme.html'] = b'<html></html>'
  expected = {'train': (np.concatenate([i for i, _ in train]), np.concatenate([l for _, l in train])),
              'test': (test_images, test_labels[:, 0])}
  return _tar_gz(members), expected, CIFAR10_NAMES


def cifar100_archive(seed=1, train=200, test=50):
  rng = np.random.default_rng(seed)
  fine = tuple(f'fine{i:02d}' for i in range(100))
  members, expected = {}, {}
  for split, n, member in (('train', train, 'train.bin'), ('test', test, 'test.bin')):
    blob, images, labels = _cifar_records(rng, n, [20, 100])
    members[f'cifar-100-binary/{member}'] = blob
    expected[split] = (images, labels[:, 1])  # coarse, fine: the fine label is the label
  members['cifar-100-binary/fine_label_names.txt'] = ('\n'.join(fine) + '\n').encode()
  members['cifar-100-binary/coarse_label_names.txt'] = '\n'.join(f'coarse{i}' for i in range(20)).encode()
  return _tar_gz(members), expected, fine


def svhn_files(seed=2, sizes=(('train', 50), ('test', 20), ('extra', 30))):
  rng = np.random.default_rng(seed)
  files, expected = {}, {}
  for split, n in sizes:
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # H x W x C x N
    y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # 1..10; 10 is the digit 0
    y[0] = 10
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {'X': x, 'y': y})
    files[f'{split}_32x32.mat'] = buffer.getvalue()
    expected[split] = (np.moveaxis(x, -1, 0), (y[:, 0] % 10).astype(np.int32))
  return files, expected, tuple('0123456789')


def _remote(name, filename, data, size=None):
  canonical = next(r for r in cifar_svhn.ARCHIVES[name] if r.filename == filename)
  return Remote(filename, canonical.url, len(data) if size is None else size, hashlib.sha256(data).hexdigest())


def serve(server, monkeypatch, name, files, checksums=None):
  """Puts `files` on the server and their checksums (or `checksums`'s) into the table, as a mirror would."""
  server.files.update(files)
  table = tuple(_remote(name, f, (checksums or files)[f]) for f in files)
  monkeypatch.setitem(cifar_svhn.ARCHIVES, name, table)
  return table


def _cfg(name, data_dir, mirror=None, **overrides):
  cfg = ml_collections.ConfigDict(dict(name=name, data_dir=str(data_dir), download=True, mirror=mirror,
                                       train_path=None, test_path=None, root=None, validation_size=0,
                                       augment=None))
  cfg.update(overrides)
  return cfg


def _leftovers(directory):
  """What a failed attempt left in the data directory, but for the lock file."""
  return sorted(os.path.relpath(os.path.join(d, f), directory) for d, _, fs in os.walk(directory) for f in fs
                if not f.endswith('.lock'))


def _error(cfg):
  with pytest.raises(datasets.DataError) as info:
    datasets.load(cfg)
  assert '\n' not in str(info.value)
  return str(info.value)


def _archives(name):
  if name == 'cifar10':
    data, expected, names = cifar10_archive()
    return {'cifar-10-binary.tar.gz': data}, expected, names
  if name == 'cifar100':
    data, expected, names = cifar100_archive()
    return {'cifar-100-binary.tar.gz': data}, expected, names
  return svhn_files()


# First use, second use.

@pytest.mark.parametrize('name', ['cifar10', 'cifar100', 'svhn'])
def test_first_use_downloads_decodes_and_caches_bit_for_bit(server, monkeypatch, tmp_path, name):
  files, expected, names = _archives(name)
  serve(server, monkeypatch, name, files)
  data = datasets.load(_cfg(name, tmp_path, server.url))
  train_splits = ('train', 'extra') if name == 'svhn' else ('train',)
  want_train = tuple(np.concatenate([expected[s][i] for s in train_splits]) for i in (0, 1))
  chex.assert_trees_all_equal((data.train.images, data.train.labels), want_train)
  chex.assert_trees_all_equal((data.test.images, data.test.labels), expected['test'])
  chex.assert_type([data.train.images, data.train.labels], [np.uint8, np.int32])
  chex.assert_shape(data.test.images, (len(expected['test'][1]), 32, 32, 3))
  assert data.class_names == names and data.num_classes == len(names)
  assert sorted(server.requests) == sorted(files)
  assert _leftovers(tmp_path) == [f'{name}.npz']  # archives deleted once decoded

  again = datasets.load(_cfg(name, tmp_path, server.url))
  assert len(server.requests) == len(files)  # no request: the cache alone
  chex.assert_trees_all_equal((again.train.images, again.test.labels), (data.train.images, data.test.labels))


def test_svhn_label_10_is_the_digit_0(server, monkeypatch, tmp_path):
  files, _, _ = svhn_files()
  serve(server, monkeypatch, 'svhn', files)
  data = datasets.load(_cfg('svhn', tmp_path, server.url))
  assert data.train.labels[0] == 0 and data.test.labels[0] == 0  # written as 10
  assert set(np.unique(data.train.labels)) <= set(range(10))


def test_validation_split_needs_no_test_split(server, monkeypatch, tmp_path):
  files, expected, _ = _archives('cifar10')
  serve(server, monkeypatch, 'cifar10', files)
  data = datasets.load(_cfg('cifar10', tmp_path, server.url, validation_size=20))
  assert len(data.train) + len(data.test) == len(expected['train'][1]) and len(data.test) == 20


# Failures: one line, nothing cached, a retry works.

def _fails_then_retry_works(server, monkeypatch, tmp_path, name, files, fragment):
  message = _error(_cfg(name, tmp_path, server.url))
  assert fragment in message, message
  assert _leftovers(tmp_path) == []
  server.drop.clear()
  serve(server, monkeypatch, name, files)
  assert len(datasets.load(_cfg(name, tmp_path, server.url)).test) == 60
  assert _leftovers(tmp_path) == [f'{name}.npz']


def test_wrong_checksum(server, monkeypatch, tmp_path):
  files, _, _ = _archives('cifar10')
  good = files['cifar-10-binary.tar.gz']
  serve(server, monkeypatch, 'cifar10', files, checksums={'cifar-10-binary.tar.gz': good[::-1]})  # same size
  _fails_then_retry_works(server, monkeypatch, tmp_path, 'cifar10', files, 'is not the canonical')


def test_connection_dropped_mid_file(server, monkeypatch, tmp_path):
  files, _, _ = _archives('cifar10')
  serve(server, monkeypatch, 'cifar10', files)
  server.drop.add('cifar-10-binary.tar.gz')
  _fails_then_retry_works(server, monkeypatch, tmp_path, 'cifar10', files, 'run again to retry')


def test_truncated_tar_with_matching_checksum(server, monkeypatch, tmp_path):
  files, _, _ = _archives('cifar10')
  truncated = {'cifar-10-binary.tar.gz': files['cifar-10-binary.tar.gz'][:20000]}
  serve(server, monkeypatch, 'cifar10', truncated)
  _fails_then_retry_works(server, monkeypatch, tmp_path, 'cifar10', files, 'cannot decode cifar-10-binary')


def test_full_disk_while_caching(server, monkeypatch, tmp_path):
  files, _, _ = _archives('cifar10')
  serve(server, monkeypatch, 'cifar10', files)
  real_savez = np.savez

  def savez_on_a_full_disk(f, **arrays):
    f.write(b'PK partial')
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(cifar_svhn.np, 'savez', savez_on_a_full_disk)
  message = _error(_cfg('cifar10', tmp_path, server.url))
  assert 'No space left on device' in message and 'nothing was cached' in message
  assert _leftovers(tmp_path) == []
  monkeypatch.setattr(cifar_svhn.np, 'savez', real_savez)
  assert len(datasets.load(_cfg('cifar10', tmp_path, server.url)).test) == 60


def test_mirror_serving_another_file_is_refused(server, monkeypatch, tmp_path):
  files, _, _ = _archives('cifar10')
  serve(server, monkeypatch, 'cifar10', files)
  other = bytearray(files['cifar-10-binary.tar.gz'])
  other[len(other) // 2] ^= 1  # same name, same size, one bit off
  server.files['cifar-10-binary.tar.gz'] = bytes(other)
  message = _error(_cfg('cifar10', tmp_path, server.url))
  assert 'is not the canonical cifar-10-binary.tar.gz' in message and server.url in message
  assert _leftovers(tmp_path) == []


def test_an_archive_placed_by_hand_is_verified_used_and_kept(server, monkeypatch, tmp_path):
  files, expected, _ = _archives('cifar10')
  serve(server, monkeypatch, 'cifar10', files)
  os.makedirs(tmp_path / 'downloads')
  (tmp_path / 'downloads' / 'cifar-10-binary.tar.gz').write_bytes(files['cifar-10-binary.tar.gz'])
  data = datasets.load(_cfg('cifar10', tmp_path, download=False))
  np.testing.assert_array_equal(data.test.images, expected['test'][0])
  assert server.requests == [] and os.path.isfile(tmp_path / 'downloads' / 'cifar-10-binary.tar.gz')


def test_an_unwritable_data_dir_is_one_line(server, monkeypatch, tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  assert 'cannot create data directory' in _error(_cfg('cifar10', blocker / 'sub'))
  files, _, _ = _archives('cifar10')
  serve(server, monkeypatch, 'cifar10', files)
  (tmp_path / 'd').mkdir()
  (tmp_path / 'd' / 'downloads').write_text('')  # a file where the downloads directory goes
  assert 'failed (File exists)' in _error(_cfg('cifar10', tmp_path / 'd', server.url))


# download=False and the message a machine without internet gets.

@pytest.mark.parametrize('name', ['cifar10', 'cifar100', 'svhn'])
def test_offline_names_every_file_its_checksum_and_where_to_put_it(tmp_path, name):
  message = _error(_cfg(name, tmp_path, download=False))
  for remote in cifar_svhn.ARCHIVES[name]:
    assert remote.filename in message and remote.sha256 in message and remote.url in message
  assert f'{tmp_path / "downloads"}/' in message and 'dataset.download=False' in message
  assert _leftovers(tmp_path) == []


def test_default_data_dir_and_its_environment_variable(monkeypatch, tmp_path):
  monkeypatch.delenv(download.DATA_DIR_ENV, raising=False)
  assert download.data_dir(None) == os.path.expanduser('~/.cache/sparsenet_jax/datasets')
  monkeypatch.setenv(download.DATA_DIR_ENV, str(tmp_path))
  assert download.data_dir(None) == str(tmp_path)
  assert download.data_dir('/elsewhere') == '/elsewhere'


# Processes at once.

_LOAD_AND_DIGEST = '''
import hashlib, json, sys
import ml_collections
from sparsenet_jax.data import cifar_svhn, datasets
from sparsenet_jax.data.download import Remote
cifar_svhn.ARCHIVES.update({n: tuple(Remote(**r) for r in rs) for n, rs in json.loads(sys.argv[1]).items()})
cfg = ml_collections.ConfigDict(dict(name='cifar10', data_dir=sys.argv[2], mirror=sys.argv[3]))
data = datasets.load(cfg)
print(hashlib.sha256(data.train.images.tobytes() + data.test.labels.tobytes()).hexdigest())
'''


def _table_json(name, table):
  return json.dumps({name: [dict(filename=r.filename, url=r.url, size=r.size, sha256=r.sha256) for r in table]})


def _env():
  return dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu')


def test_two_processes_one_download(server, monkeypatch, tmp_path):
  files, expected, _ = _archives('cifar10')
  table = serve(server, monkeypatch, 'cifar10', files)
  server.hold.clear()  # the first request waits until the second process is seen waiting for the lock
  procs = [subprocess.Popen([sys.executable, '-c', _LOAD_AND_DIGEST, _table_json('cifar10', table),
                             str(tmp_path), server.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env()) for _ in range(2)]
  stderr = [[], []]
  readers = [threading.Thread(target=lambda p=p, out=out: out.extend(p.stderr), daemon=True)
             for p, out in zip(procs, stderr)]
  for reader in readers:
    reader.start()
  deadline = time.monotonic() + 120
  while not (server.requests and any('waiting for another process' in ''.join(e) for e in stderr)):
    assert time.monotonic() < deadline, (server.requests, stderr)
    time.sleep(0.1)
  server.hold.set()
  outputs = [p.stdout.read().strip() for p in procs]
  assert [p.wait(120) for p in procs] == [0, 0], stderr
  want = hashlib.sha256(np.concatenate([expected['train'][0]]).tobytes()
                        + expected['test'][1].astype(np.int32).tobytes()).hexdigest()
  assert outputs == [want, want]
  assert server.requests == ['cifar-10-binary.tar.gz']


# Through the real command line.

_PATCHED = '''
import json, runpy, sys
from sparsenet_jax.data import cifar_svhn
from sparsenet_jax.data.download import Remote
cifar_svhn.ARCHIVES.update({n: tuple(Remote(**r) for r in rs) for n, rs in json.loads(sys.argv[1]).items()})
script = sys.argv[2]
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name='__main__')
'''


def _run(script, *args, table_json=None):
  """`script` with `args`; with `table_json`, the checksum table is first replaced (the test's archives)."""
  command = ([sys.executable, '-c', _PATCHED, table_json, script] if table_json
             else [sys.executable, script])
  return subprocess.run([*command, *args], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=400)


def _data_errors(result):
  return [line for line in result.stderr.splitlines() if line.startswith('data error:')]


def test_cli_offline_with_nothing_cached_exits_2(tmp_path):
  result = _run(MAIN, '--config=configs/cifar10_v1.py', f'--workdir={tmp_path / "w"}',
                '--config.dataset.download=False', f'--config.dataset.data_dir={tmp_path / "empty"}')
  assert result.returncode == 2, result.stderr
  (line,) = _data_errors(result)
  assert 'cifar-10-binary.tar.gz' in line and cifar_svhn.ARCHIVES['cifar10'][0].sha256 in line


def test_cli_mirror_with_the_wrong_file_exits_2_and_caches_nothing(server, tmp_path):
  server.files['cifar-10-binary.tar.gz'] = b'not the archive'  # canonical checksums: refused by size
  result = _run(MAIN, '--config=configs/cifar10_v1.py', f'--workdir={tmp_path / "w"}',
                f'--config.dataset.data_dir={tmp_path / "d"}', f'--config.dataset.mirror={server.url}')
  assert result.returncode == 2, result.stderr
  (line,) = _data_errors(result)
  assert 'is not the canonical cifar-10-binary.tar.gz' in line
  assert _leftovers(tmp_path / 'd') == []


def test_cli_trains_on_first_use_through_a_mirror(server, monkeypatch, tmp_path):
  """The headline command on a fresh machine, on a tiny CIFAR-10 archive served by the mirror."""
  files, _, _ = _archives('cifar10')
  table = serve(server, monkeypatch, 'cifar10', files)
  workdir, data_dir = tmp_path / 'w', tmp_path / 'd'
  result = _run(MAIN, '--config=configs/cifar10_v1.py', f'--workdir={workdir}',
                f'--config.dataset.data_dir={data_dir}', f'--config.dataset.mirror={server.url}',
                '--config.model.growth_rate=4', '--config.model.blocks=(1,1,1)', '--config.model.path=2',
                '--config.num_train_steps=1', '--config.batch_size=8', '--config.eval_batch_size=100',
                '--config.log_every_steps=1', table_json=_table_json('cifar10', table))
  assert result.returncode == 0, result.stderr[-3000:]
  rows = [json.loads(line) for line in open(workdir / 'metrics.jsonl')]
  assert rows[-1]['final'] and rows[-1]['num_examples'] == 60
  assert server.requests == ['cifar-10-binary.tar.gz'] and _leftovers(data_dir) == ['cifar10.npz']


def test_prepare_data_prints_what_it_fetched_and_where(server, monkeypatch, tmp_path):
  files, _, _ = _archives('cifar10')
  table_json = _table_json('cifar10', serve(server, monkeypatch, 'cifar10', files))
  args = ('--dataset=cifar10', f'--data_dir={tmp_path}', f'--mirror={server.url}')
  result = _run(PREPARE, *args, table_json=table_json)
  assert result.returncode == 0, result.stderr
  cache = tmp_path / 'cifar10.npz'
  assert f'fetched {server.url}cifar-10-binary.tar.gz' in result.stdout
  assert f'cifar10: 200 train, 60 test images -> {cache} (' in result.stdout
  again = _run(PREPARE, *args, table_json=table_json)
  assert 'already prepared' in again.stdout and server.requests == ['cifar-10-binary.tar.gz']


@pytest.mark.parametrize('args,fragment', [((), '--dataset is required'), (('--dataset=mnist',), 'mnist'),
                                            (('--dataset=cifar10', 'extra'), 'unexpected')])
def test_prepare_data_bad_arguments_are_one_line(args, fragment):
  result = _run(PREPARE, *args)
  assert result.returncode == 2 and fragment in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1


# The same arrays, label order and class names as tensorflow-datasets, without TensorFlow.

def _no_tensorflow(monkeypatch, module):
  """tfds's builders read files through tf.io.gfile.GFile; plain `open` is that, minus TensorFlow."""
  monkeypatch.setattr(module, 'tf', types.SimpleNamespace(io=types.SimpleNamespace(
      gfile=types.SimpleNamespace(GFile=open))))


def _tfds_cifar(name, archive, tmp_path, monkeypatch):
  """tfds's own CIFAR generator on `archive`: (class names, {split: [(key, example)]})."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.image_classification import cifar
  _no_tensorflow(monkeypatch, cifar)
  with tarfile.open(fileobj=io.BytesIO(archive), mode='r:gz') as tar:
    tar.extractall(tmp_path / 'extracted', filter='data')
  builder = tfds.builder(name, data_dir=str(tmp_path / 'tfds'))
  manager = types.SimpleNamespace(download_and_extract=lambda url: str(tmp_path / 'extracted'))
  generators = builder._split_generators(manager)  # pylint: disable=protected-access
  return builder.info.features['label'].names, {s: list(g) for s, g in generators.items()}


def _tfds_svhn(files, tmp_path, monkeypatch):
  import tensorflow_datasets as tfds
  from tensorflow_datasets.datasets.svhn_cropped import svhn_cropped_dataset_builder as svhn
  _no_tensorflow(monkeypatch, svhn)
  for filename, data in files.items():
    (tmp_path / filename).write_bytes(data)
  builder = tfds.builder('svhn_cropped', data_dir=str(tmp_path / 'tfds'))
  manager = types.SimpleNamespace(download=lambda urls: {k: str(tmp_path / os.path.basename(u))
                                                         for k, u in urls.items()})
  generators = builder._split_generators(manager)  # pylint: disable=protected-access
  return builder.info.features['label'].names, {
      str(g.name): list(builder._generate_examples(**g.gen_kwargs)) for g in generators}  # pylint: disable=protected-access


@pytest.mark.parametrize('name', ['cifar10', 'cifar100', 'svhn'])
def test_same_arrays_labels_and_names_as_tfds_and_as_a_tfds_copy(server, monkeypatch, tmp_path, name):
  files, _, _ = _archives(name)
  serve(server, monkeypatch, name, files)
  ours = datasets.load(_cfg(name, tmp_path / 'ours', server.url))
  if name == 'svhn':
    names, generated = _tfds_svhn(files, tmp_path, monkeypatch)
  else:
    names, generated = _tfds_cifar(name, files[next(iter(files))], tmp_path, monkeypatch)
  assert tuple(names) == ours.class_names
  layout = cifar_svhn.LAYOUTS[name]
  # A tfds copy stores the generated examples shuffled; reading it puts them back in file order.
  rng = np.random.default_rng(0)
  copies = {split: [examples[i][1] for i in rng.permutation(len(examples))]
            for split, examples in generated.items()}
  for split, want in (('train', ours.train), ('test', ours.test)):
    splits = layout.train_splits if split == 'train' else (layout.test_split,)
    read = tfds_copy.read_sources([copies[s] for s in splits])
    chex.assert_trees_all_equal((read.images, read.labels), (want.images, want.labels))


def test_a_tfds_copy_is_read_when_present(monkeypatch, tmp_path):
  import tensorflow_datasets as tfds
  os.makedirs(tmp_path / 'cifar10')  # where a tfds copy would be
  with tfds.testing.mock_data(num_examples=6):
    data = datasets.load(_cfg('cifar10', tmp_path, download=False))
  assert len(data.train) == 6 and len(data.test) == 6 and data.num_classes == 10
  assert _leftovers(tmp_path) == []  # nothing downloaded or cached


def test_svhn_class_names_are_tfds_class_label_names():
  import tensorflow_datasets as tfds
  assert tuple(tfds.builder('svhn_cropped').info.features['label'].names) == tuple('0123456789')
  assert tfds.builder('cifar100').info.features['label'].num_classes == 100


def test_file_order_from_ids():
  assert tfds_copy.file_order([b'train_00002', b'train_00000', b'train_00001']).tolist() == [1, 2, 0]
  assert tfds_copy.file_order(['gebc ahg', 'x']) is None  # ids without positions: stored order kept
  assert tfds_copy.file_order(['train_1', 'train_1']) is None
