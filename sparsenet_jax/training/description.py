"""A run's description (`run.json`): the model its config resolved to and the facts of the data it trains
on, resolved once at the run's start. The checkpoints embed it and an exported model's header carries it,
so everything that reads a run (resume, eval, report, sweeps, export, predict) reads it instead of
re-deriving it from the config, and checks it the same way (`Description.problem`) wherever it is read
from. `record` owns the file. Pure Python (no JAX).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Mapping, Optional

from sparsenet_jax.model import spec as spec_lib


@dataclasses.dataclass(frozen=True)
class Description:
  """What a run trains, resolved once at its start: the model and the facts of its data.

  JSON-ready and flat, so a checkpoint's meta embeds it as it is (`to_json`), and an exported model's
  header carries the fields that inference needs.
  """
  preset: Optional[str]
  model: Dict[str, Any]  # ModelSpec.architecture() of the resolved model
  dataset: str
  fingerprint: Optional[str]  # of the pixels and labels trained and evaluated on (datasets.Dataset)
  image_shape: List[int]
  num_classes: int
  class_names: List[str]
  mean: List[float]  # normalisation, per channel, 0..255 pixel units
  std: List[float]
  augment: Optional[str]
  train_size: Optional[int]
  steps_per_epoch: Optional[int]

  @property
  def spec(self) -> spec_lib.ModelSpec:
    """The trained model, unrolled (the canonical layout)."""
    return spec_lib.ModelSpec.from_json(self.model)

  def to_json(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> 'Description':
    """From `to_json` output, a checkpoint's meta (extra keys ignored) or an exported file's header;
    fields that older files lack are None. ValueError if it describes no model."""
    if not isinstance(data, Mapping) or not isinstance(data.get('model'), Mapping):
      raise ValueError('it holds no model description')
    model = dict(data['model'])
    if 'num_classes' not in model and 'num_classes' in data:  # checkpoints before the canonical layout
      model['num_classes'] = data['num_classes']
    values = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
    values['model'] = model
    values['num_classes'] = model.get('num_classes')
    for name in ('image_shape', 'class_names', 'mean', 'std'):
      values[name] = list(values[name]) if isinstance(values[name], (list, tuple)) else values[name] or []
    return cls(**values)

  def problem(self) -> Optional[str]:
    """What keeps this description from building and feeding its model, or None: a model this version
    cannot build, an image shape that is not [H, W, C], statistics that are not one finite number per
    channel (std positive), class names that do not match the class count."""
    try:
      spec = self.spec
    except (KeyError, TypeError, ValueError) as e:
      return f'its model cannot be built ({" ".join(str(e).split())})'
    shape = self.image_shape
    if not isinstance(shape, list) or len(shape) != 3 or not all(is_integer(d, 1) for d in shape):
      return f'image_shape must be [height, width, channels] of positive integers, got {shape!r}'
    for name in ('mean', 'std'):
      values = getattr(self, name)
      if (not isinstance(values, list) or len(values) != shape[2]
          or not all(is_number(v) and math.isfinite(v) for v in values)):
        return f'{name} must be {shape[2]} finite numbers, one per channel, got {values!r}'
    if any(v <= 0 for v in self.std):
      return f'std must be positive (inputs are divided by it), got {self.std!r}'
    names = self.class_names
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
      return f'class_names must be a list of strings, got {names!r}'
    if names and len(names) != spec.num_classes:
      return f'class_names has {len(names)} names for the model\'s {spec.num_classes} classes'
    return None


def is_number(value: Any) -> bool:
  """An int or a float as JSON gives them (its true and false are not numbers)."""
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_integer(value: Any, low: Optional[int] = None) -> bool:
  """An integer (not true or false), at least `low` when given."""
  return isinstance(value, int) and not isinstance(value, bool) and (low is None or value >= low)
