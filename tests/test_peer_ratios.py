"""tools/peer_ratios.py --turns: the processes take turns, one step each, and each turn gives one ratio. Run
here with stand-in processes that speak the same protocol (`launch/bench.py --turns`) and report fixed
step times, so the ratios are known; the real peers need torch, which the project does not install."""
import argparse
import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, 'tools'))
import peer_ratios  # noqa: E402

# Answers each line of stdin (a mode) with {"mode", "seconds"}: argv[1] seconds for train, argv[2] for eval;
# appends its name (argv[3]) to the file argv[4] at each step, so the test sees the order the steps ran in.
STAND_IN = r'''
import json, sys
seconds = {'train': float(sys.argv[1]), 'eval': float(sys.argv[2])}
print('a line that is not JSON passes through', flush=True)
print(json.dumps({'ready': True}), flush=True)
for line in sys.stdin:
  with open(sys.argv[4], 'a') as log:
    log.write(sys.argv[3] + '\n')
  print(json.dumps({'mode': line.strip(), 'seconds': seconds[line.strip()]}), flush=True)
print(json.dumps({'model': sys.argv[3], 'done': True}), flush=True)
'''


def stand_in(train, evaluation, name, log):
  return [sys.executable, '-c', STAND_IN, str(train), str(evaluation), name, str(log)]


def test_turns_alternate_the_order_and_give_one_ratio_per_turn(tmp_path, capsys):
  log, env = tmp_path / 'order', dict(os.environ)
  ours = {'densenet': (stand_in(2.0, 0.5, 'densenet', log), env),
          'sparsenet': (stand_in(1.0, 0.4, 'sparsenet', log), env)}
  peers = {'nchw': (stand_in(4.0, 1.5, 'nchw', log), None), 'channels_last': (stand_in(3.0, 1.0, 'cl', log), None)}
  peer_ratios.take_turns(argparse.Namespace(turns=4, gap=0.0), ours, peers)
  out = capsys.readouterr().out
  # images per second over images per second: the other's step time over ours
  assert 'densenet train / torch nchw train: 2.00x [2.00, 2.00]; 2.00x [2.00, 2.00], 2.00x [2.00, 2.00]' in out
  assert 'densenet eval / torch nchw eval: 3.00x [3.00, 3.00]' in out
  assert 'densenet train / torch channels_last train: 1.50x' in out
  assert 'densenet eval / torch channels_last eval: 2.00x' in out
  assert 'sparsenet train / densenet train: 2.00x' in out and 'sparsenet eval / densenet eval: 1.25x' in out
  one_turn = ['densenet', 'sparsenet', 'nchw', 'cl']
  assert log.read_text().split() == (one_turn + one_turn[::-1]) * 4  # 4 turns of train, 4 of eval
  assert out.count('a line that is not JSON passes through') == 4 and out.count('"done": true') == 4


def test_a_process_that_dies_before_it_answers_stops_the_run(tmp_path):
  dead = [sys.executable, '-c', 'import sys; sys.exit(3)']
  with pytest.raises(SystemExit, match=r"torch nchw ended before it answered \(3\)"):
    ours = {'ours': (stand_in(1, 1, 'ours', tmp_path / 'log'), dict(os.environ))}
    peer_ratios.take_turns(argparse.Namespace(turns=1, gap=0.0), ours, {'nchw': (dead, None)})


def test_spread_is_the_median_and_quartiles():
  assert peer_ratios.spread([1.0, 2.0, 3.0, 4.0, 5.0]) == '3.00x [2.00, 4.00]'
  assert peer_ratios.spread([1.25]) == '1.25x'
