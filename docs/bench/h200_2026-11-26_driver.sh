#!/bin/bash
# GPU benchmark driver (one device call). Results stream into $OUT as JSON lines.
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site TF_CPP_MIN_LOG_LEVEL=2
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/env.txt
python3 -c "import jax, flax, optax, torch; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__, jax.devices())" | tee -a $OUT/env.txt
nproc | tee -a $OUT/env.txt; date -u | tee -a $OUT/env.txt
C=/tmp/xla; B="python3 launch/bench.py --json --compilation_cache=$C"
T="python3 tools/torch_peer_gpu.py --peer=.devrun/torch_peer.py"
echo "== torch $(date +%T)"
timeout 100 bash -c "$T --model densenet_bc_100 --batch 64; $T --model densenet_bc_100 --batch 64 --precision bf16 --channels_last; $T --model densenet_bc_100 --batch 256; $T --model densenet_bc_190 --batch 64" >> $OUT/torch.jsonl
cat $OUT/torch.jsonl
echo "== headline cold $(date +%T)"
timeout 150 $B --model=densenet_bc_100,sparsenet_bc_v1 --mode=train,eval --steps=30 >> $OUT/timed.jsonl
echo "== parallel compiles $(date +%T)"
mkdir -p /tmp/res
cat > /tmp/jobs <<'J'
sparsenet_abc_v4 train
sparsenet_bc_v4 train
sparsenet_v4 train
densenet_bc_250 train
densenet_bc_190 train
densenet_bc_190 train --remat
sparsenet_abc_v4 train --scan
sparsenet_abc_v3 train
sparsenet_bc_v3 train
sparsenet_v3 train
sparsenet_abc_v2 train
sparsenet_bc_v2 train
sparsenet_v2 train
sparsenet_abc_v1 train
sparsenet_abc_v1 train --scan
sparsenet_v1 train
densenet_40 train
densenet_bc_100 train --remat
densenet_bc_100 train --precision=bf16
sparsenet_bc_v1 train --precision=bf16
densenet_bc_100 train --batch_size=256
sparsenet_bc_v1 train --batch_size=256
sparsenet_abc_v4 eval
sparsenet_bc_v4 eval
sparsenet_v4 eval
densenet_bc_250 eval
densenet_bc_190 eval
sparsenet_abc_v3 eval
sparsenet_bc_v3 eval
sparsenet_v3 eval
sparsenet_abc_v2 eval
sparsenet_bc_v2 eval
sparsenet_v2 eval
sparsenet_abc_v1 eval
sparsenet_v1 eval
densenet_40 eval
J
export XLA_PYTHON_CLIENT_PREALLOCATE=false
timeout 200 xargs -P 10 -L 1 bash -c 'python3 launch/bench.py --json --compilation_cache=/tmp/xla --nocold_compile --steps=0 --model=$0 --mode=$1 "${@:2}" >> $OUT/compile.jsonl 2>/tmp/res/$0_$1_${#2}_${#3}.err || tail -2 /tmp/res/$0_$1_${#2}_${#3}.err' < /tmp/jobs
unset XLA_PYTHON_CLIENT_PREALLOCATE
echo "compiled: $(wc -l < $OUT/compile.jsonl) of $(wc -l < /tmp/jobs) $(date +%T)"
# time what compiled, from the cache, one process per flag set
python3 - > /tmp/groups <<'P'
import json, os
done = [json.loads(l) for l in open(os.environ['OUT'] + '/compile.jsonl') if l.startswith('{')]
groups = {}
for line in open('/tmp/jobs'):
  model, mode, *extra = line.split(); extra = ' '.join(extra)
  key = (mode, '--remat' in extra, '--scan' in extra, 'bf16' if 'bf16' in extra else 'fp32', 256 if '256' in extra else 64)
  groups.setdefault((mode, extra), [])
  if any((r['mode'], r['remat'], r['scan'], r['precision'], r['batch_size']) == key and r['model'] == model for r in done):
    groups[(mode, extra)].append(model)
for (mode, extra), models in groups.items():
  if models: print(f'--mode={mode} {extra} --model={",".join(models)}')
P
cat /tmp/groups
echo "== timed from cache $(date +%T)"
while read -r args; do timeout 100 $B --nocold_compile --steps=20 $args >> $OUT/timed.jsonl; done < /tmp/groups
echo "== training loop $(date +%T)"
python3 -c "import numpy as np; r=np.random.default_rng(0); np.savez('/tmp/synth.npz', image=r.integers(0,256,(10000,32,32,3),dtype=np.uint8), label=r.integers(0,10,10000))"
timeout 90 python3 launch/main.py --config=configs/cifar10_v1.py:variant=bc --workdir=/tmp/loop --config.dataset.name=npz --config.dataset.train_path=/tmp/synth.npz --config.dataset.validation_size=1000 --config.num_train_steps=600 --config.log_every_steps=50 2>&1 | tail -4
cp /tmp/loop/metrics.jsonl $OUT/loop_metrics.jsonl
timeout 40 $B --nocold_compile --steps=30 --model=sparsenet_bc_v1 >> $OUT/timed.jsonl
echo "== done $(date +%T)"
