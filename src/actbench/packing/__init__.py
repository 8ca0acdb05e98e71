"""Packed runs: several runs of one architecture trained side by side by one Trainer.

:mod:`~actbench.packing.member` is one run inside a pack (its record, model, optimizer, RNG,
batch order, metrics and diagnostics); :mod:`~actbench.packing.module` is the LightningModule
that steps them together; :mod:`~actbench.packing.state` saves and restores members atomically
across the pack; :mod:`~actbench.packing.run` forms packs and trains them.
"""
