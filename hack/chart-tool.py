#!/usr/bin/env python3
"""Offline Helm helper for hack/check-chart.sh.

There is no `helm` binary on the build machines; helm-python-sdk binds the
real Helm v4 Go SDK (lint, schema validation, rendering) without one, and
kubernetes-validate carries the upstream OpenAPI schemas. Every subcommand
prints what it checked and exits non-zero on failure, so the shell script
only orchestrates.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

import yaml

# Kinds from CRDs: no upstream schema. They get structural checks here and
# the PrometheusRule additionally goes through `promtool check rules`.
CRD_KINDS = {"PodMonitor", "PrometheusRule", "Policy"}


def die(msg: str) -> None:
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def load_values(path: str | None) -> dict:
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def docs_in(directory: str):
    """(file, document) for every YAML document rendered into directory."""
    for p in sorted(Path(directory).glob("*.yaml")):
        for doc in yaml.safe_load_all(p.read_text(encoding="utf-8")):
            if doc:
                yield p.name, doc


# ---------------------------------------------------------------- lint/render


def cmd_lint(a) -> None:
    import helm_python as helm

    report = helm.lint(a.chart, load_values(a.values), strict=True, namespace=a.namespace)
    bad = False
    for m in report.get("messages", []):
        sev = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}.get(m["severity"], "?")
        print(f"  [{sev}] {m['path']}: {m['error']}")
        # strict lint: warnings count as failures, informational notes do not.
        bad = bad or m["severity"] >= 2
    for e in report.get("errors", []):
        print(f"  [ERROR] {e}")
        bad = True
    if bad:
        die(f"helm lint ({a.values or 'default values'})")
    print(f"  lint ok ({a.values or 'default values'})")


def cmd_schema_reject(a) -> None:
    """Values that values.schema.json must reject (it is meant to be strict)."""
    import helm_python as helm

    cases = {
        "unknown top-level key": {"replicaCount": 2},
        "unknown nested key": {"podMonitor": {"intervall": "30s"}},
        "unknown alert": {"prometheusRule": {"alerts": {"diskFull": {}}}},
        "reason not a reason code": {
            "prometheusRule": {"alerts": {"autoResizeBlocked": {"reasons": ["disk_full"]}}}
        },
        "threshold above 100": {"prometheusRule": {"alerts": {"diskCritical": {"threshold": 101}}}},
        "severity typo": {"prometheusRule": {"alerts": {"atLimit": {"severity": "page"}}}},
        "bad Prometheus duration": {"podMonitor": {"interval": "30 seconds"}},
        "port clashes with CNPG metrics": {"sidecar": {"port": 9187}},
        "log format": {"sidecar": {"logFormat": "yaml"}},
        "cluster without name": {"clusters": [{"walStorage": True}]},
        "cluster name not DNS": {"clusters": [{"name": "PG_Main"}]},
        "string instead of bool": {"preflight": {"storageClassCheck": "yes"}},
        "negative retention": {
            "prometheusRule": {"alerts": {"inactiveReplicationSlots": {"minRetentionBytes": -1}}}
        },
    }
    failed = []
    with helm.Chart.load(a.chart) as chart:
        for name, values in cases.items():
            try:
                chart.render(values=values, name="schema-test", namespace="default")
            except helm.HelmError:
                print(f"  rejected as expected: {name}")
                continue
            failed.append(name)
    if failed:
        die("values.schema.json accepted invalid values: " + ", ".join(failed))


def cmd_render(a) -> None:
    import helm_python as helm

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*"):  # idempotent: a re-run starts from an empty directory
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    values = load_values(a.values)
    for s in a.set_json or []:
        k, _, v = s.partition("=")
        node = values
        keys = k.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = json.loads(v)
    with helm.Chart.load(a.chart) as chart:
        chart.validate_schema(values)
        rendered = chart.render(values=values, name=a.name, namespace=a.namespace, is_install=True)
    count = 0
    for template, text in sorted(rendered.items()):
        base = template.split("/templates/", 1)[-1].replace("/", "_")
        if base == "NOTES.txt":
            (out / "NOTES.txt").write_text(text, encoding="utf-8")
            continue
        if not text.strip() or all(d is None for d in yaml.safe_load_all(text)):
            continue  # template disabled by values
        (out / base).write_text(text, encoding="utf-8")
        count += 1
    print(f"  rendered {count} manifest file(s) into {out}")


# ------------------------------------------------------------------ validate


def _validate_k8s(doc: dict, versions: list[str], where: str) -> list[str]:
    import kubernetes_validate

    errors = []
    for v in versions:
        try:
            kubernetes_validate.validate(doc, v, strict=True)
        except kubernetes_validate.ValidationError as e:  # type: ignore[attr-defined]
            errors.append(f"{where} (k8s {v}): {str(e).splitlines()[0]}")
        except Exception as e:  # SchemaNotFoundError and friends
            errors.append(f"{where} (k8s {v}): {type(e).__name__}: {e}")
    return errors


def _check_podmonitor(doc: dict, where: str) -> list[str]:
    errs = []
    spec = doc.get("spec") or {}
    eps = spec.get("podMetricsEndpoints") or []
    if not eps:
        errs.append(f"{where}: no podMetricsEndpoints")
    for ep in eps:
        if ep.get("port") != "autoresize":
            errs.append(f"{where}: endpoint port must be 'autoresize', got {ep.get('port')!r}")
        targets = {r.get("targetLabel") for r in ep.get("relabelings") or []}
        for want in ("pod", "namespace", "cluster"):
            if want not in targets:
                errs.append(f"{where}: no relabeling to target label {want!r}")
    exprs = (spec.get("selector") or {}).get("matchExpressions") or []
    if not any(e.get("key") == "cnpg.io/cluster" for e in exprs):
        errs.append(f"{where}: selector does not use the cnpg.io/cluster label")
    for e in exprs:
        if e.get("operator") in ("In", "NotIn") and not e.get("values"):
            errs.append(f"{where}: {e.get('operator')} selector with no values")
    return errs


def _check_prometheusrule(doc: dict, where: str) -> list[str]:
    errs = []
    groups = (doc.get("spec") or {}).get("groups") or []
    if not groups:
        errs.append(f"{where}: no rule groups")
    for g in groups:
        for r in g.get("rules") or []:
            ann = r.get("annotations") or {}
            if "alert" in r and not (ann.get("summary") and ann.get("description")):
                errs.append(f"{where}: alert {r['alert']} lacks summary/description")
            if "alert" in r and "severity" not in (r.get("labels") or {}):
                errs.append(f"{where}: alert {r['alert']} has no severity label")
    return errs


def cmd_validate(a) -> None:
    versions = a.kube_versions.split(",")
    errors: list[str] = []
    kinds: dict[str, int] = {}
    for fname, doc in docs_in(a.dir):
        kind = doc.get("kind", "?")
        name = (doc.get("metadata") or {}).get("name", "?")
        where = f"{fname}: {kind}/{name}"
        kinds[kind] = kinds.get(kind, 0) + 1
        if not (doc.get("metadata") or {}).get("labels", {}).get("app.kubernetes.io/name"):
            errors.append(f"{where}: missing app.kubernetes.io/name label")
        if kind == "PodMonitor":
            errors += _check_podmonitor(doc, where)
        elif kind == "PrometheusRule":
            errors += _check_prometheusrule(doc, where)
        elif kind == "Policy":
            # Kyverno: validate each injected container as part of a real Pod.
            for rule in doc["spec"]["rules"]:
                pod_spec = rule["mutate"]["patchStrategicMerge"]["spec"]
                pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"}, "spec": pod_spec}
                errors += _validate_k8s(pod, versions, f"{where} rule {rule['name']} (as a Pod)")
        else:
            errors += _validate_k8s(doc, versions, where)
        if kind == "ConfigMap":
            for key, text in (doc.get("data") or {}).items():
                if key.endswith(".json"):
                    try:
                        dash = json.loads(text)
                    except json.JSONDecodeError as e:
                        errors.append(f"{where}: {key} is not JSON: {e}")
                        continue
                    if not dash.get("panels") or not dash.get("uid"):
                        errors.append(f"{where}: {key} has no panels/uid")
    notes = Path(a.dir) / "NOTES.txt"
    if not notes.exists() or "cnpg.io/cluster" not in notes.read_text(encoding="utf-8"):
        errors.append("NOTES.txt missing or does not explain the injection")
    summary = ", ".join(f"{k}={v}" for k, v in sorted(kinds.items()))
    if errors:
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        die(f"manifest validation in {a.dir}")
    print(f"  valid against Kubernetes {', '.join(versions)} (strict): {summary}")


# -------------------------------------------------------------------- rules


def cmd_extract_rules(a) -> None:
    found = [d for _, d in docs_in(a.dir) if d.get("kind") == "PrometheusRule"]
    if len(found) != 1:
        die(f"expected exactly one PrometheusRule in {a.dir}, found {len(found)}")
    with open(a.out, "w", encoding="utf-8") as f:
        yaml.safe_dump(found[0]["spec"], f, sort_keys=False, width=1000)
    alerts = [r["alert"] for g in found[0]["spec"]["groups"] for r in g["rules"] if "alert" in r]
    print(f"  extracted {len(alerts)} alerts to {a.out}: {', '.join(alerts)}")
    if a.expect_alerts:
        want = set(a.expect_alerts.split(","))
        if set(alerts) != want:
            die(f"alerts differ from the required set: missing {sorted(want - set(alerts))}, "
                f"extra {sorted(set(alerts) - want)}")


def cmd_check_tests_cover(a) -> None:
    """Every alert has at least one firing and one not-firing expectation."""
    test = yaml.safe_load(Path(a.tests).read_text(encoding="utf-8"))
    firing: set[str] = set()
    silent: set[str] = set()
    for t in test.get("tests", []):
        for case in t.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    want = set(a.alerts.split(","))
    problems = [f"{n}: no firing case" for n in sorted(want - firing)]
    problems += [f"{n}: no not-firing case" for n in sorted(want - silent)]
    if problems:
        die("rule unit tests incomplete: " + "; ".join(problems))
    print(f"  unit tests cover all {len(want)} alerts, firing and not firing")


# --------------------------------------------------------------------- RBAC


def _triples(rules: list[dict], where: str) -> set[tuple[str, str, str]]:
    out = set()
    for r in rules:
        for bad in ("resourceNames", "nonResourceURLs"):
            if r.get(bad):
                die(f"{where}: unexpected {bad} in rule {r}")
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for v in r.get("verbs", []):
                    if "*" in (g, res, v):
                        die(f"{where}: wildcard in rule {r}")
                    out.add((g, res, v))
    return out


def cmd_check_role(a) -> None:
    roles = [d for _, d in docs_in(a.dir) if d.get("kind") == "Role"]
    if len(roles) != 1:
        die(f"expected exactly one Role, found {len(roles)}")
    got = _triples(roles[0]["rules"], "rendered Role")
    want = _triples(json.loads(Path(a.expected).read_text(encoding="utf-8"))["rules"], a.expected)
    if got != want:
        for t in sorted(got - want):
            print(f"  extra permission:   {t}", file=sys.stderr)
        for t in sorted(want - got):
            print(f"  missing permission: {t}", file=sys.stderr)
        die("rendered Role differs from " + a.expected)
    print(f"  Role grants exactly the {len(want)} expected (group, resource, verb) permissions")
    # Every binding must point at something the chart rendered.
    names = {(d["kind"], d["metadata"]["name"]) for _, d in docs_in(a.dir)}
    for _, d in docs_in(a.dir):
        if d.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
            ref = (d["roleRef"]["kind"], d["roleRef"]["name"])
            if ref not in names:
                die(f"{d['kind']}/{d['metadata']['name']} references missing {ref}")
            if not d.get("subjects"):
                die(f"{d['kind']}/{d['metadata']['name']} has no subjects")


def cmd_cluster_roles(a) -> None:
    crs = [d for _, d in docs_in(a.dir) if d.get("kind") in ("ClusterRole", "ClusterRoleBinding")]
    if a.expect == "none":
        if crs:
            die("cluster-scoped RBAC rendered: " + ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in crs))
        print("  no ClusterRole/ClusterRoleBinding rendered")
        return
    cr = [d for d in crs if d["kind"] == "ClusterRole"]
    if len(cr) != 1 or _triples(cr[0]["rules"], "ClusterRole") != {("storage.k8s.io", "storageclasses", "get")}:
        die("the preflight ClusterRole must grant exactly get on storage.k8s.io/storageclasses")
    print("  preflight ClusterRole grants only get storageclasses")


def cmd_write_role(a) -> None:
    wanted = {"Role"} | ({"ClusterRole"} if a.with_cluster_role else set())
    docs = [d for _, d in docs_in(a.dir) if d.get("kind") in wanted]
    if not any(d["kind"] == "Role" for d in docs):
        die("no Role rendered")
    header = (
        "# Rendered by `bash hack/check-chart.sh --render-role` from charts/cnpg-autoresize.\n"
        "# The manager's RBAC; the Kubernetes API sandbox enforces it in end-to-end tests.\n"
        "# Do not edit by hand: change the chart and re-render.\n"
    )
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(header + "---\n" + body, encoding="utf-8")
    print(f"  wrote {', '.join(d['kind'] for d in docs)} to {a.out}")


# ------------------------------------------------------------------ metrics


def cmd_check_metrics(a) -> None:
    known = {
        line.split("#", 1)[0].strip()
        for line in Path(a.metrics).read_text(encoding="utf-8").splitlines()
        if line.split("#", 1)[0].strip()
    }
    histograms = {m for m in known if m.endswith("_seconds") and "duration" in m}
    allowed = set(known)
    for h in histograms:
        allowed |= {h + "_bucket", h + "_sum", h + "_count"}
    used: dict[str, set[str]] = {}
    pattern = re.compile(r"\bcnpg_[a-z0-9_]+")
    for fname, doc in docs_in(a.dir):
        texts = []
        if doc.get("kind") == "PrometheusRule":
            for g in doc["spec"]["groups"]:
                for r in g["rules"]:
                    texts.append(r["expr"])
                    texts += list((r.get("annotations") or {}).values())
        elif doc.get("kind") == "ConfigMap":
            for text in (doc.get("data") or {}).values():
                texts.append(text)
        for t in texts:
            for m in pattern.findall(t):
                used.setdefault(m, set()).add(fname)
    unknown = {m: f for m, f in used.items() if m not in allowed}
    if unknown:
        die("unknown metric names (not in SPEC 5.3): "
            + ", ".join(f"{m} ({', '.join(sorted(f))})" for m, f in sorted(unknown.items())))
    base = {m for m in used if m in known} | {m.rsplit("_", 1)[0] for m in used if m not in known}
    unused = sorted(known - base)
    print(f"  {len(used)} metric names used by rules/dashboard, all from SPEC 5.3"
          + (f" (not shown anywhere: {', '.join(unused)})" if unused else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("lint"); s.add_argument("--chart", required=True)
    s.add_argument("--values"); s.add_argument("--namespace", default="default")
    s.set_defaults(fn=cmd_lint)

    s = sub.add_parser("schema-reject"); s.add_argument("--chart", required=True)
    s.set_defaults(fn=cmd_schema_reject)

    s = sub.add_parser("render"); s.add_argument("--chart", required=True)
    s.add_argument("--values"); s.add_argument("--namespace", default="default")
    s.add_argument("--name", default="cnpg-autoresize"); s.add_argument("--out", required=True)
    s.add_argument("--set-json", action="append", help="dotted.key=<json>")
    s.set_defaults(fn=cmd_render)

    s = sub.add_parser("validate"); s.add_argument("dir")
    s.add_argument("--kube-versions", default="1.30.0,1.33.0")
    s.set_defaults(fn=cmd_validate)

    s = sub.add_parser("extract-rules"); s.add_argument("dir"); s.add_argument("out")
    s.add_argument("--expect-alerts")
    s.set_defaults(fn=cmd_extract_rules)

    s = sub.add_parser("check-tests-cover"); s.add_argument("tests"); s.add_argument("--alerts", required=True)
    s.set_defaults(fn=cmd_check_tests_cover)

    s = sub.add_parser("check-role"); s.add_argument("dir"); s.add_argument("expected")
    s.set_defaults(fn=cmd_check_role)

    s = sub.add_parser("cluster-roles"); s.add_argument("dir")
    s.add_argument("--expect", choices=["none", "preflight"], required=True)
    s.set_defaults(fn=cmd_cluster_roles)

    s = sub.add_parser("write-role"); s.add_argument("dir"); s.add_argument("out")
    s.add_argument("--with-cluster-role", action="store_true")
    s.set_defaults(fn=cmd_write_role)

    s = sub.add_parser("check-metrics"); s.add_argument("dir"); s.add_argument("metrics")
    s.set_defaults(fn=cmd_check_metrics)

    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    # helm_python ships a module named `logging`; never run with its directory as cwd.
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
