"""The paper's comparisons on converged baselines: Tables 1, 3, 4, tfmot, Figure 4.

```
python benchmarks/studies.py adaptive      # Table 1 analog: policies x {attention, L1 per group}
python benchmarks/studies.py mapping       # Table 3 analog: attention mappings, one-shot 50%
python benchmarks/studies.py fixed-rate    # Table 4 analog: IAP / ILP / one-shot at equal wall time
python benchmarks/studies.py unstructured  # tfmot prune_low_magnitude vs our slimmed model
python benchmarks/studies.py trace         # Figure 4 analog: validation and test drop per round
python benchmarks/studies.py all           # the five above, in this order
```

Every study prunes a converged baseline written by `tf-asap train`: by
default the shipped one of each model under `saved_models/` (a directory
named after the model, or any whose `train.json` names it), or those given
with `--baseline DIR [DIR ...]`. Every decision (policy, best round,
one-shot fraction) reads the baseline's held-out validation split (the
share and seed in its `train.json`), and the 10,000 test images are only
reported. Every row records its wall time.

Budgets (see `paper_studies/budgets.py`): the default CPU budget (the two
small models); `--resnet20` (the shipped resnet20); `--quick`, a smoke run of
the harness in under 5 minutes on a tiny baseline it trains itself (its
numbers mean nothing, and it never writes to `RESULTS.md`); `--paper`
(CIFAR-10 baselines passed with `--baseline`, weight rewinding; a GPU).
`--seeds 0 1` runs every case once per seed (the seed drives shuffling,
augmentation and the random criterion; the held-out split stays the
baseline's) and reports the mean and half the spread.

Resumable: each (study, model, method, seed) writes one JSON file under
`benchmarks/results/<budget>/runs/`, and a case whose file exists is
skipped; adaptive runs keep their run directories under
`benchmarks/work/<budget>/` (ignored by git), so a killed run resumes after
its last completed round. `--controller-option KEY=JSON` passes more keyword
arguments to every adaptive run's `RoundController`.

The unstructured baseline runs tensorflow-model-optimization in a subprocess
(`studies.py _tfmot-worker`, `paper_studies/tfmot_worker.py`) with tfmot
and tf_keras installed into `benchmarks/work/baselines-site`, never into
the main environment: importing tfmot sets `TF_USE_LEGACY_KERAS=1`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
WORK_DIR = os.path.join(HERE, "work")
RESULTS_MD = os.path.join(HERE, "RESULTS.md")
sys.path.insert(0, HERE)

from paper_studies.budgets import BUDGETS, STUDIES  # noqa: E402 - needs the path above


def controller_option(text):
    """`KEY=JSON` of `--controller-option`, e.g. `final_epochs=2`."""
    key, separator, value = text.partition("=")
    if not separator or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"--controller-option {text!r}: expected KEY=VALUE with a RoundController keyword "
            "argument name, e.g. final_epochs=2.")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", choices=STUDIES + ("all",))
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="smoke run of the harness on a tiny baseline (<= 5 min on 2 cores); "
                      "its numbers mean nothing")
    size.add_argument("--resnet20", action="store_true",
                      help="the resnet20 study on the shipped resnet20 baseline")
    size.add_argument("--paper", action="store_true",
                      help="CIFAR-10 baselines given with --baseline, weight rewinding (GPU)")
    parser.add_argument("--baseline", nargs="+", default=[], metavar="DIR",
                        help="baseline directories written by `tf-asap train` (default: the "
                        "shipped ones under saved_models/)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--models", nargs="+", help="only these zoo models")
    parser.add_argument("--methods", nargs="+", help="only these methods of the study")
    parser.add_argument("--controller-option", type=controller_option, action="append",
                        default=[], metavar="KEY=VALUE",
                        help="one more RoundController keyword argument for the adaptive runs")
    parser.add_argument("--data-dir", help="where data sets are looked for first")
    parser.add_argument("--results-dir", default=RESULTS_DIR,
                        help="tables, plots and per-case results (default: benchmarks/results)")
    parser.add_argument("--work-dir", default=WORK_DIR,
                        help="run directories (default: benchmarks/work)")
    parser.add_argument("--no-record", action="store_true",
                        help="do not append the tables to benchmarks/RESULTS.md")
    parser.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2))
    args = parser.parse_args(argv)
    args.budget = BUDGETS["quick" if args.quick else "resnet20" if args.resnet20
                          else "paper" if args.paper else "default"]
    # A smoke run is never a result: it is not recorded.
    args.record = not args.no_record and not args.budget.is_smoke_run
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_tfmot-worker"]:
        from paper_studies.tfmot_worker import tfmot_worker

        tfmot_worker(argv[1])
        return 0
    args = parse_arguments(argv)
    # Imported once the arguments are known good: they start TensorFlow.
    from paper_studies import adaptive, fixed_rate, mapping, tables, trace, unstructured
    from paper_studies.context import Context

    budget = args.budget
    context = Context(budget, args.seeds, args.results_dir, args.work_dir,
                      baseline_dirs=args.baseline, data_dir=args.data_dir, verbose=args.verbose,
                      controller_options=dict(args.controller_option))
    models = list(args.models or budget.models)
    command = "python benchmarks/studies.py " + " ".join(shlex.quote(a) for a in argv)
    runners = {"adaptive": adaptive.study_adaptive, "mapping": mapping.study_mapping,
               "fixed-rate": fixed_rate.study_fixed_rate,
               "unstructured": unstructured.study_unstructured, "trace": trace.study_trace}
    for name in STUDIES if args.study == "all" else (args.study,):
        started, load = time.monotonic(), os.getloadavg()[0]
        header, rows, notes = runners[name](context, models, args.methods)
        tables.write_outputs(context, name, header, rows, notes, command,
                             time.monotonic() - started, args.record, RESULTS_MD, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
