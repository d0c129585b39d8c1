"""torchvision's DenseNet weights in (launch/convert_torchvision.py, sparsenet_jax/tools/torchvision_weights.py):
the converted model gives torchvision's logits, a state dict of another model is refused naming the key.

Needs torch and torchvision (`pip install -e '.[torch]'`); where they are absent these tests skip, except
the one that checks the script says so. A small torchvision DenseNet runs; DenseNet-121 is only converted
and shape-checked (no forward pass).
"""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, cpu_env
from sparsenet_jax.errors import ExportError
from sparsenet_jax.model import presets
from sparsenet_jax.tools import export
from sparsenet_jax.tools import torchvision_weights

try:
  import torch
  import torchvision
except ImportError:
  torch = torchvision = None
needs_torch = pytest.mark.skipif(torchvision is None, reason="torch and torchvision not installed (pip install -e "
                                 "'.[torch]')")
SMALL = dict(growth_rate=8, blocks=(2, 2, 2, 2), stem_features=16, num_classes=10)  # our spelling of SMALL_TV
SMALL_TV = dict(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, bn_size=4, num_classes=10)


def script(*args):
  return subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'convert_torchvision.py'), *args],
                        capture_output=True, text=True, env=cpu_env(), timeout=300)


def randomized(model):
  """`model` in eval mode with random BatchNorm affine parameters and running statistics (a fresh
  model's are 1, 0, 0, 1: a conversion that swapped them would pass unnoticed)."""
  g = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        n = m.num_features
        m.weight.copy_(torch.rand(n, generator=g) + 0.5)
        m.bias.copy_(torch.randn(n, generator=g) * 0.2)
        m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
        m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
      elif isinstance(m, torch.nn.Linear):
        m.bias.copy_(torch.randn(m.out_features, generator=g))
  return model.eval()


def numpy_state(model):
  return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.fixture(scope='module')
def densenet_121_file(tmp_path_factory):
  """torchvision's DenseNet-121 (random weights) saved with the key names torchvision publishes its
  weights under ('denselayer1.norm.1.weight'), the way torch.save writes it."""
  torch.manual_seed(0)
  state = torchvision.models.densenet121().state_dict()
  old = {k.replace('.norm1.', '.norm.1.').replace('.conv1.', '.conv.1.').replace('.norm2.', '.norm.2.')
         .replace('.conv2.', '.conv.2.') if 'denselayer' in k else k: v for k, v in state.items()}
  path = str(tmp_path_factory.mktemp('tv') / 'densenet121.pth')
  torch.save(old, path)
  return path, state


@needs_torch
def test_small_densenet_gives_torchvisions_logits(tmp_path):
  tv = randomized(torchvision.models.DenseNet(**SMALL_TV))
  pixels = np.random.default_rng(0).integers(0, 256, (3, 64, 48, 3), np.uint8)  # not square: padding shows
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  x = torch.from_numpy(((pixels / 255.0 - mean) / std).astype(np.float32).transpose(0, 3, 1, 2))
  with torch.no_grad():
    expected = tv(x).numpy()
  spec = presets.get('densenet_121', **SMALL)
  path = str(tmp_path / 'small.npz')
  torchvision_weights.write_export(path, numpy_state(tv), spec, 'densenet_121', (64, 48, 3), [])
  model, variables, meta = export.load_exported(path)  # what launch/predict.py reads
  got = export.logits(model, variables, meta, pixels)
  scale = np.abs(expected).max()
  assert scale > 1  # logits of some size, so the tolerance below is float32 rounding, not slack
  # Float32 rounding: a few units in the last place of the largest logit (measured: 2 of them, 9.5e-7 at 4.24;
  # the two libraries sum the convolutions in different orders).
  np.testing.assert_allclose(got, expected, rtol=0, atol=16 * np.finfo(np.float32).eps * scale)
  assert (got.argmax(-1) == expected.argmax(-1)).all()


@needs_torch
def test_densenet_121_converts_with_torchvisions_key_names(densenet_121_file, tmp_path):
  pth, state = densenet_121_file
  out = str(tmp_path / 'd121.npz')
  r = script(f'--weights={pth}', '--model=densenet_121', f'--out={out}')
  assert r.returncode == 0, r.stderr
  assert 'densenet_121, 7,978,856 params, 1000 classes (named)' in r.stdout
  model, variables, meta = export.load_exported(out)  # shapes checked against the model, no forward pass
  assert sum(v.size for v in jax.tree.leaves(variables['params'])) == sum(
      v.numel() for k, v in state.items() if 'running' not in k and 'num_batches' not in k)
  assert len(meta['class_names']) == 1000 and meta['class_names'][0] == 'tench'
  np.testing.assert_array_equal(variables['params']['stem']['kernel'],
                                state['features.conv0.weight'].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables['batch_stats']['block4_layer16']['bn2']['bn']['var'],
                                state['features.denseblock4.denselayer16.norm2.running_var'].numpy())


@needs_torch
def test_a_state_dict_of_another_model_is_refused_naming_the_key(densenet_121_file):
  _, state = densenet_121_file
  state = {k: v.numpy() for k, v in state.items()}
  with pytest.raises(ExportError, match="lacks the weights of .*block3_layer25"):  # DenseNet-169 has 32
    torchvision_weights.convert(state, presets.get('densenet_169'), (64, 64, 3))
  with pytest.raises(ExportError, match=r"'features.conv0.weight' has shape \(64, 3, 7, 7\), but the model "
                     r"needs \(7, 7, 3, 96\)"):  # DenseNet-121's depth at DenseNet-161's width
    torchvision_weights.convert(state, presets.get('densenet_121', growth_rate=48), (64, 64, 3))
  extra = dict(state, **{'features.denseblock1.denselayer1.conv1.bias': np.zeros(128, np.float32)})
  with pytest.raises(ExportError, match="'features.denseblock1.denselayer1.conv1.bias': a torchvision "
                     "DenseNet conv has no bias"):
    torchvision_weights.convert(extra, presets.get('densenet_121'), (64, 64, 3))


@needs_torch
def test_the_script_refuses_a_preset_torchvision_does_not_build(densenet_121_file, tmp_path):
  r = script(f'--weights={densenet_121_file[0]}', '--model=sparsenet_bc_v1', f'--out={tmp_path}/x.npz')
  assert r.returncode == 2
  assert r.stderr.strip().splitlines()[-1].startswith('error: --model=sparsenet_bc_v1 is not a DenseNet with '
                                                      'the ImageNet stem')
  assert not os.path.exists(tmp_path / 'x.npz')


@pytest.mark.skipif(torch is not None, reason='torch is installed: this checks the message without it')
def test_without_torch_the_script_says_how_to_install_it(tmp_path):
  pth = tmp_path / 'w.pth'
  pth.write_bytes(b'not read')
  r = script(f'--weights={pth}', '--model=densenet_121', f'--out={tmp_path}/x.npz')
  assert r.returncode == 2
  assert r.stderr.strip() == "error: reading a .pth needs torch: pip install -e '.[torch]'"
