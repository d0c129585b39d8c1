#!/bin/bash
# Second GPU call: remat's peak memory (densenet_bc_100, densenet_bc_190), small presets, scan; cache-timed.
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi --query-gpu=name --format=csv,noheader | tee $OUT/env.txt; date -u | tee -a $OUT/env.txt
cat > /tmp/jobs <<'J'
densenet_bc_190 train --remat
densenet_bc_190 train
densenet_bc_100 train --remat
sparsenet_abc_v1 train
sparsenet_bc_v1 train --scan
sparsenet_v1 train
densenet_40 train
J
export XLA_PYTHON_CLIENT_PREALLOCATE=false
timeout 150 xargs -P 7 -L 1 bash -c 'timeout 145 python3 launch/bench.py --json --compilation_cache=/tmp/xla --nocold_compile --steps=0 --model=$0 --mode=$1 "${@:2}" >> $OUT/compile.jsonl 2>/tmp/err_$0_$1_${#2} || tail -2 /tmp/err_$0_$1_${#2}' < /tmp/jobs
unset XLA_PYTHON_CLIENT_PREALLOCATE
echo "compiled $(wc -l < $OUT/compile.jsonl) $(date +%T)"
python3 - > /tmp/groups <<'P'
import json, os
done = [json.loads(l) for l in open(os.environ['OUT'] + '/compile.jsonl') if l.startswith('{')]
groups = {}
for line in open('/tmp/jobs'):
  model, mode, *extra = line.split(); extra = ' '.join(extra)
  key = (mode, '--remat' in extra, '--scan' in extra)
  groups.setdefault((mode, extra), [])
  if any((r['mode'], r['remat'], r['scan']) == key and r['model'] == model for r in done):
    groups[(mode, extra)].append(model)
for (mode, extra), models in groups.items():
  if models: print(f'--mode={mode} {extra} --model={",".join(models)}')
P
cat /tmp/groups
while read -r args; do timeout 60 python3 launch/bench.py --json --compilation_cache=/tmp/xla --nocold_compile --steps=20 $args >> $OUT/timed.jsonl; done < /tmp/groups
cat $OUT/timed.jsonl | cut -c1-250
timeout 30 python3 tools/torch_peer_gpu.py --peer=.devrun/torch_peer.py --model densenet_bc_190 --batch 64 >> $OUT/torch.jsonl
cat $OUT/torch.jsonl; date -u
