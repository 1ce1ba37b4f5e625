"""``edgecnn serve`` and ``edgecnn service``: the line's sources as one unattended service
(registered on the main group by ``edgecnn.cli``)."""

from __future__ import annotations

import click

from edgecnn.cli import examples


@click.command("serve", help="Run every [[camera]] and [[vibration]] of a TOML config file "
                             "in one process (shared [run] log/sqlite, [mqtt] broker). "
                             "SIGTERM/Ctrl-C stop all sources cleanly; a summary per source. "
                             "Logs go to stderr (journal-friendly).",
               epilog=examples("edgecnn serve --check /etc/edgecnn/line.toml",
                               "edgecnn serve /etc/edgecnn/line.toml"))
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--check", "check_only", is_flag=True,
              help="Only validate: keys and types, bundles, models, class names.")
def serve_command(config, check_only):
    from edgecnn.serve import serve, setup_logging

    setup_logging()
    result = serve(config, check_only=check_only, echo=click.echo)
    if check_only:
        for line in result:
            click.echo(line)
        click.echo(f"{config}: OK ({len(result)} source{'' if len(result) == 1 else 's'})")


@click.group("service", help="Install `edgecnn serve CONFIG` as a systemd service.",
             epilog=examples("edgecnn service install /etc/edgecnn/line.toml --user edgecnn"))
def service_group() -> None:
    pass


@service_group.command("install", help="Check CONFIG and write a systemd unit running "
                                       "`edgecnn serve CONFIG` (Restart=on-failure, a "
                                       "dedicated user, logs in the journal); then run "
                                       "`systemctl enable --now edgecnn`.",
                       epilog=examples("edgecnn service install line.toml --dry-run",
                                       "edgecnn service install /etc/edgecnn/line.toml"))
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.option("--user", default="edgecnn", show_default=True,
              help="System user the service runs as (create it first: "
                   "useradd --system --groups video edgecnn).")
@click.option("--unit-dir", type=click.Path(file_okay=False), default=None,
              help="Where to write edgecnn.service (default: /etc/systemd/system).")
@click.option("--dry-run", is_flag=True, help="Print the unit instead of writing it.")
def service_install(config, user, unit_dir, dry_run):
    from edgecnn.deploy.service import install_unit, private_tmp_paths
    from edgecnn.serve import check
    from edgecnn.serviceconfig import load_config

    loaded = load_config(config)
    check(loaded)
    hidden = private_tmp_paths(loaded)
    if hidden:
        click.echo("warning: the service runs with a private /tmp (PrivateTmp=yes in the "
                   "unit) and will not see: " + "; ".join(hidden) + "; move them to a "
                   "lasting folder such as /etc/edgecnn or /var/lib/edgecnn", err=True)
    path, text = install_unit(config, user=user, unit_dir=unit_dir, dry_run=dry_run)
    if dry_run:
        click.echo(text, nl=False)
        return
    click.echo(f"wrote {path}")
    click.echo("next: systemctl daemon-reload && systemctl enable --now edgecnn")
