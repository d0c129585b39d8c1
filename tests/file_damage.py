"""Ways to damage a copy of the fault table's trained run (tests/fault_table.py): each function returns, or
is, a `prepare(place)` that damages the case's own copy. Shared by the file tables
(tests/test_faults_files.py) and the tests of what is skipped with a warning (tests/test_faults_skipped.py).
"""
import json
import os
import shutil


def path_in(place, name):
  """`name` ('{run}/config.json') in the case's place."""
  return name.format(run=place.run, export=place.export, tmp=place.tmp)


def write(name, data):
  """The file `name` ('{run}/config.json') holds `data` (bytes) from now on."""
  def prepare(place):
    with open(path_in(place, name), 'wb') as f:
      f.write(data)
  return prepare


def edit_json(name, change):
  """`change(value)` on the JSON value of the file `name`, written back."""
  def prepare(place):
    path = path_in(place, name)
    value = json.load(open(path))
    change(value)
    with open(path, 'w') as f:
      json.dump(value, f)
  return prepare


def directory(name):
  """A directory where the file `name` was."""
  def prepare(place):
    path = path_in(place, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.lexists(path):
      os.remove(path)
    os.makedirs(path)
  return prepare


def both(*prepares):
  def prepare(place):
    for p in prepares:
      p(place)
  return prepare


def setting(*keys_value):
  """A change to a nested field: setting('model', 'name', None) sets value['model']['name'] = None;
  the value `DELETE` removes it."""
  *keys, value = keys_value

  def change(tree):
    for k in keys[:-1]:
      tree = tree[k]
    if value is DELETE:
      del tree[keys[-1]]
    else:
      tree[keys[-1]] = value
  return change


DELETE = object()


def unfinished(place):
  """The run as if stopped at its last checkpoint before the final evaluation: the final row is gone."""
  path = os.path.join(place.run, 'metrics.jsonl')
  rows = [line for line in open(path) if '"final": true' not in line]
  open(path, 'w').writelines(rows)


def no_checkpoints(place):
  shutil.rmtree(os.path.join(place.run, 'checkpoints'))


def checkpoints_as(kind):
  def prepare(place):
    path = os.path.join(place.run, 'checkpoints')
    shutil.rmtree(path)
    if kind == 'file':
      open(path, 'w').write('not checkpoints')
    else:
      os.symlink(os.path.join(place.tmp, 'nowhere'), path)
  return prepare


def resumed_once(place):
  """starts.jsonl records a start from step 10: a checkpoint existed."""
  with open(os.path.join(place.run, 'starts.jsonl'), 'a') as f:
    f.write(json.dumps({'time': '2026-01-01T00:00:00', 'from_step': 10, 'changes': {}}) + '\n')


def cut(name, keep=0.5):
  def prepare(place):
    path = path_in(place, name)
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:int(len(data) * keep)])
  return prepare
