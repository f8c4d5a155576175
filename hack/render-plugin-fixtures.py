#!/usr/bin/env python3
"""Renders what the CNPG-I plugin takes from the Helm chart, so the plugin's
container cannot drift from the MutatingAdmissionPolicy's (one template
helper, "cnpg-autoresize.container"):

  src/plugin/sidecar-default.yaml   the sidecar template ConfigMap's
                                    sidecar.yaml with default values: the
                                    plugin's built-in template (used without
                                    --sidecar-template)
  tests/cnpgi/chart-peer.yaml       the MutatingAdmissionPolicy, its binding
  tests/cnpgi/chart-password.yaml   and the sidecar template, default values
                                    and with sidecar.postgres.auth=password,
                                    for the tests that run the policy in the
                                    API sandbox beside the plugin

  python3 hack/render-plugin-fixtures.py           write them
  python3 hack/render-plugin-fixtures.py --check   exit 1 if any is stale

Needs what hack/check-chart.sh --install installs (helm-python-sdk, PyYAML).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "cnpg-autoresize"
NAMESPACE = "databases"
RELEASE = "cnpg-autoresize"

def _block_strings(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    """Multi-line strings (CEL, the template) as readable literal blocks."""
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


yaml.add_representer(str, _block_strings, Dumper=yaml.SafeDumper)

HEADER = (
    "# Rendered by `python3 hack/render-plugin-fixtures.py` from charts/cnpg-autoresize\n"
    "# ({what}). Do not edit by hand: change the chart and re-render;\n"
    "# `--check` fails when this file is stale.\n"
)


def render(extra: list[str]) -> dict[str, list[dict]]:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, str(ROOT / "hack" / "chart-tool.py"), "render", "--chart", str(CHART),
               "--namespace", NAMESPACE, "--name", RELEASE, "--out", out,
               "--set-json", "cnpgi.enabled=true"] + extra
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        docs: dict[str, list[dict]] = {}
        for p in sorted(Path(out).glob("*.yaml")):
            for d in yaml.safe_load_all(p.read_text(encoding="utf-8")):
                if d:
                    docs.setdefault(d["kind"], []).append(d)
        return docs


def sidecar_text(docs: dict[str, list[dict]]) -> str:
    found = [d for d in docs.get("ConfigMap", []) if d["metadata"]["name"].endswith("-cnpgi-sidecar")]
    if len(found) != 1:
        sys.exit("FAIL: expected one sidecar template ConfigMap")
    return found[0]["data"]["sidecar.yaml"]


def fixture(docs: dict[str, list[dict]]) -> str:
    picked = docs["MutatingAdmissionPolicy"] + docs["MutatingAdmissionPolicyBinding"]
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False, width=1000) for d in picked)
    # The template as a document of its own (a multi-document string).
    template = {"sidecarTemplate": sidecar_text(docs)}
    return body + "---\n" + yaml.safe_dump(template, sort_keys=False, width=1000)


def wanted() -> dict[Path, str]:
    peer = render([])
    password = render(["--set-json", 'sidecar.postgres.auth="password"'])
    return {
        ROOT / "src/plugin/sidecar-default.yaml":
            HEADER.format(what="the sidecar template with default values") + sidecar_text(peer),
        ROOT / "tests/cnpgi/chart-peer.yaml":
            HEADER.format(what="default values, namespace databases") + fixture(peer),
        ROOT / "tests/cnpgi/chart-password.yaml":
            HEADER.format(what="sidecar.postgres.auth=password, namespace databases") + fixture(password),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    a = p.parse_args()
    stale = []
    for path, text in wanted().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            print(f"  up to date: {path.relative_to(ROOT)}")
            continue
        if a.check:
            stale.append(str(path.relative_to(ROOT)))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"  wrote {path.relative_to(ROOT)}")
    if stale:
        print("FAIL: stale, run python3 hack/render-plugin-fixtures.py: " + ", ".join(stale), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
