"""run_all results -> side-by-side ratios and the Markdown tables of RESULTS.md."""

from __future__ import annotations

from edgecnn.deploy.formats import PREFERENCE as RUNTIME_PREFERENCE

BASELINE = "keras-predict"  # the lecture's way of classifying one frame
TASK_TITLES = {"neu": "NEU steel surface defects", "cwru": "CWRU bearing vibration",
               "mnist": "MNIST digits"}
# Row order inside a model: Keras first, then the bundle formats as the runtime ranks them.
ROW_ORDER = ("keras-predict", "keras", *reversed(RUNTIME_PREFERENCE))


def rows_by_name(model: dict) -> dict[str, dict]:
    bench = model.get("bench") or {}
    return {row["name"]: row for row in bench.get("rows", [])}


def ours_format(model: dict) -> str | None:
    """The edge model's runtime format: the first of RUNTIME_PREFERENCE it was benched in."""
    rows = rows_by_name(model)
    return next((fmt for fmt in RUNTIME_PREFERENCE if fmt in rows), None)


def _ratio(numerator, denominator, digits: int = 2):
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, digits)


def task_ratios(edge: dict, seed: dict) -> dict:
    """Seed vs edge, all from the same run: latency, size, MACs, accuracy, training time."""
    fmt = ours_format(edge)
    ours = rows_by_name(edge).get(fmt) if fmt else None
    seed_rows = rows_by_name(seed)
    baseline = seed_rows.get(BASELINE)
    seed_float = seed_rows.get("onnx")
    seed_keras = seed_rows.get("keras")
    if ours is None:
        return {"ours_format": None}
    p50 = ours["latency_ms"]["p50"]
    out = {
        "ours_format": fmt,
        "latency_vs_lecture_predict": _ratio(baseline and baseline["latency_ms"]["p50"], p50, 1),
        "latency_vs_seed_keras_call": _ratio(seed_keras and seed_keras["latency_ms"]["p50"],
                                             p50, 1),
        "latency_vs_seed_onnx": _ratio(seed_float and seed_float["latency_ms"]["p50"], p50, 1),
        "size_vs_seed_keras": _ratio(seed_keras and seed_keras["size_bytes"],
                                     ours["size_bytes"], 1),
        "size_vs_seed_onnx": _ratio(seed_float and seed_float["size_bytes"],
                                    ours["size_bytes"], 1),
        "macs_vs_seed": _ratio((seed.get("bench") or {}).get("macs", {}).get("total"),
                               ours.get("macs"), 1),
        "train_time_vs_seed": _ratio(edge.get("train_seconds"), seed.get("train_seconds")),
        "accuracy_delta_pp": None,
    }
    seed_accuracy = seed_keras["accuracy"] if seed_keras else None
    if ours.get("accuracy") is not None and seed_accuracy is not None:
        out["accuracy_delta_pp"] = round((ours["accuracy"] - seed_accuracy) * 100, 2)
    return out


# ----------------------------------------------------------------------------- markdown

def _pct(value) -> str:
    return f"{value * 100:.2f} %" if value is not None else "-"


def _ms(value) -> str:
    return f"{value:.3f}" if value is not None else "-"


def _kb(value) -> str:
    return f"{value / 1024:,.1f}" if value is not None else "-"


def _x(value) -> str:
    return f"{value:g}x" if value is not None else "-"


