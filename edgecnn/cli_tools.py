"""``edgecnn bench | keys | sign | models | demo``: measuring, signing, listing and the demo
(registered on the main group by ``edgecnn.cli``)."""

from __future__ import annotations

import click

from edgecnn.cli import (
    _json_apart,
    _trust,
    _trust_option,
    _writable,
    _write_json,
    cli,
    examples,
)

# ----------------------------------------------------------------------------- tools
# (bench, models, demo)

@cli.command("bench", help="Benchmark every format of a bundle (path or shipped name) and "
                           "its Keras source model: size, accuracy (--data), batch-1 latency "
                           "mean/p50/p99, throughput, MACs and GMAC/s against a GEMM "
                           "ceiling measured in the same run. Formats whose runtime is not "
                           "installed are skipped and named.",
             epilog=examples("edgecnn bench cwru --data calibration_data/cwru",
                             "edgecnn bench bundles/neu --data datasets/neu/val --keras runs/neu "
                             "--json bench.json"))
@click.argument("bundle")
@click.option("--data", "data", type=click.Path(exists=True), default=None,
              help="Labelled data for accuracy (any layout the bundle's task reads).")
@click.option("--task", default=None, help="Data kind, if the bundle does not record it.")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Intra-op threads of every ONNX Runtime and LiteRT engine and of the "
                   "ceiling GEMMs (Keras rows run at TensorFlow's own setting, shown in "
                   "their 'thr' column).")
@click.option("--batch", type=int, default=32, show_default=True,
              help="Batch size of the throughput measurement.")
@click.option("--warmup", type=int, default=10, show_default=True,
              help="Untimed batch-1 calls before timing.")
@click.option("--iterations", type=int, default=200, show_default=True,
              help="Timed batch-1 calls (fewer if --max-seconds runs out first).")
@click.option("--max-seconds", type=float, default=5.0, show_default=True,
              help="Time budget of each batch-1 timing.")
@click.option("--formats", default=None, help="Comma-separated formats (default: all).")
@click.option("--keras", "keras_model_dir", type=click.Path(exists=True, file_okay=False),
              default=None, help="Keras model directory to bench too (default: the "
                                 "bundle's source model, if it is still there).")
@click.option("--no-keras", is_flag=True, help="Leave the Keras rows out (no TensorFlow).")
@_trust_option
@click.option("--select", "select", is_flag=True,
              help="Only time the formats that passed parity, at --select-batches, and "
                   "record the fastest per batch size for this machine (in "
                   "$XDG_CONFIG_HOME/edgecnn/hosts/): the runtime's default format then.")
@click.option("--select-batches", default="1,32", show_default=True, metavar="N,N",
              help="Batch sizes that --select times.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              callback=_writable,
              help="Also write all numbers, ceilings and machine info as JSON.")
def bench_command(bundle, json_path, no_keras, select, select_batches, trusted_keys,
                  **options):
    from edgecnn.deploy.bundle import Bundle
    from edgecnn.deploy.errors import InputError

    _json_apart(json_path, reads=[("bundle", bundle), ("data", options["data"]),
                                  ("model directory", options["keras_model_dir"])])
    if no_keras and options["keras_model_dir"]:
        raise InputError("--keras names a model to bench and --no-keras leaves it out: "
                         "give one of them")
    bundle = Bundle.open(bundle, _trust(trusted_keys))
    if select:
        from edgecnn.deploy.selection import check_seconds, format_selection, select_formats

        _refuse_with_select(("data", "task", "batch", "warmup", "iterations",
                             "keras_model_dir"))
        check_seconds(options["max_seconds"])
        result = select_formats(bundle, batches=_batch_sizes(select_batches),
                                threads=options["threads"], formats=options["formats"],
                                seconds=min(options["max_seconds"], 1.0))
        click.echo(format_selection(result))
        _write_json(result, json_path)
        return
    from edgecnn.bench import bench

    result = bench(bundle, keras=not no_keras, **options)
    click.echo(result.format())
    _write_json(result.to_dict(), json_path)


@cli.group(help="Ed25519 keys for signing bundles (needs edgecnn[sign]).",
           epilog=examples("edgecnn keys generate --out keys --name line1"))
def keys() -> None:
    pass


@keys.command("generate", help="Write a new key pair: NAME.key (private, mode 0600) and "
                               "NAME.pub (give it to --trusted-key). Never overwrites.",
              epilog=examples("edgecnn keys generate --out keys --name line1"))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for the two key files (created if missing).")
@click.option("--name", default="edgecnn", show_default=True, help="Key file name stem.")
def keys_generate(out, name):
    from edgecnn.deploy.signing import generate_keys

    private, public, key_id = generate_keys(out, name)
    click.echo(f"key {key_id}: private {private} (keep it secret), public {public}")


@cli.command("sign", help="Sign a bundle's manifest (which holds every file's sha256) with "
                          "a private key: writes edgecnn.json.sig into the bundle. Commands "
                          "given --trusted-key PUB accept it, and refuse it after any change.",
             epilog=examples("edgecnn sign bundles/steel --key keys/line1.key"))
@click.argument("bundle")
@click.option("--key", required=True, type=click.Path(dir_okay=False),
              help="Private key from 'edgecnn keys generate'.")
def sign_command(bundle, key):
    from edgecnn.deploy.signing import sign_bundle

    path, key_id = sign_bundle(bundle, key)
    click.echo(f"signed with key {key_id}: {path}")


def _refuse_with_select(names) -> None:
    """--select times only the formats that passed parity, on random tensors, at
    --select-batches: options of the full bench would be silently ignored."""
    from click.core import ParameterSource

    from edgecnn.deploy.errors import InputError

    ctx = click.get_current_context()
    given = [name for name in names
             if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]
    if given:
        flags = ", ".join("--" + ("keras" if n == "keras_model_dir" else n) for n in given)
        raise InputError(f"--select times the formats that passed parity at --select-batches "
                         f"(with --threads, --formats, --max-seconds); {flags} belong to the "
                         "full bench: run it without --select")


def _batch_sizes(text: str) -> list[int]:
    from edgecnn.deploy.errors import InputError

    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--select-batches takes whole numbers like 1,32; "
                         f"found {text!r}") from None


@cli.command("models", help="List the shipped bundles (name, path, task, formats, "
                            "validation accuracy) and, with --archs, the architectures.",
             epilog=examples("edgecnn models", "edgecnn models --archs"))
@click.option("--archs", is_flag=True, help="List the model architectures of the registry.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              callback=_writable,
              help="Also write the list of shipped bundles (with --archs: of the "
                   "architectures) as JSON.")
def models_command(archs, json_path):
    from edgecnn.catalog import describe_shipped, format_architectures, format_shipped

    if archs:
        from edgecnn.models import list_models

        click.echo(format_architectures())
        _write_json({"architectures": [{"name": e.name, "kinds": list(e.kinds),
                                        "description": e.description}
                                       for e in list_models()]}, json_path)
        return
    shipped = describe_shipped()
    click.echo(format_shipped(shipped))
    _write_json({"bundles": shipped}, json_path)


@cli.command("demo", help="Run the main job on embedded defaults: train and export a quick "
                          "model, parity of the shipped NEU bundle, the camera runtime on a "
                          "sample video and the vibration runtime on a recording.",
             epilog=examples("edgecnn demo", "edgecnn demo --out /tmp/edgecnn-demo"))
@click.option("--out", default="demo-output", show_default=True,
              type=click.Path(file_okay=False), help="Folder for everything the demo writes.")
def demo_command(out):
    from edgecnn.demo import run_demo

    run_demo(out, echo=click.echo)
