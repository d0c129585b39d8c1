"""CIFAR-10/100 and SVHN fetched, verified, decoded and cached on first use, against a real HTTP server on
127.0.0.1 serving small archives written here in the real formats (download_fixtures.py); no internet."""
import errno
import hashlib
import json
import os
import subprocess
import sys
import threading
import time

import chex
import numpy as np
import pytest

from conftest import ROOT, cpu_env
from download_fixtures import Server, archives, cfg, leftovers, load_error, serve, svhn_files
from sparsenet_jax.data import cifar_svhn
from sparsenet_jax.data import datasets
from sparsenet_jax.data import download

MAIN = os.path.join(ROOT, 'launch', 'main.py')
PREPARE = os.path.join(ROOT, 'launch', 'prepare_data.py')


@pytest.fixture
def server():
  s = Server()
  yield s
  s.close()


# First use, second use.

@pytest.mark.parametrize('name', ['cifar10', 'cifar100', 'svhn'])
def test_first_use_downloads_decodes_and_caches_bit_for_bit(server, monkeypatch, tmp_path, name):
  files, expected, names = archives(name)
  serve(server, monkeypatch, name, files)
  data = datasets.load(cfg(name, tmp_path, server.url))
  train_splits = ('train', 'extra') if name == 'svhn' else ('train',)
  want_train = tuple(np.concatenate([expected[s][i] for s in train_splits]) for i in (0, 1))
  chex.assert_trees_all_equal((data.train.images, data.train.labels), want_train)
  chex.assert_trees_all_equal((data.test.images, data.test.labels), expected['test'])
  chex.assert_type([data.train.images, data.train.labels], [np.uint8, np.int32])
  chex.assert_shape(data.test.images, (len(expected['test'][1]), 32, 32, 3))
  assert data.class_names == names and data.num_classes == len(names)
  assert sorted(server.requests) == sorted(files)
  assert leftovers(tmp_path) == [f'{name}.npz']  # archives deleted once decoded

  again = datasets.load(cfg(name, tmp_path, server.url))
  assert len(server.requests) == len(files)  # no request: the cache alone
  chex.assert_trees_all_equal((again.train.images, again.test.labels), (data.train.images, data.test.labels))


def test_svhn_label_10_is_the_digit_0(server, monkeypatch, tmp_path):
  files, _, _ = svhn_files()
  serve(server, monkeypatch, 'svhn', files)
  data = datasets.load(cfg('svhn', tmp_path, server.url))
  assert data.train.labels[0] == 0 and data.test.labels[0] == 0  # written as 10
  assert set(np.unique(data.train.labels)) <= set(range(10))


def test_validation_split_needs_no_test_split(server, monkeypatch, tmp_path):
  files, expected, _ = archives('cifar10')
  serve(server, monkeypatch, 'cifar10', files)
  data = datasets.load(cfg('cifar10', tmp_path, server.url, validation_size=20))
  assert len(data.train) + len(data.test) == len(expected['train'][1]) and len(data.test) == 20


# Failures: one line, nothing cached, a retry works.

def _fails_then_retry_works(server, monkeypatch, tmp_path, name, files, fragment):
  message = load_error(cfg(name, tmp_path, server.url))
  assert fragment in message, message
  assert leftovers(tmp_path) == []
  server.drop.clear()
  serve(server, monkeypatch, name, files)
  assert len(datasets.load(cfg(name, tmp_path, server.url)).test) == 60
  assert leftovers(tmp_path) == [f'{name}.npz']


def test_wrong_checksum(server, monkeypatch, tmp_path):
  files, _, _ = archives('cifar10')
  good = files['cifar-10-binary.tar.gz']
  serve(server, monkeypatch, 'cifar10', files, checksums={'cifar-10-binary.tar.gz': good[::-1]})  # same size
  _fails_then_retry_works(server, monkeypatch, tmp_path, 'cifar10', files, 'is not the canonical')


def test_connection_dropped_mid_file(server, monkeypatch, tmp_path):
  files, _, _ = archives('cifar10')
  serve(server, monkeypatch, 'cifar10', files)
  server.drop.add('cifar-10-binary.tar.gz')
  _fails_then_retry_works(server, monkeypatch, tmp_path, 'cifar10', files, 'run again to retry')


