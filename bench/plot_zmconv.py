#!/usr/bin/python3
"""Plot //bench:zmconv_bench results: dense-equivalent GMAC/s against weight sparsity, per layer.

Usage:
  bazel run -c opt //bench:zmconv_bench -- --benchmark_out=/tmp/zm.json --benchmark_out_format=json
  /usr/bin/python3 bench/plot_zmconv.py /tmp/zm.json -o bench/zmconv.png [--threads] [--ref] [--table]

Needs matplotlib for /usr/bin/python3 (Debian: python3-matplotlib); a pyenv `python3` may lack it.
One subplot per layer; per dtype, dpuemu as a line over sparsity and oneDNN (dense, measured at
sparsity 0) as a dashed horizontal line in the same colour. Repeated rows
(--benchmark_repetitions) are reduced to their median. Rows with a /threads:N suffix are skipped
unless --threads, ref/ rows unless --ref (the reference DPU is slow: --ref switches to a log axis).
"""

import argparse
import collections
import json
import math
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.lines import Line2D  # noqa: E402

IMPLS = ("dpuemu", "onednn", "ref")
ONEDNN_LABEL = {"int8": "oneDNN u8s8s32", "fp16": "oneDNN f32"}
DTYPE_COLOUR = {"int8": "C0", "fp16": "C1"}
THREAD_MARKERS = ("o", "s", "^", "D", "v", "P")

# (impl, layer, dtype, sparsity, threads)
Key = collections.namedtuple("Key", "impl layer dtype sparsity threads")


def die(msg):
    print(f"plot_zmconv: error: {msg}", file=sys.stderr)
    sys.exit(1)


def warn(msg):
    print(f"plot_zmconv: warning: {msg}", file=sys.stderr)


def parse_name(name):
    """'dpuemu/r50_3x3_56/int8/75[/iterations:1][/threads:2]...' -> Key, or None if not zmconv."""
    parts = name.split("/")
    if len(parts) < 4 or parts[0] not in IMPLS:
        return None
    impl, layer, dtype, sparsity = parts[:4]
    try:
        sparsity = int(sparsity)
    except ValueError:
        return None
    threads = 1
    for extra in parts[4:]:  # Google Benchmark's own suffixes: iterations:N, threads:N, real_time...
        if extra.startswith("threads:") and extra[len("threads:"):].isdigit():
            threads = int(extra[len("threads:"):])
    return Key(impl, layer, dtype, sparsity, threads), any(p.startswith("threads:") for p in parts[4:])


def load(path, want_threads, want_ref):
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        die(f"cannot read {path}: {e}")
    except json.JSONDecodeError as e:
        die(f"{path} is not JSON ({e}); run the bench with --benchmark_out_format=json")
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        die(f"{path} has no 'benchmarks' list; is it Google Benchmark JSON output?")

    iters = collections.defaultdict(list)  # Key -> [gmacs] from plain iteration rows
    medians = {}  # Key -> gmacs from aggregate_name == "median" rows
    seen_zmconv = skipped_threads = skipped_ref = 0
    layers = []  # in order of first appearance (the bench registers StandardLayers() in order)
    order = {}
    for row in doc["benchmarks"]:
        # run_name lacks the _median/_mean suffix of aggregate rows; older versions lack run_name.
        name = row.get("run_name") or row.get("name", "")
        parsed = parse_name(name)
        if parsed is None:
            continue
        key, has_threads_suffix = parsed
        seen_zmconv += 1
        if has_threads_suffix and not want_threads:
            skipped_threads += 1
            continue
        if key.impl == "ref" and not want_ref:
            skipped_ref += 1
            continue
        if row.get("error_occurred") or row.get("skipped"):
            warn(f"skipping {row.get('name')}: {row.get('error_message', 'error/skipped')}")
            continue
        if "gmacs" not in row:
            warn(f"skipping {row.get('name')}: no 'gmacs' counter")
            continue
        if key.layer not in layers:
            layers.append(key.layer)
        # Registration order (family_index), which --benchmark_enable_random_interleaving hides.
        order[key.layer] = min(order.get(key.layer, 1 << 30), row.get("family_index", 1 << 30))
        gmacs = float(row["gmacs"])
        if row.get("run_type") == "aggregate":
            if row.get("aggregate_name") == "median":
                medians[key] = gmacs
        else:
            iters[key].append(gmacs)

    if seen_zmconv == 0:
        die(f"{path} has no zmconv rows (names like dpuemu/<layer>/<dtype>/<sparsity>); "
            "was it written by //bench:zmconv_bench?")
    data = {k: statistics.median(v) for k, v in iters.items()}
    data.update(medians)  # the bench's own median wins over our median of the iteration rows
    if not data:
        hints = []
        if skipped_threads:
            hints.append(f"{skipped_threads} /threads: rows (pass --threads)")
        if skipped_ref:
            hints.append(f"{skipped_ref} ref rows (pass --ref)")
        die("no plottable zmconv rows" + (f"; skipped {', '.join(hints)}" if hints else ""))
    layers.sort(key=lambda layer: order[layer])  # stable: first appearance breaks ties
    return doc.get("context", {}), layers, data


