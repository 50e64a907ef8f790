"""The paper's comparisons (Tables 1, 3, 4, Figure 4 and tfmot), one module per study.

`benchmarks/studies.py` is the command line. The modules:

- `budgets`: how much data and fine-tuning each budget spends, and the
  method names of every study.
- `baselines`: the trained baselines the studies prune (shipped directories
  written by `tf-asap train`, or a tiny one trained for `--quick`).
- `context`: data splits (the baseline's held-out validation split for
  every decision, the test set for reporting only) and per-case result files.
- `pruning`: pieces the studies share (criteria, policies, fine-tuning,
  one-shot masks, cost summaries, the per-round test tracker).
- `adaptive`, `mapping`, `fixed_rate`, `unstructured`, `trace`: one study each.
- `tables`: markdown tables, plots and `RESULTS.md`.
- `tfmot_worker`: runs in a subprocess with `TF_USE_LEGACY_KERAS=1`; it
  never imports tf_asap (importing tfmot switches Keras to tf_keras).

This file imports nothing, so that the tfmot worker can start without
TensorFlow's Keras 3 being imported first.
"""
