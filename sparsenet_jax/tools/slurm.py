"""A sweep as a SLURM array job: `slurm_script` writes the sbatch file, one array task per run of a sweep
(`sweeps.Run`), each running the run's `launch/main.py` command in its workdir.

Pure Python, like `sweeps`: the sweep process never starts an accelerator backend.
"""
from __future__ import annotations

import os
import re
import shlex
import sys
from typing import Callable, List, Optional, Sequence

from sparsenet_jax.tools.sweeps import Run, command


def slurm_script(sweep_runs: Sequence[Run], root: str, repo: str, sweep: str,
                 devices_per_run: int = 1, max_parallel: Optional[int] = None,
                 command_fn: Callable[[Run, str], List[str]] = command) -> str:
  """An sbatch array script: task i runs `command_fn(sweep_runs[i])` in ROOT/<name>, logging to sweep.log.

  Preemption and time limits: `--requeue` lets SLURM requeue a preempted task, and `--signal` gives
  the batch shell USR1 five minutes before the time limit, when it stops the run and requeues the task
  itself. A requeued task runs the same command, which resumes from the latest checkpoint; a finished
  run's task exits at once.
  """
  root = os.path.abspath(root)
  throttle = f'%{max_parallel}' if max_parallel else ''
  cases = []
  for i, run in enumerate(sweep_runs):
    workdir = os.path.join(root, run.name)
    cases.append(f'  {i}) name={shlex.quote(run.name)}\n'
                 f'     cmd=({shlex.join(command_fn(run, workdir))}) ;;')
  job = re.sub(r'\W', '_', os.path.splitext(os.path.basename(sweep.partition(':')[0]))[0])
  check_done = ('import sys; from sparsenet_jax.training import record; '
                'sys.exit(record.status(sys.argv[1]) != "done")')
  return f'''#!/bin/bash
# {len(sweep_runs)} runs of {sweep}, one array task each. Submit with:
#   sbatch {shlex.quote(os.path.join(root, 'sweep.sbatch'))}
# (options such as --partition=... --time=... go before the script name and override those below).
#SBATCH --job-name=sparsenet-{job}
#SBATCH --array=0-{len(sweep_runs) - 1}{throttle}
#SBATCH --ntasks=1
#SBATCH --gres=gpu:{devices_per_run}
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append
#SBATCH --output={root}/slurm-%A_%a.out

set -uo pipefail
cd {shlex.quote(os.path.abspath(repo))}
export PYTHONUNBUFFERED=1

case "${{SLURM_ARRAY_TASK_ID:?run me with sbatch}}" in
{chr(10).join(cases)}
  *) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;
esac

workdir={shlex.quote(root)}/"$name"
mkdir -p "$workdir"
exec >>"$workdir/sweep.log" 2>&1
if {shlex.quote(sys.executable)} -c {shlex.quote(check_done)} "$workdir"; then
  echo "# $(date '+%F %T') $name finished before; nothing to do"
  exit 0
fi
task="${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
echo "# $(date '+%F %T') $name on $(hostname), task $task, restart ${{SLURM_RESTART_COUNT:-0}}: ${{cmd[*]}}"
"${{cmd[@]}}" &
child=$!
stop_and_requeue() {{
  echo "# $(date '+%F %T') time limit near: stopping $name and requeueing task $task"
  kill -TERM "$child"
  wait "$child"
  scontrol requeue "$task"
  exit 0
}}
trap stop_and_requeue USR1
trap 'kill -TERM "$child"; wait "$child"; exit 143' TERM
wait "$child"
rc=$?
echo "# $(date '+%F %T') $name exited with $rc"
exit $rc
'''