def test_truncated_tar_with_matching_checksum(server, monkeypatch, tmp_path):
  files, _, _ = archives('cifar10')
  truncated = {'cifar-10-binary.tar.gz': files['cifar-10-binary.tar.gz'][:20000]}
  serve(server, monkeypatch, 'cifar10', truncated)
  _fails_then_retry_works(server, monkeypatch, tmp_path, 'cifar10', files, 'cannot decode cifar-10-binary')


def test_full_disk_while_caching(server, monkeypatch, tmp_path):
  files, _, _ = archives('cifar10')
  serve(server, monkeypatch, 'cifar10', files)
  real_savez = np.savez

  def savez_on_a_full_disk(f, **arrays):
    f.write(b'PK partial')
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(cifar_svhn.np, 'savez', savez_on_a_full_disk)
  message = load_error(cfg('cifar10', tmp_path, server.url))
  assert 'No space left on device' in message and 'nothing was cached' in message
  assert leftovers(tmp_path) == []
  monkeypatch.setattr(cifar_svhn.np, 'savez', real_savez)
  assert len(datasets.load(cfg('cifar10', tmp_path, server.url)).test) == 60


def test_mirror_serving_another_file_is_refused(server, monkeypatch, tmp_path):
  files, _, _ = archives('cifar10')
  serve(server, monkeypatch, 'cifar10', files)
  other = bytearray(files['cifar-10-binary.tar.gz'])
  other[len(other) // 2] ^= 1  # same name, same size, one bit off
  server.files['cifar-10-binary.tar.gz'] = bytes(other)
  message = load_error(cfg('cifar10', tmp_path, server.url))
  assert 'is not the canonical cifar-10-binary.tar.gz' in message and server.url in message
  assert leftovers(tmp_path) == []


def test_an_archive_placed_by_hand_is_verified_used_and_kept(server, monkeypatch, tmp_path):
  files, expected, _ = archives('cifar10')
  serve(server, monkeypatch, 'cifar10', files)
  os.makedirs(tmp_path / 'downloads')
  (tmp_path / 'downloads' / 'cifar-10-binary.tar.gz').write_bytes(files['cifar-10-binary.tar.gz'])
  data = datasets.load(cfg('cifar10', tmp_path, download=False))
  np.testing.assert_array_equal(data.test.images, expected['test'][0])
  assert server.requests == [] and os.path.isfile(tmp_path / 'downloads' / 'cifar-10-binary.tar.gz')


def test_an_unwritable_data_dir_is_one_line(server, monkeypatch, tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  assert 'cannot create data directory' in load_error(cfg('cifar10', blocker / 'sub'))
  files, _, _ = archives('cifar10')
  serve(server, monkeypatch, 'cifar10', files)
  (tmp_path / 'd').mkdir()
  (tmp_path / 'd' / 'downloads').write_text('')  # a file where the downloads directory goes
  assert 'failed (File exists)' in load_error(cfg('cifar10', tmp_path / 'd', server.url))


# download=False and the message a machine without internet gets.

@pytest.mark.parametrize('name', ['cifar10', 'cifar100', 'svhn'])
def test_offline_names_every_file_its_checksum_and_where_to_put_it(tmp_path, name):
  message = load_error(cfg(name, tmp_path, download=False))
  for remote in cifar_svhn.ARCHIVES[name]:
    assert remote.filename in message and remote.sha256 in message and remote.url in message
  assert f'{tmp_path / "downloads"}/' in message and 'dataset.download=False' in message
  assert leftovers(tmp_path) == []


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
  return cpu_env()


def test_two_processes_one_download(server, monkeypatch, tmp_path):
  files, expected, _ = archives('cifar10')
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
  assert leftovers(tmp_path / 'd') == []


@pytest.mark.slow
def test_cli_trains_on_first_use_through_a_mirror(server, monkeypatch, tmp_path):
  """The headline command on a fresh machine, on a tiny CIFAR-10 archive served by the mirror."""
  files, _, _ = archives('cifar10')
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
  assert server.requests == ['cifar-10-binary.tar.gz'] and leftovers(data_dir) == ['cifar10.npz']


def test_prepare_data_prints_what_it_fetched_and_where(server, monkeypatch, tmp_path):
  files, _, _ = archives('cifar10')
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