def title_from(context):
    host = context.get("host_name", "unknown host")
    bits = [host]
    if "num_cpus" in context:
        cpu = f"{context['num_cpus']} CPUs"
        if context.get("mhz_per_cpu"):
            cpu += f" @ {context['mhz_per_cpu']} MHz"
        bits.append(cpu)
    date = str(context.get("date", ""))
    if date:
        bits.append(date.split("T")[0].split(" ")[0] if "T" in date else date)
    return "ZMConv throughput (dense-equivalent GMAC/s)\n" + ", ".join(bits)


def plot(context, layers, data, out, log_y):
    dtypes = []
    for k in sorted(data, key=lambda k: (k.dtype != "int8", k.dtype != "fp16", k.dtype)):
        if k.dtype not in dtypes:
            dtypes.append(k.dtype)
    colour = dict(DTYPE_COLOUR)
    for i, dt in enumerate(d for d in dtypes if d not in colour):
        colour[dt] = f"C{i + 2}"
    thread_counts = sorted({k.threads for k in data})
    marker = {t: THREAD_MARKERS[i % len(THREAD_MARKERS)] for i, t in enumerate(thread_counts)}
    multi_threads = len(thread_counts) > 1 or thread_counts != [1]
    all_sparsities = sorted({k.sparsity for k in data})

    ncols = min(3, len(layers))
    nrows = math.ceil(len(layers) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(4.6 * ncols, 6.4), 3.6 * nrows), squeeze=False)
    handles = {}  # label -> handle, for one figure-level legend

    def thr(t):
        return f" ({t} thr)" if multi_threads else ""

    for ax, layer in zip(axes.flat, layers):
        ax.set_title(layer, fontsize=11)
        for dt in dtypes:
            c = colour[dt]
            for t in thread_counts:
                pts = sorted((k.sparsity, v) for k, v in data.items()
                             if k.impl == "dpuemu" and k.layer == layer and k.dtype == dt and k.threads == t)
                if pts:
                    label = f"dpuemu {dt}{thr(t)}"
                    (h,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], color=c, marker=marker[t],
                                   linestyle="-" if t == thread_counts[0] else "-.", label=label)
                    handles.setdefault(label, h)
                    for s, v in (pts if t == thread_counts[0] else []):  # label one line per dtype
                        # first dtype's labels above its points, the others' below
                        ax.annotate(f"{v:.1f}", (s, v), textcoords="offset points",
                                    xytext=(0, 5) if dt == dtypes[0] else (0, -11),
                                    ha="center", fontsize=7, color=c)
                onednn = [v for k, v in data.items()
                          if k.impl == "onednn" and k.layer == layer and k.dtype == dt and k.threads == t]
                if onednn:
                    label = ONEDNN_LABEL.get(dt, f"oneDNN {dt}") + thr(t)
                    h = ax.axhline(onednn[0], color=c, linestyle="--", linewidth=1.3,
                                   alpha=0.8 if t == thread_counts[0] else 0.5, label=label)
                    handles.setdefault(label, h)
                ref = sorted((k.sparsity, v) for k, v in data.items()
                             if k.impl == "ref" and k.layer == layer and k.dtype == dt and k.threads == t)
                if ref:
                    label = f"reference DPU {dt}{thr(t)}"
                    (h,) = ax.plot([p[0] for p in ref], [p[1] for p in ref], color=c, marker="x",
                                   linestyle=":", label=label)
                    handles.setdefault(label, h)
        ax.set_xticks(all_sparsities)
        ax.set_xticklabels([f"{s}%" for s in all_sparsities])
        ax.set_xlim(min(all_sparsities) - 5, max(all_sparsities) + 5)
        if log_y:
            ax.set_yscale("log")
        elif ax.lines:  # from 0, with head room for the value labels
            ax.set_ylim(0, 1.15 * max(max(l.get_ydata()) for l in ax.lines))
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("GMAC/s (dense-equivalent)", fontsize=9)
    for ax in axes[-1, :]:
        ax.set_xlabel("weight sparsity", fontsize=9)
    spare = list(axes.flat)[len(layers):]
    for ax in spare:
        ax.axis("off")
    for ax in axes.flat[:len(layers)]:
        if not ax.lines:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")

    # Legend in the first spare cell when the grid has one, else below the subplots.
    impl_rank = ("dpuemu", "oneDNN", "reference")
    order = sorted(handles, key=lambda l: (next(dtypes.index(d) for d in dtypes if f" {d}" in l
                                                 or l.startswith(ONEDNN_LABEL.get(d, f"oneDNN {d}"))),
                                            l.startswith("reference"), impl_rank.index(l.split()[0]), l))
    legend_handles = [Line2D([], [], color=handles[l].get_color(), linestyle=handles[l].get_linestyle(),
                             marker=handles[l].get_marker() if hasattr(handles[l], "get_marker") else None)
                      for l in order]
    if spare:
        spare[0].legend(legend_handles, order, loc="center", fontsize=9, frameon=False)
        fig.suptitle(title_from(context), fontsize=11)
        fig.tight_layout()
    else:
        fig.suptitle(title_from(context), fontsize=11)
        fig.tight_layout()
        fig.legend(legend_handles, order, loc="upper center", bbox_to_anchor=(0.5, 0),
                   ncol=2 if ncols < 3 else 4, fontsize=9, frameon=False)
    fig.savefig(out, dpi=120, bbox_inches="tight")  # "tight" keeps the legend below the axes
    plt.close(fig)


