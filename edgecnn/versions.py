"""Installed versions of the packages a result depends on (for manifests and benchmarks)."""

from __future__ import annotations

import importlib.metadata


def package_versions(names) -> dict[str, str | None]:
    """{package: version or None when it is not installed}."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions
