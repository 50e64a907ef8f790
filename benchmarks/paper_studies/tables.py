"""Running cases, markdown tables, plots, and the record in `benchmarks/RESULTS.md`."""

from __future__ import annotations

import datetime
import os
import platform

from paper_studies.context import say


def selected(names, wanted):
    """`names` in order, only those in `wanted` when it is given."""
    return [name for name in names if not wanted or name in wanted]


def pretty(value, digits=2, percent=True):
    if value is None:
        return "n/a"
    if isinstance(value, float) and percent:
        return f"{100 * value:.{digits}f}%"
    return f"{value}"


def run_cases(context, study, models, methods, run_case):
    results = []
    for model_name in models:
        for method in methods:
            for seed in context.seeds:
                if context.load_result(study, model_name, method, seed) is not None:
                    say(f"{study} {model_name} {method} seed {seed}: done, skipped")
                results.append(run_case(context, model_name, method, seed))
    return results


def grouped(results):
    groups = {}
    for r in results:
        groups.setdefault((r["model"], r["method"]), []).append(r)
    return groups


def seeds_cell(group):
    return ",".join(str(r["seed"]) for r in group)


def mean_cell(group, key, percent=True, digits=2):
    values = [r[key] for r in group if r.get(key) is not None]
    if not values:
        return "n/a"
    mean = sum(values) / len(values)
    spread = max(values) - min(values)
    if percent:
        text = f"{100 * mean:.{digits}f}%"
        return text + (f" ±{100 * spread / 2:.{digits}f}" if len(values) > 1 else "")
    text = f"{mean:.{digits}f}" if digits else f"{mean:.0f}"
    return text + (f" ±{spread / 2:.{digits}f}" if len(values) > 1 else "")


def markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()}"


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bars(context, study, results, key, label):
    plt = _figure()
    groups = grouped(results)
    models = sorted({m for m, _ in groups})
    figure, axes = plt.subplots(1, max(len(models), 1), figsize=(6 * max(len(models), 1), 4),
                                squeeze=False)
    for axis, model_name in zip(axes[0], models):
        methods = [m for (mm, m) in groups if mm == model_name]
        values = [100 * sum(r[key] for r in groups[(model_name, m)]) /
                  len(groups[(model_name, m)]) for m in methods]
        axis.bar(range(len(methods)), values,
                 color=["tab:orange" if "attention" in m or "-p" in m else "tab:blue"
                        for m in methods])
        axis.set_xticks(range(len(methods)), methods, rotation=45, ha="right")
        axis.set_ylabel(f"{label} (%)")
        smoke = ", SMOKE RUN" if context.budget.is_smoke_run else ""
        axis.set_title(f"{model_name} ({context.budget.name} budget{smoke})")
    figure.tight_layout()
    figure.savefig(os.path.join(context.results, f"{study}.png"), dpi=100)
    plt.close(figure)


def plot_unstructured(context, results):
    plt = _figure()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    names = ["dense", "tf_asap slim", "tfmot sparse"]
    for index, r in enumerate(results):
        offset = (index - (len(results) - 1) / 2) * 0.8 / max(len(results), 1)
        label = f"{r['model']} s{r['seed']}"
        axes[0].bar([i + offset for i in range(3)], [r["latency_ms"][n] for n in names],
                    width=0.8 / max(len(results), 1), label=label)
        axes[1].bar([i + offset for i in range(3)], [r["gzip_bytes"][n] / 1024 for n in names],
                    width=0.8 / max(len(results), 1), label=label)
    for axis, label in zip(axes, ["batch-1 LiteRT latency (ms)", "gzipped .tflite (KiB)"]):
        axis.set_xticks(range(3), names)
        axis.set_ylabel(label)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(os.path.join(context.results, "unstructured.png"), dpi=100)
    plt.close(figure)


# The tables of the studies go at the end of the current section of
# RESULTS.md, before the stale history; the other bench_*.py scripts append
# to the file's last section.
HISTORY_HEADING = "\n## History:"


def record_in_results(path, section):
    """Inserts `section` just before the history heading of `path` (or appends it)."""
    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as file:
            text = file.read()
    cut = text.find(HISTORY_HEADING)
    cut = len(text) if cut < 0 else cut
    text = text[:cut].rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n" + text[cut:]
    with open(path + ".tmp", "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(path + ".tmp", path)


def machine_load(load_before):
    """How busy the machine was: the 1-minute load average at a study's start and end."""
    cores = os.cpu_count() or 1
    return (f"1-minute load average {load_before:.1f} at the start and {os.getloadavg()[0]:.1f} "
            f"at the end (the study itself accounts for up to {cores}; more means other jobs "
            "shared the cores and wall times are inflated)")


def write_outputs(context, study, header, rows, notes, command, elapsed, record, results_md,
                  load_before):
    """Writes `<results>/<budget>/<study>.md`, prints the table, and (when `record`)
    appends it to `results_md` with the command, the machine, its load and the date."""
    today = datetime.date.today().isoformat()
    smoke = ("**SMOKE RUN: these numbers check the harness and mean nothing; never quote "
             "them.**\n\n" if context.budget.is_smoke_run else "")
    body = [
        f"{smoke}Budget: **{context.budget.name}**: {context.budget.description}. "
        f"Seeds: {', '.join(map(str, context.seeds))}.",
        "",
        markdown(header, rows),
        "",
        *[f"- {note}" for note in notes if note],
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}; {machine_load(load_before)}. Date: {today}. "
        f"This invocation took {elapsed:.0f} s "
        "(cases done earlier are reused, not re-timed; each row's wall time is its own).  ",
    ]
    if os.path.exists(os.path.join(context.results, f"{study}.png")):
        body.append(f"Plot: `benchmarks/results/{context.budget.name}/{study}.png`.")
    text = "\n".join(body) + "\n"
    with open(os.path.join(context.results, f"{study}.md"), "w", encoding="utf-8") as file:
        file.write(f"# Study: {study}\n\n{text}")
    if record:
        record_in_results(results_md, f"### {study}, {context.budget.name} budget, {today}\n\n{text}")
    print(markdown(header, rows))
    for note in notes:
        if note:
            print("-", note)