def _seconds(value) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def summary_table(results: dict) -> list[str]:
    """One line per task: the README table."""
    rows = []
    for task, entry in results["tasks"].items():
        edge, seed = entry["models"].get("edge", {}), entry["models"].get("seed", {})
        ratios = entry.get("ratios") or {}
        fmt = ratios.get("ours_format")
        ours = rows_by_name(edge).get(fmt, {}) if fmt else {}
        seed_rows = rows_by_name(seed)
        baseline = seed_rows.get(BASELINE, {})
        seed_keras = seed_rows.get("keras", {})
        rows.append([
            task, _pct(seed_keras.get("accuracy")), _pct(ours.get("accuracy")),
            _seconds(seed.get("train_seconds")), _seconds(edge.get("train_seconds")),
            _ms((baseline.get("latency_ms") or {}).get("p50")),
            _ms((ours.get("latency_ms") or {}).get("p50")),
            _x(ratios.get("latency_vs_lecture_predict")),
            _kb(seed_keras.get("size_bytes")),
            _kb(seed_rows.get("onnx", {}).get("size_bytes")), _kb(ours.get("size_bytes")),
            _x(ratios.get("size_vs_seed_onnx")), fmt or "-",
        ])
    header = ["task", "seed val acc (Keras)", "ours val acc", "seed train", "ours train",
              "seed `model.predict` p50 ms", "ours p50 ms", "speed-up", "seed .keras KB",
              "seed ONNX KB", "ours KB", "smaller than seed ONNX", "ours = edge model as"]
    return _table(header, rows)


def _model_table(entry: dict) -> list[str]:
    rows = []
    for role in ("seed", "edge"):
        model = entry["models"].get(role)
        if not model:
            continue
        bench = model.get("bench") or {}
        macs = (bench.get("macs") or {}).get("total")
        rows.append([
            f"{role} ({'lecture' if role == 'seed' else 'ours'})", model.get("architecture", "-"),
            "x".join(str(d) for d in model.get("input_shape") or []) or "-",
            f"{model.get('epochs_run', '-')}/{model.get('epochs', '-')}",
            _seconds(model.get("train_seconds")), _pct(model.get("val_accuracy")),
            f"{macs / 1e6:.2f}" if macs else "-",
            model.get("error") or model.get("recipe", {}).get("note", ""),
        ])
    header = ["model", "architecture", "input", "epochs run", "train time",
              "val acc (at training)", "MMAC", "recipe"]
    return _table(header, rows)


def _format_table(entry: dict) -> list[str]:
    rows = []
    for role in ("seed", "edge"):
        model = entry["models"].get(role)
        if not model:
            continue
        found = rows_by_name(model)
        names = [n for n in ROW_ORDER if n in found] + \
            [n for n in found if n not in ROW_ORDER]
        for name in names:
            row = found[name]
            label = name + (" (lecture baseline)" if role == "seed" and name == BASELINE
                            else "")
            lat = row["latency_ms"]
            rows.append([
                role, label, _pct(row.get("accuracy")), _kb(row.get("size_bytes")),
                _ms(lat["mean"]), _ms(lat["p50"]), _ms(lat["p99"]),
                f"{row['throughput']['images_per_s']:,.0f}", str(row["threads"]),
                f"{row['gmacs']:.2f}" if row.get("gmacs") is not None else "-",
                f"{row['ceiling_fraction'] * 100:.1f} %"
                if row.get("ceiling_fraction") is not None else "-",
            ])
    batch = _first_bench(entry).get("settings", {}).get("batch", "?")
    header = ["model", "format", "val acc", "size KB", "mean ms", "p50 ms", "p99 ms",
              f"img/s (batch {batch})", "threads", "GMAC/s", "% of ceiling"]
    return _table(header, rows)


def _first_bench(entry: dict) -> dict:
    for model in entry["models"].values():
        if model.get("bench"):
            return model["bench"]
    return {}


