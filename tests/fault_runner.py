"""Runs one launch/ script again and again in this process, one fault case per request: the fault table's
cases cost a function call each instead of a Python start and JAX's import.

  python tests/fault_runner.py main.py     # then one JSON request per line on stdin:
  {"args": [...], "cwd": "...", "env": {...}}  ->  {"code": 2, "stdout": "...", "stderr": "..."}

Each request runs the script's own shell (`entry()`, that is `cli.run(main, ...)`) with absl's flags reset,
its stdout and stderr (the file descriptors, so C++ and absl logging too) captured, and the exit code taken
from SystemExit. An exception that escapes the shell is a bug: its traceback is the case's stderr and its
code is 'traceback'.
"""
import importlib.util
import json
import os
import sys
import tempfile
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def load(script):
  path = os.path.join(ROOT, 'launch', script)
  spec = importlib.util.spec_from_file_location('launch_' + script[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return path, module


def run_case(path, module, request):
  from absl import flags
  flags.FLAGS.unparse_flags()
  for name in [n for n in flags.FLAGS if '.' in n]:  # config_flags defines one per override at each parse
    delattr(flags.FLAGS, name)
  saved_env, saved_cwd = dict(os.environ), os.getcwd()
  os.environ.update(request.get('env', {}))
  os.chdir(request.get('cwd', ROOT))
  sys.argv = [path, *request['args']]
  main_module, sys.modules['__main__'] = sys.modules['__main__'], module  # absl's --help prints its doc
  with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(out.fileno(), 1), os.dup2(err.fileno(), 2)
    try:
      module.entry()
      code = 0
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # pylint: disable=broad-except  (a bug: the case reports it)
      traceback.print_exc()
      code = 'traceback'
    finally:
      sys.stdout.flush(), sys.stderr.flush()
      os.dup2(saved[0], 1), os.dup2(saved[1], 2)
      os.close(saved[0]), os.close(saved[1])
      os.chdir(saved_cwd)
      sys.modules['__main__'] = main_module
      os.environ.clear()
      os.environ.update(saved_env)
    out.seek(0), err.seek(0)
    return {'code': code, 'stdout': out.read(), 'stderr': err.read()}


def serve(script):
  path, module = load(script)
  reply = os.fdopen(os.dup(1), 'w')
  for line in sys.stdin:
    reply.write(json.dumps(run_case(path, module, json.loads(line))) + '\n')
    reply.flush()


if __name__ == '__main__':
  serve(sys.argv[1])
