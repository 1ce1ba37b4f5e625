"""What is installed: the shipped bundles and the registered architectures."""

from __future__ import annotations

from edgecnn.deploy.bundle import Bundle, Trust, shipped_bundles


def describe_shipped() -> list[dict]:
    """One row per shipped bundle: name, path, task, formats with sizes, validation metrics."""
    rows = []
    for name, path in shipped_bundles().items():
        bundle = Bundle.open(path, trust=Trust())  # listing runs nothing: no signature asked
        manifest = bundle.manifest
        source = manifest.get("source_model") or {}
        validation = source.get("validation") or {}
        rows.append({
            "name": name,
            "path": str(path),
            "task": manifest.get("task"),
            "architecture": source.get("architecture"),
            "labels": list(bundle.labels),
            "input_shape": list(bundle.spec.input_shape),
            "formats": {fmt: entry.get("size") for fmt, entry in manifest["files"].items()},
            "validation_accuracy": validation.get("accuracy"),
            "validation_n": validation.get("n"),
            "data_fingerprint": source.get("data_fingerprint"),
        })
    return rows


def format_shipped(rows: list[dict]) -> str:
    if not rows:
        return "no shipped bundles installed"
    lines = []
    for row in rows:
        accuracy = (f"{row['validation_accuracy'] * 100:.2f} % validation accuracy "
                    f"(n={row['validation_n']})" if row["validation_accuracy"] is not None
                    else "no validation metrics")
        lines.append(f"{row['name']:<6} {row['task']:<8} {row['architecture'] or '?':<14} "
                     f"{accuracy}")
        lines.append(f"       {row['path']}")
        lines.append("       " + ", ".join(f"{fmt} {size / 1024:.0f} kB"
                                           for fmt, size in row["formats"].items()))
    return "\n".join(lines)


def format_architectures() -> str:
    from edgecnn.models import list_models

    entries = list_models()
    width = max(len(entry.name) for entry in entries)
    return "\n".join(f"{entry.name:<{width}} {'/'.join(entry.kinds):<12} {entry.description}"
                     for entry in entries)
