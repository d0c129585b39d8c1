"""SparseNet (Liu & Zeng 2018) in JAX/Flax.

Sub-packages, in the direction data flows (a package imports only those before it):
  model     connectivity tables, layers, the network, presets, counting (JAX/Flax only)
  data      dataset sources, downloads, augmentation, batch order (no model code)
  training  train state, steps, checkpoints, the workdir record, metrics, the training loop
  tools     report, plots, sweeps, export (read runs; never needed to train)
"""
