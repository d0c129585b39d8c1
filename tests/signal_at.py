"""Starts a launch/ script and sends it a signal at a chosen moment, then passes on its output and exit code:
the fault table's signal cases run through it (their `script` is '../tests/signal_at.py').

  python tests/signal_at.py SIGINT loaded:jaxlib main.py --config=... --workdir=...

The moment: `loaded:NAME` once a shared library whose path holds NAME is mapped into the script (it has
begun to import jaxlib, sklearn), `line:REGEX` once a line of its stderr matches, `after:S` S seconds after
it started. `SIGNAL` alone goes to the script, `SIGNAL/group`
to its whole process group (as Ctrl-C in a terminal does; the script leads its own group). A script that
a signal killed exits 128 + the signal's number, as a shell reports it.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240


def reached(proc, moment, seen, started):
  kind, _, arg = moment.partition(':')
  if kind == 'loaded':
    try:
      with open(f'/proc/{proc.pid}/maps') as f:
        return arg in f.read()
    except OSError:
      return False
  if kind == 'line':
    return any(re.search(arg, line) for line in seen)
  return time.time() - started >= float(arg)


def main(signame, moment, script, *args):
  name, _, target = signame.partition('/')
  signum = getattr(signal, name)
  started = time.time()
  proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'launch', script), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True)
  seen = []
  reader = threading.Thread(target=lambda: seen.extend(proc.stderr), daemon=True)
  reader.start()
  while not reached(proc, moment, seen, started):
    if proc.poll() is not None or time.time() - started > TIMEOUT_S:
      break
    time.sleep(0.005)
  if proc.poll() is None:
    (os.killpg if target == 'group' else os.kill)(proc.pid, signum)
  out = proc.stdout.read()
  proc.wait()
  reader.join()
  sys.stdout.write(out)
  sys.stderr.write(''.join(seen))
  sys.exit(128 - proc.returncode if proc.returncode < 0 else proc.returncode)


if __name__ == '__main__':
  main(*sys.argv[1:])
