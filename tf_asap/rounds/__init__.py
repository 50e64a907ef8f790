"""Pruning rounds: Algorithm 1 and what makes it durable.

- `state`: snapshots of weights, masks and optimizer (rewind, rollback);
- `run_directory`: the run directory's file names, lock and fingerprint;
- `journal`: manifest, round log and checkpoints; resume after a crash;
- `step`: one round's pieces (prune, evaluate, log line), shared by both
  front doors;
- `training`: batches, the held-out validation split, compiling;
- `baseline`: `train_baseline`, the epoch-`k` rewind checkpoint;
- `controller`: `RoundController`, the front door with a run directory;
- `callback`: `AdaptivePruning`, the front door inside `model.fit`;
- `report`: the round table, the Figure-4 plot and the per-layer chart.
"""
