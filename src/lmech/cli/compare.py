"""``lmech compare A.pt B.pt --data digits|FILE.npz``: how alike are two saved networks, layer by layer.

Loads both models (:func:`lmech.models.zoo.load_model`: a checkpoint or a state dict plus a zoo name, read
with ``weights_only=True``; a whole pickled module only with ``--trust-pickle``), runs them on the same
inputs, and compares every listed layer of A with every listed layer of B
(:func:`lmech.instruments.similarity.compare`). Prints the layer correspondence table (for each layer of A,
the most similar layer of B, and back), the whole matrix when it fits in 80 columns; ``--out`` draws the
heatmap, ``--json`` prints everything as one JSON object. Everything is checked before any work: a missing
file, an unknown layer, inputs the model does not accept, an ``.npz`` whose ``x`` and ``y`` disagree on the
number of examples exit 2 naming the value.

The default metric, ``auto``, is debiased linear CKA (Nguyen et al. 2021, arXiv 2010.15327) when a compared
layer has at least n/10 features for n examples, where the biased estimator (Kornblith et al. 2019, arXiv
1905.00414) is inflated, and linear CKA otherwise; the output says which.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from lmech.cli.common import EXIT_OK, out, print_json
from lmech.errors import BadInput

#: ``auto`` uses debiased CKA when the widest compared layer has at least n / AUTO_RATIO features
AUTO_RATIO = 10
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def _options(text: str | None, flag: str) -> dict:
    """``key=value,key=value`` zoo options (integers where they parse)."""
    if not text:
        return {}
    opts = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise BadInput(flag, text, "key=value pairs separated by commas, e.g. n_head=4")
        value = value.strip()
        opts[key.strip()] = int(value) if value.lstrip("-").isdigit() else value
    return opts


def _data(spec: str, n: int | None):
    """(inputs, labels or None) of ``--data``: the scikit-learn digits or an .npz with x (and y)."""
    import numpy as np
    import torch

    if spec == "digits":
        from lmech.data.digits import N_DIGITS, digits

        count = N_DIGITS if n is None else n
        if not 4 <= count <= N_DIGITS:
            raise BadInput("--n", n, f"a number of digits in [4, {N_DIGITS}]")
        x, y = digits(count, one_hot=False, dtype=torch.float32)
        return x, y
    path = Path(spec)
    if path.suffix != ".npz" or not path.is_file():
        raise BadInput("--data", spec, "'digits' or an existing .npz file holding an array 'x' (n, ...) and "
                       "optionally labels 'y' (n,)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError) as exc:
        raise BadInput("--data", spec, f"a readable .npz file without pickled objects ({exc})") from None
    if "x" not in arrays:
        raise BadInput("--data", spec, f"an .npz with an array named 'x'; it holds {sorted(arrays) or 'nothing'}")
    x = arrays["x"]
    if x.ndim < 2 or x.shape[0] < 4 or not np.issubdtype(x.dtype, np.number):
        raise BadInput("--data", f"x of shape {x.shape}, dtype {x.dtype}", "numeric inputs (n, ...) with n >= 4")
    if not np.isfinite(x).all():
        raise BadInput("--data", spec, "finite inputs (x holds NaN or inf)")
    y = arrays.get("y")
    if y is not None and (y.ndim != 1 or y.shape[0] != x.shape[0]):
        raise BadInput("--data", f"y of shape {y.shape} against x of shape {x.shape}",
                       "as many labels as examples (mismatched example counts)")
    if n is not None:
        if not 4 <= n <= x.shape[0]:
            raise BadInput("--n", n, f"a number of examples in [4, {x.shape[0]}]")
        x, y = x[:n], (y[:n] if y is not None else None)
    return torch.as_tensor(x, dtype=torch.float32), (torch.as_tensor(y, dtype=torch.long) if y is not None else None)


def _widths(model, x, layers, side: str) -> dict[str, int]:
    """Feature counts of ``layers`` on two examples; also checks that the model accepts the inputs."""
    from lmech.instruments.features import capture_activations

    try:
        acts = capture_activations(model, x[:2], layers)
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001  (the model's own error on inputs it does not accept)
        raise BadInput("--data", f"inputs of shape {tuple(x.shape)}", f"inputs model {side} accepts "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    missing = [k for k in (layers or []) if k not in acts]
    if missing:
        raise BadInput(f"--layers{'-b' if side == 'B' else ''}", missing, f"layers of model {side} that run in "
                       "its forward pass")
    return {k: int(v[0].numel()) for k, v in acts.items()}


def _layer_list(text: list[str] | None) -> list[str] | None:
    if not text:
        return None
    names = [n.strip() for part in text for n in part.split(",") if n.strip()]
    return names or None


def _check_layers(model, names: list[str], flag: str, side: str) -> None:
    known = dict(model.named_modules())
    unknown = [n for n in names if n not in known]
    if unknown:
        shown = ", ".join(k for k in list(known)[1:13])
        raise BadInput(flag, ",".join(unknown), f"names of submodules of model {side}, e.g. {shown}")


def _accuracy(model, x, y) -> float | None:
    import torch

    if y is None:
        return None
    with torch.no_grad():
        logits = model(x)
    if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        return None
    return float((logits.argmax(1) == y).double().mean())


def _fit(text: str) -> None:
    # a path longer than the line keeps a line of its own, whole (never cut in the middle)
    out.print(textwrap.fill(text, width=80, break_on_hyphens=False, break_long_words=False), markup=False)


def cmd_compare(args: argparse.Namespace) -> int:
    from lmech.instruments import similarity as S
    from lmech.models.zoo import default_layers, load_model

    metrics = ("auto", *S.METRICS)
    if args.metric not in metrics:
        raise BadInput("--metric", args.metric, f"one of {', '.join(metrics)}")
    if args.out is not None and Path(args.out).suffix.lower() not in FIGURE_SUFFIXES:
        raise BadInput("--out", args.out, "a figure path ending in .png, .pdf or .svg")
    if args.n is not None and args.n < 4:
        raise BadInput("--n", args.n, "at least 4 examples")
    for flag, path in (("A", args.a), ("B", args.b)):
        if not Path(path).is_file():
            raise BadInput(flag, path, "an existing model file (.pt: a checkpoint, or a state dict with --model)")
    model_a, name_a = load_model(args.a, args.model_a or args.model, trust_pickle=args.trust_pickle,
                                 options=_options(args.options_a or args.options, "--options"), argument="A")
    model_b, name_b = load_model(args.b, args.model_b or args.model, trust_pickle=args.trust_pickle,
                                 options=_options(args.options_b or args.options, "--options"), argument="B")
    x, y = _data(args.data, args.n)
    layers_a = _layer_list(args.layers) or (default_layers(name_a, model_a) if name_a else None)
    layers_b = (_layer_list(args.layers_b) or (_layer_list(args.layers) if name_a == name_b and args.layers else None)
                or (default_layers(name_b, model_b) if name_b else None))
    if layers_a is not None:
        _check_layers(model_a, layers_a, "--layers", "A")
    if layers_b is not None:
        _check_layers(model_b, layers_b, "--layers-b", "B")
    widths_a, widths_b = _widths(model_a, x, layers_a, "A"), _widths(model_b, x, layers_b, "B")
    layers_a, layers_b = list(widths_a), list(widths_b)  # a pickled module: its leaf modules that ran
    n = x.shape[0]
    widest = max(max(widths_a.values()), max(widths_b.values()))
    metric = args.metric
    reason = None
    if metric == "auto":
        metric = "debiased_cka" if widest * AUTO_RATIO >= n else "linear_cka"
        reason = (f"the widest layer has {widest} features for {n} examples (p >= n/{AUTO_RATIO}: the biased "
                  "HSIC is inflated)" if metric == "debiased_cka" else
                  f"the widest layer has {widest} features for {n} examples (p < n/{AUTO_RATIO})")
    matrix = S.compare(model_a, model_b, x, layers=layers_a, layers_b=layers_b, metric=metric,
                       batch_size=args.batch_size)
    higher_is_better = metric != "procrustes"
    values = matrix.to_numpy()
    pick = values.argmax if higher_is_better else values.argmin
    rows = []
    for i, la in enumerate(matrix.index):
        j = int(pick(axis=1)[i])
        rows.append({"layer_a": la, "best_b": matrix.columns[j], "value": float(values[i, j])})
    cols = []
    for j, lb in enumerate(matrix.columns):
        i = int(pick(axis=0)[j])
        cols.append({"layer_b": lb, "best_a": matrix.index[i], "value": float(values[i, j])})
    acc_a, acc_b = _accuracy(model_a, x, y), _accuracy(model_b, x, y)
    figure = _draw(matrix, metric, args, name_a, name_b, higher_is_better) if args.out else None

    if args.json:
        print_json({"a": str(args.a), "b": str(args.b), "model_a": name_a, "model_b": name_b, "data": args.data,
                    "n": n, "metric": metric, "metric_reason": reason, "layers_a": list(matrix.index),
                    "layers_b": list(matrix.columns), "features_a": widths_a, "features_b": widths_b,
                    "matrix": values.tolist(), "best_b_for_a": rows, "best_a_for_b": cols,
                    "accuracy_a": acc_a, "accuracy_b": acc_b, "figure": str(figure) if figure else None})
        return EXIT_OK
    _print_text(args, name_a, name_b, n, metric, reason, matrix, rows, cols, acc_a, acc_b, figure)
    return EXIT_OK


def _label(path: str, name: str | None) -> str:
    return f"{Path(path).name} ({name or 'pickled module'})"


def _print_text(args, name_a, name_b, n, metric, reason, matrix, rows, cols, acc_a, acc_b, figure) -> None:
    from rich import box
    from rich.table import Table

    _fit(f"A = {_label(args.a, name_a)}, B = {_label(args.b, name_b)}, on {n} examples of {args.data}.")
    if acc_a is not None and acc_b is not None:
        _fit(f"Accuracy on these examples: A {acc_a:.3f}, B {acc_b:.3f}.")
    _fit(f"Metric: {metric.replace('_', ' ')}" + (f", chosen by auto: {reason}." if reason else ".")
         + (" Procrustes is a distance: lower is more alike." if metric == "procrustes" else ""))
    best = "lowest" if metric == "procrustes" else "highest"
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False,
                  title=f"layer correspondence ({best} value)", title_justify="left")
    for col, justify in (("layer of A", "left"), ("most alike in B", "left"), ("value", "right")):
        table.add_column(col, justify=justify, overflow="fold", max_width=30)
    for r in rows:
        table.add_row(r["layer_a"], r["best_b"], f"{r['value']:.3f}")
    out.print(table, width=80)
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for col, justify in (("layer of B", "left"), ("most alike in A", "left"), ("value", "right")):
        table.add_column(col, justify=justify, overflow="fold", max_width=30)
    for c in cols:
        table.add_row(c["layer_b"], c["best_a"], f"{c['value']:.3f}")
    out.print(table, width=80)
    label_width = max(len(str(k)) for k in matrix.index)
    if label_width + sum(max(6, len(str(c))) + 2 for c in matrix.columns) <= 78:
        table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, title="A (rows) x B (columns)",
                      title_justify="left")
        table.add_column("")
        for c in matrix.columns:
            table.add_column(str(c), justify="right")
        for la, row in zip(matrix.index, matrix.to_numpy()):
            table.add_row(str(la), *(f"{v:.3f}" for v in row))
        out.print(table, width=80)
    elif not figure:
        _fit("The whole matrix is wider than 80 columns: --json prints it, --out draws it.")
    if figure:
        _fit(f"figure: {figure}")


def _draw(matrix, metric: str, args, name_a, name_b, higher_is_better: bool) -> Path:
    import numpy as np

    from lmech.report import plotting as P

    values = matrix.to_numpy()
    fig, axes = P.panels(1, ncols=1, size=(max(5.0, 1.6 + 0.6 * len(matrix.columns)),
                                           max(4.0, 1.4 + 0.45 * len(matrix.index))))
    ax = axes[0]
    im = ax.imshow(values, cmap="magma" if higher_is_better else "magma_r", origin="lower", aspect="auto")
    for i in range(values.shape[0]):
        j = int(np.nanargmax(values[i]) if higher_is_better else np.nanargmin(values[i]))
        ax.plot([j], [i], "o", markerfacecolor="none", markeredgecolor="C0", markersize=10)
    ax.set_xticks(range(len(matrix.columns)))
    ax.set_xticklabels(matrix.columns, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(matrix.index)))
    ax.set_yticklabels(matrix.index, fontsize=7)
    ax.set(xlabel=f"B: {_label(args.b, name_b)}", ylabel=f"A: {_label(args.a, name_a)}",
           title=f"{metric.replace('_', ' ')} (○: row's most alike)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return P.save(fig, Path(args.out))


def add(sub, common: argparse.ArgumentParser) -> None:  # noqa: ARG001  (no run store: common's --store unused)
    s = sub.add_parser(
        "compare", help="layer-by-layer similarity of two saved models",
        description="Compare every layer of model A with every layer of model B on the same inputs: the "
        "layer correspondence table, the similarity matrix (--json) and its heatmap (--out). A model file is "
        "a checkpoint of lmech.models.zoo.save, or a state dict with --model (lmech's zoo: mlp, cnn, "
        "transformer); both are read with torch.load(weights_only=True), which runs no code from the file.",
        epilog="SECURITY: a whole pickled module (torch.save(model)) can only be read by unpickling, which runs "
        "any code the file contains. It is refused unless --trust-pickle is given: use that flag only for "
        "files you made or trust. Exit codes: 0 compared, 2 bad input (nothing ran), 5 the figure could not "
        "be written.")
    s.add_argument("a", metavar="A.pt", help="model A: a checkpoint or a state dict")
    s.add_argument("b", metavar="B.pt", help="model B: a checkpoint or a state dict")
    s.add_argument("--data", required=True, metavar="digits|FILE.npz",
                   help="inputs: scikit-learn digits, or an .npz with x (n, ...) and optional labels y (n,)")
    s.add_argument("--n", type=int, default=None, help="use the first N examples (default: all)")
    s.add_argument("--model", choices=("mlp", "cnn", "transformer"), default=None,
                   help="zoo name of both state dicts (a checkpoint names its own)")
    s.add_argument("--model-a", choices=("mlp", "cnn", "transformer"), default=None, help="zoo name of A")
    s.add_argument("--model-b", choices=("mlp", "cnn", "transformer"), default=None, help="zoo name of B")
    s.add_argument("--options", metavar="K=V,...", default=None,
                   help="zoo options not visible in the weights, e.g. n_head=4 (both)")
    s.add_argument("--options-a", metavar="K=V,...", default=None, help="zoo options of A")
    s.add_argument("--options-b", metavar="K=V,...", default=None, help="zoo options of B")
    s.add_argument("--layers", action="append", metavar="NAMES",
                   help="comma-separated submodules of A (default: the zoo model's representations, or the "
                   "leaf modules of a pickled module); also of B when both are the same zoo model")
    s.add_argument("--layers-b", action="append", metavar="NAMES", help="comma-separated submodules of B")
    s.add_argument("--metric", default="auto", metavar="NAME",
                   help="auto (default: debiased CKA when a layer has >= n/10 features, else linear CKA), "
                   "linear_cka, debiased_cka, rbf_cka, mutual_knn, procrustes (a distance), svcca")
    s.add_argument("--batch-size", type=int, default=None, metavar="B", help="run the models on B examples at a time")
    s.add_argument("--trust-pickle", action="store_true",
                   help="also read whole pickled modules: RUNS CODE FROM THE FILES (see SECURITY below)")
    s.add_argument("--out", metavar="FIG", default=None, help="draw the heatmap to this figure (.png, .pdf, .svg)")
    s.add_argument("--json", action="store_true", help="one JSON object: matrix, layers, correspondence")
    s.set_defaults(func=cmd_compare)