def _ratio_lines(ratios: dict) -> list[str]:
    fmt = ratios.get("ours_format")
    if not fmt:
        return ["No ratios: the edge model has no benched bundle format."]
    lines = [f"Ratios (same run; ours = edge {fmt}, batch-1 p50):", ""]
    # (key, wording when ours is ahead, wording when it is behind)
    items = [
        ("latency_vs_lecture_predict", "faster than the lecture's seed `model.predict(x)`",
         "slower than the lecture's seed `model.predict(x)`"),
        ("latency_vs_seed_keras_call", "faster than the seed Keras `model(x)` call",
         "slower than the seed Keras `model(x)` call"),
        ("latency_vs_seed_onnx", "faster than the seed model as float32 ONNX",
         "slower than the seed model as float32 ONNX"),
        ("size_vs_seed_keras", "smaller than the seed `.keras` file",
         "larger than the seed `.keras` file"),
        ("size_vs_seed_onnx", "smaller than the seed float32 ONNX file",
         "larger than the seed float32 ONNX file"),
        ("macs_vs_seed", "fewer MACs than the seed model", "more MACs than the seed model"),
    ]
    for key, ahead, behind in items:
        ratio = ratios.get(key)
        if ratio is None:
            continue
        if ratio >= 1:
            lines.append(f"- {ratio:g}x {ahead}")
        elif ratio > 0:
            lines.append(f"- {1 / ratio:.1f}x {behind}")
    if ratios.get("train_time_vs_seed") is not None:
        lines.append(f"- {ratios['train_time_vs_seed']:g}x the seed model's training time")
    if ratios.get("accuracy_delta_pp") is not None:
        lines.append(f"- validation accuracy {ratios['accuracy_delta_pp']:+.2f} pp vs the "
                     "seed Keras model")
    return lines


def results_markdown(results: dict) -> str:
    machine = results.get("machine") or {}
    settings = results.get("settings") or {}
    lines = ["# edgecnn benchmark results", "",
             f"Made by `benchmarks/run_all.py` on {results.get('created', '?')} from "
             f"`{results.get('datasets', '?')}`"
             + (" (smoke run: tiny epochs, numbers are not results)" if results.get("smoke")
                else "") + ".", "",
             f"Machine: {machine.get('cpu', '?')} ({', '.join(machine.get('cpu_flags', []))}), "
             f"{machine.get('cores', '?')} cores; onnxruntime "
             f"{(machine.get('versions') or {}).get('onnxruntime')}, tensorflow "
             f"{(machine.get('versions') or {}).get('tensorflow')}. Engines run with "
             f"{settings.get('threads', '?')} thread(s); Keras rows with TensorFlow's default "
             "threading (all cores).", "",
             "Accuracy is on each task's validation split (the same samples for both models, "
             "held out by `edgecnn train` with the same seed); it is not a test score.", "",
             "## Summary", ""]
    lines += summary_table(results)
    lines += ["", "Speed-up: the lecture's way (seed model, Keras `model.predict(x)`, batch 1) "
                  "p50 / ours (edge model in its runtime format, batch 1) p50, measured in the "
                  "same run. A `.keras` file also holds the optimizer state (what "
                  "`model.save` writes); the ONNX sizes compare weights with weights.", ""]
    for task, entry in results["tasks"].items():
        lines += [f"## {TASK_TITLES.get(task, task)} (`{task}`)", "",
                  f"Data: `{entry.get('data', '?')}`; validation samples: "
                  f"{entry.get('val_samples', '-')}.", ""]
        if entry.get("error"):
            lines += [f"Failed: {entry['error']}", ""]
            continue
        lines += _model_table(entry) + [""] + _format_table(entry) + [""]
        lines += _ratio_lines(entry.get("ratios") or {}) + [""]
    ceilings = _any_ceilings(results)
    if ceilings:
        lines += ["## How efficiency is measured", "",
                  "GMAC/s = the model's MACs at batch 1 (Conv incl. depthwise, MatMul, Gemm, "
                  "counted from the ONNX graph) / p50 batch-1 latency. % of ceiling = that / "
                  "a GEMM ceiling measured in the same run, at the same thread count:", ""]
        for precision in ("float32", "int8"):
            c = ceilings.get(precision) or {}
            if c:
                lines.append(f"- {precision}: {c['gmacs']:.1f} GMAC/s (fastest run; p50 "
                             f"{c['gmacs_p50']:.1f}): {c['method']}")
        lines.append("")
    return "\n".join(lines)


def _any_ceilings(results: dict) -> dict:
    for entry in results["tasks"].values():
        bench = _first_bench(entry)
        if bench.get("ceilings") and "error" not in bench["ceilings"]:
            return bench["ceilings"]
    return {}
