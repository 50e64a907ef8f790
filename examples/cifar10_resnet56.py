"""The paper's CIFAR-10 ResNet-56 experiment, for a GPU machine with internet.

This is the recipe of the paper's main CIFAR-10 result (appendix A.1), not a
quick demo: it trains ResNet-56 from scratch for 182 epochs and then prunes
it in rounds that each retrain `182 - k` epochs, so expect on the order of a
GPU-day. It is not run by the tests.

Recipe:

- data: CIFAR-10 through `tensorflow-datasets` (downloaded on first use),
  normalised per channel, 4-pixel zero padding + random 32x32 crop +
  horizontal flip for training; the test set is the validation set;
- model: `tf_asap.zoo` ResNet-56 (projection shortcuts where the shape
  changes, BatchNormalization with PyTorch's momentum);
- training: SGD with Nesterov momentum 0.9, batch 128, learning rate 0.1
  divided by 10 at 50% and 75% of training, coupled weight decay 2e-4
  (`tf_asap.recipe`), 182 epochs;
- pruning: activation attention (mean |a|, p = 1), layer-aware thresholds,
  the accuracy-guaranteed policy (Algorithm 2) and weight rewinding to epoch
  k = 60% of training (appendix A.1: "roughly 60%").

Everything goes to the run directory; if the machine goes away, run the same
command again and it resumes after the last completed round (and reuses the
trained baseline).

    pip install "tf_asap[tfds,plot]"
    python examples/cifar10_resnet56.py --run-dir runs/cifar10_resnet56 \\
        --max-accuracy-drop 0.01

The command line does the same in two steps:

    tf-asap train --dataset cifar10 --model resnet56 --epochs 182 --output runs/r56
    tf-asap prune runs/r56 --max-accuracy-drop 1% --run-dir runs/r56_pruned
"""

import argparse

import keras

from tf_asap import data, export, recipe, zoo
from tf_asap.rounds.controller import RoundController, train_baseline
from tf_asap.pruning.policies import AccuracyGuaranteed, FlopsTarget, ParamsTarget


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default="runs/cifar10_resnet56")
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--epochs", type=int, default=182)
    parser.add_argument("--batch-size", type=int, default=recipe.PAPER_BATCH_SIZE)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--max-accuracy-drop", type=float, default=None)
    target.add_argument("--params-reduction", type=float, default=None)
    target.add_argument("--flops-reduction", type=float, default=None)
    parser.add_argument("--criterion", default="attention")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets directory")
    return parser.parse_args()


def main():
    args = parse_args()
    keras.utils.set_random_seed(0)
    train = data.load_dataset("cifar10", "train", batch_size=args.batch_size, data_dir=args.data_dir)
    test = data.load_dataset("cifar10", "test", batch_size=512, data_dir=args.data_dir)

    model = zoo.build_model(args.model, input_shape=(32, 32, 3), num_classes=10)
    # The paper's optimizer and schedule for a run of `epochs` epochs.
    optimizer = recipe.paper_optimizer(args.epochs, int(train.cardinality()))
    baseline = train_baseline(
        model, train, test, epochs=args.epochs, run_dir=args.run_dir,
        optimizer=optimizer, verbose=2,
    )
    print(f"{args.model}: baseline test accuracy {baseline.accuracy:.2%}")

    if args.params_reduction is not None:
        policy = ParamsTarget(reduction=args.params_reduction)
    elif args.flops_reduction is not None:
        policy = FlopsTarget(reduction=args.flops_reduction)
    else:
        drop = 0.01 if args.max_accuracy_drop is None else args.max_accuracy_drop
        policy = AccuracyGuaranteed(max_accuracy_drop=drop)

    controller = RoundController(
        baseline.model, policy, train, test, run_dir=args.run_dir,
        epochs=baseline.epochs, rewind_checkpoint=baseline.rewind_checkpoint,
        criterion=args.criterion, verbose=2,
    )
    result = controller.run()
    best = result.best
    print(
        f"best round {result.best_round}: accuracy {best['accuracy']:.2%}, params "
        f"-{best['params_reduction']:.1%}, FLOPs -{best['flops_reduction']:.1%}; "
        f"report in {args.run_dir}/report.md"
    )
    export.export_saved_model(
        result.slim_model, f"{args.run_dir}/export", args.model, overwrite=True
    )


if __name__ == "__main__":
    main()
