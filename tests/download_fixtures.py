"""A real HTTP server on 127.0.0.1 and small archives in the real CIFAR/SVHN formats, for the download tests."""
import hashlib
import http.server
import io
import os
import tarfile
import threading

import ml_collections
import numpy as np
import pytest
import scipy.io

from sparsenet_jax.data import cifar_svhn
from sparsenet_jax.data import datasets
from sparsenet_jax.data.download import Remote

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
  blob = b''.join(lab.tobytes() + im.transpose(2, 0, 1).tobytes() for lab, im in zip(labels, images))
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
  expected = {'train': (np.concatenate([i for i, _ in train]), np.concatenate([lab for _, lab in train])),
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


def cfg(name, data_dir, mirror=None, **overrides):
  cfg = ml_collections.ConfigDict(dict(name=name, data_dir=str(data_dir), download=True, mirror=mirror,
                                       train_path=None, test_path=None, root=None, validation_size=0,
                                       augment=None))
  cfg.update(overrides)
  return cfg


def leftovers(directory):
  """What a failed attempt left in the data directory, but for the lock file."""
  return sorted(os.path.relpath(os.path.join(d, f), directory) for d, _, fs in os.walk(directory) for f in fs
                if not f.endswith('.lock'))


def load_error(cfg):
  with pytest.raises(datasets.DataError) as info:
    datasets.load(cfg)
  assert '\n' not in str(info.value)
  return str(info.value)


def archives(name):
  if name == 'cifar10':
    data, expected, names = cifar10_archive()
    return {'cifar-10-binary.tar.gz': data}, expected, names
  if name == 'cifar100':
    data, expected, names = cifar100_archive()
    return {'cifar-100-binary.tar.gz': data}, expected, names
  return svhn_files()