def table(layers, data):
    """The README's table: GMAC/s per layer and dtype, with the ratios the targets are stated in."""
    def get(impl, layer, dtype, sparsity):
        return data.get(Key(impl, layer, dtype, sparsity, 1))

    def num(v):
        return "-" if v is None else f"{v:.1f}" if v >= 1 else f"{v:.2f}"

    def ratio(a, b, digits=2):
        return "-" if a is None or b is None or b == 0 else f"{a / b:.{digits}f}x"

    lines = ["| layer | dtype | oneDNN | dpuemu 0% | vs oneDNN | 50% | 75% | 90% | 50% vs 0% | "
             "75% vs 0% | 90% vs 0% | ref | dpuemu vs ref |",
             "|" + "---|" * 13]
    for layer in layers:
        for dtype in ("int8", "fp16"):
            onednn = get("onednn", layer, dtype, 0)
            d = {s: get("dpuemu", layer, dtype, s) for s in (0, 50, 75, 90)}
            ref = get("ref", layer, dtype, 0)
            if all(v is None for v in d.values()):
                continue
            lines.append(f"| {layer} | {dtype} | {num(onednn)} | {num(d[0])} | {ratio(d[0], onednn)} | "
                         f"{num(d[50])} | {num(d[75])} | {num(d[90])} | {ratio(d[50], d[0])} | "
                         f"{ratio(d[75], d[0])} | {ratio(d[90], d[0])} | {num(ref)} | "
                         f"{ratio(d[0], ref, 0)} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", help="Google Benchmark JSON from //bench:zmconv_bench")
    ap.add_argument("-o", "--output", default="bench/zmconv.png", help="PNG to write (default %(default)s)")
    ap.add_argument("--threads", action="store_true", help="also plot rows with a /threads:N suffix")
    ap.add_argument("--ref", action="store_true", help="also plot the reference DPU (ref/ rows); log y axis")
    ap.add_argument("--table", action="store_true",
                    help="also print the README's markdown table (single-thread rows, ref included)")
    args = ap.parse_args()
    if args.table:
        _, table_layers, table_data = load(args.json, False, True)
        print(table(table_layers, table_data))
    context, layers, data = load(args.json, args.threads, args.ref)
    try:
        plot(context, layers, data, args.output, log_y=args.ref)
    except OSError as e:
        die(f"cannot write {args.output}: {e}")
    print(f"wrote {args.output}: {len(layers)} layer(s), {len(data)} point(s)")


if __name__ == "__main__":
    main()
