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
CRD_KINDS = {"PodMonitor", "PrometheusRule", "Policy", "Issuer", "Certificate"}
# Kinds that exist only from this Kubernetes version on (validated against it).
MIN_VERSION = {"MutatingAdmissionPolicy": "1.36.0", "MutatingAdmissionPolicyBinding": "1.36.0"}
# The project's CRD, generated from the Rust types (the AutoResizePolicy of
# docs/reference/configuration.md#the-autoresizepolicy).
CRD_FILE = "crds/autoresize.cnpg.io_autoresizepolicies.yaml"
CRD_GROUP, CRD_KIND, CRD_PLURAL, CRD_VERSION = "autoresize.cnpg.io", "AutoResizePolicy", "autoresizepolicies", "v1alpha1"
# The injected container's fields that the end-to-end tests' kubelet stand-in
# reads from tests/packaging/sidecar-container.yaml (probes, ports, the
# resources its memory limit comes from), and probes it must not have.
SIDECAR_FIELDS = ("name", "restartPolicy", "ports", "livenessProbe", "resources")
SIDECAR_FORBIDDEN = ("readinessProbe", "startupProbe")
# A Kyverno variable standing for a whole value (substituted as JSON).
KYVERNO_VARIABLE = re.compile(r"\{\{.*\}\}", re.S)
# Identifiers with the metric prefix that are not metrics: CloudNativePG's
# monitoring role, named in an alert's description.
NOT_METRICS = {"cnpg_metrics_exporter"}
# The cluster name the committed fixtures are rendered for; tests replace it.
PLACEHOLDER = "cluster-placeholder"


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
    """Values that values.schema.json (or the templates' own checks) must
    reject: the chart is meant to be strict."""
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
        "string instead of bool": {"podMonitor": {"enabled": "yes"}},
        "negative retention": {
            "prometheusRule": {"alerts": {"inactiveReplicationSlots": {"minRetentionBytes": -1}}}
        },
        "injection mode typo": {"injection": {"mode": "webhook"}},
        "the old injection.kyverno.enabled switch": {"injection": {"kyverno": {"enabled": True}}},
        "filling-fast threshold below a minute": {
            "prometheusRule": {"alerts": {"volumeFillingFast": {"thresholdSeconds": 30}}}
        },
        "kyverno injection without clusters": {"injection": {"mode": "kyverno"}},
        # Timings the manager would refuse (and stay inert): refused at render.
        "a lease under 3s": {"sidecar": {"leaseDuration": "2s", "renewInterval": "500ms"}},
        "a renew interval over a third of the lease": {"sidecar": {"leaseDuration": "10s"}},
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


def _check_cert_manager(doc: dict, where: str, issuers: set[str]) -> list[str]:
    """cert-manager's Issuer and Certificate (no schema here): what the
    plugin's mutual TLS needs of them."""
    errs = []
    spec = doc.get("spec") or {}
    if doc.get("apiVersion") != "cert-manager.io/v1":
        errs.append(f"{where}: apiVersion must be cert-manager.io/v1")
    if doc["kind"] == "Issuer":
        if set(spec) != {"selfSigned"}:
            errs.append(f"{where}: expected a selfSigned Issuer, got {sorted(spec)}")
        return errs
    for key in ("secretName", "commonName", "duration", "renewBefore", "issuerRef", "usages"):
        if not spec.get(key):
            errs.append(f"{where}: no spec.{key}")
    if spec.get("isCA") is not False:
        errs.append(f"{where}: a leaf certificate must say isCA: false")
    ref = spec.get("issuerRef") or {}
    if ref.get("kind") != "Issuer" or ref.get("name") not in issuers:
        errs.append(f"{where}: issuerRef {ref} names no Issuer of this render")
    if not set(spec.get("usages") or []) <= {"server auth", "client auth", "digital signature",
                                              "key encipherment"}:
        errs.append(f"{where}: unexpected usages {spec.get('usages')}")
    if "server auth" in (spec.get("usages") or []) and not spec.get("dnsNames"):
        errs.append(f"{where}: a server certificate needs dnsNames (CloudNativePG checks the Service name)")
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


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def cmd_validate(a) -> None:
    versions = a.kube_versions.split(",")
    errors: list[str] = []
    kinds: dict[str, int] = {}
    issuers = {(d.get("metadata") or {}).get("name") for _, d in docs_in(a.dir) if d.get("kind") == "Issuer"}
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
        elif kind in ("Issuer", "Certificate"):
            errors += _check_cert_manager(doc, where, issuers)
        elif kind == "Policy":
            # Kyverno: validate each injected container as part of a real Pod.
            # A whole-string variable ("{{ ... }}") becomes a list only when
            # Kyverno evaluates it against a pod: validated here as an empty
            # list, and with real pods by hack/check-injection.py.
            for rule in doc["spec"]["rules"]:
                pod_spec = json.loads(json.dumps(rule["mutate"]["patchStrategicMerge"]["spec"]))
                for c in pod_spec.get("initContainers", []):
                    for key, value in list(c.items()):
                        if isinstance(value, str) and KYVERNO_VARIABLE.fullmatch(value):
                            c[key] = []
                pod_spec.setdefault("containers", [{"name": "postgres", "image": "postgres"}])
                pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"}, "spec": pod_spec}
                errors += _validate_k8s(pod, versions, f"{where} rule {rule['name']} (as a Pod)")
        elif kind in MIN_VERSION:
            newer = [v for v in versions if _version_key(v) >= _version_key(MIN_VERSION[kind])]
            errors += _validate_k8s(doc, newer or [MIN_VERSION[kind]], where)
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


def _triples(rules: list[dict], where: str) -> set[tuple[str, str, str, str]]:
    """(group, resource, verb, resource name or "*") for every grant of rules."""
    out = set()
    for r in rules:
        if r.get("nonResourceURLs"):
            die(f"{where}: unexpected nonResourceURLs in rule {r}")
        names = r.get("resourceNames") or ["*"]
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for v in r.get("verbs", []):
                    if "*" in (g, res, v):
                        die(f"{where}: wildcard in rule {r}")
                    for n in names:
                        out.add((g, res, v, n))
    return out


def _roles(directory: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in docs_in(directory) if d.get("kind") == "Role"}


def _compare(got: set, want: set, what: str) -> bool:
    for t in sorted(got - want):
        print(f"  {what}: extra permission   {t}", file=sys.stderr)
    for t in sorted(want - got):
        print(f"  {what}: missing permission {t}", file=sys.stderr)
    return got == want


def cmd_check_role(a) -> None:
    """The rendered Roles grant exactly the expected rules: the shared Role
    and one Role per listed cluster (named <fullname>-<cluster>), or, with no
    cluster listed, the shared Role with the extra by-any-name rules."""
    expected = json.loads(Path(a.expected).read_text(encoding="utf-8"))
    placeholder = expected["placeholder"]
    listed = load_values(a.values).get("clusters") or []
    clusters = [c["name"] for c in listed]
    accounts = {c["name"]: c.get("serviceAccountName") or c["name"] for c in listed}
    roles = _roles(a.dir)
    want_names = {a.fullname} | {f"{a.fullname}-{c}" for c in clusters}
    if set(roles) != want_names:
        die(f"rendered Roles {sorted(roles)}, expected {sorted(want_names)}")
    ok = True
    shared_rules = expected["shared"] + ([] if clusters else expected["sharedWithoutClusters"])
    ok &= _compare(_triples(roles[a.fullname]["rules"], f"Role {a.fullname}"),
                   _triples(shared_rules, a.expected), f"Role {a.fullname}")
    for c in clusters:
        name = f"{a.fullname}-{c}"
        rules = json.loads(json.dumps(expected["perCluster"]).replace(placeholder, c))
        ok &= _compare(_triples(roles[name]["rules"], f"Role {name}"), _triples(rules, a.expected), f"Role {name}")
    if not ok:
        die("rendered Roles differ from " + a.expected)
    # Each Role is bound, and a cluster's own Role only to that cluster's ServiceAccount.
    docs = list(docs_in(a.dir))
    names = {(d["kind"], d["metadata"]["name"]) for _, d in docs}
    bound = {}
    for _, d in docs:
        if d.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
            ref = (d["roleRef"]["kind"], d["roleRef"]["name"])
            if ref not in names:
                die(f"{d['kind']}/{d['metadata']['name']} references missing {ref}")
            if not d.get("subjects"):
                die(f"{d['kind']}/{d['metadata']['name']} has no subjects")
            bound.setdefault(ref[1], set()).update(s["name"] for s in d["subjects"])
    for c in clusters:
        sa = accounts[c]
        if bound.get(f"{a.fullname}-{c}") != {sa}:
            die(f"Role {a.fullname}-{c} is bound to {sorted(bound.get(f'{a.fullname}-{c}', []))}, "
                f"expected only ServiceAccount {sa}")
        if sa not in bound.get(a.fullname, set()):
            die(f"the shared Role {a.fullname} is not bound to ServiceAccount {sa}")
    print(f"  Roles grant exactly {a.expected} ({len(clusters)} cluster(s) listed: "
          f"{', '.join(clusters) or 'none, so the shared Role grants by any name'}); each bound as expected")


def cmd_cluster_roles(a) -> None:
    crs = [d for _, d in docs_in(a.dir) if d.get("kind") in ("ClusterRole", "ClusterRoleBinding")]
    if a.expect == "none":
        if crs:
            die("cluster-scoped RBAC rendered: " + ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in crs))
        print("  no ClusterRole/ClusterRoleBinding rendered")


def _write_fixture(out: str, header: str, docs: list[dict]) -> None:
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(header + "---\n" + body, encoding="utf-8")
    print(f"  wrote {', '.join(d['kind'] + '/' + d['metadata']['name'] for d in docs)} to {out}")


def cmd_write_role(a) -> None:
    docs = [d for _, d in docs_in(a.dir) if d.get("kind") == "Role"]
    if not docs:
        die("no Role rendered")
    header = (
        "# Rendered by `bash hack/check-chart.sh --render-role` from charts/cnpg-autoresize\n"
        f"# for namespace default and one listed cluster named {PLACEHOLDER}: the\n"
        "# shared Role and that cluster's own Role (resourceNames). The Kubernetes API\n"
        f"# sandbox enforces them in end-to-end tests, with {PLACEHOLDER} replaced by\n"
        "# the test's cluster name. Do not edit by hand: change the chart and re-render.\n"
    )
    _write_fixture(a.out, header, docs)


def cmd_write_admission(a) -> None:
    kinds = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
             "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding")
    docs = sorted((d for _, d in docs_in(a.dir) if d.get("kind") in kinds), key=lambda d: kinds.index(d["kind"]))
    missing = set(kinds) - {d["kind"] for d in docs}
    if missing:
        die(f"not rendered: {', '.join(sorted(missing))}")
    header = (
        "# Rendered by `bash hack/check-chart.sh --render-admission` from charts/cnpg-autoresize\n"
        f"# for namespace default and one listed cluster named {PLACEHOLDER}: the\n"
        "# ValidatingAdmissionPolicy that limits what a cluster's ServiceAccount may\n"
        "# write, the MutatingAdmissionPolicy that injects the sidecar, and their\n"
        "# bindings. The Kubernetes API sandbox runs them in end-to-end tests, with\n"
        f"# {PLACEHOLDER} replaced by the test's cluster name. Do not edit by hand:\n"
        "# change the chart and re-render.\n"
    )
    _write_fixture(a.out, header, docs)


# ---------------------------------------------------------------------- CRD


def _structural_problems(schema: dict, path: str) -> list[str]:
    """The parts of a structural schema an API server checks that are easy to
    get wrong in a generator: every node typed (or an explicit escape hatch),
    no $ref, no properties together with additionalProperties."""
    out = []
    if not isinstance(schema, dict):
        return [f"{path}: not an object"]
    if "$ref" in schema:
        out.append(f"{path}: $ref is not allowed in a CRD schema")
    escape = schema.get("x-kubernetes-int-or-string") or schema.get("x-kubernetes-preserve-unknown-fields")
    if "type" not in schema and not escape and not any(k in schema for k in ("anyOf", "oneOf", "allOf", "not")):
        out.append(f"{path}: no type")
    if "properties" in schema and isinstance(schema.get("additionalProperties"), dict):
        out.append(f"{path}: properties and additionalProperties together")
    for k, sub in (schema.get("properties") or {}).items():
        out += _structural_problems(sub, f"{path}.{k}")
    if isinstance(schema.get("items"), dict):
        out += _structural_problems(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += _structural_problems(schema["additionalProperties"], f"{path}{{}}")
    return out


def _cel_rules(schema, path: str):
    if isinstance(schema, dict):
        for v in schema.get("x-kubernetes-validations") or []:
            yield path, v
        for k, sub in (schema.get("properties") or {}).items():
            yield from _cel_rules(sub, f"{path}.{k}")
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                yield from _cel_rules(schema[key], f"{path}[]" if key == "items" else f"{path}{{}}")


def cmd_check_crd(a) -> None:
    path = Path(a.chart) / CRD_FILE
    if not path.exists():
        die(f"{path} is missing: the AutoResizePolicy CRD is generated from the project's Rust types "
            f"(cargo run --bin crdgen) and committed as charts/cnpg-autoresize/{CRD_FILE}")
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except yaml.YAMLError as e:
        die(f"{path}: not YAML: {e}")
    if len(docs) != 1:
        die(f"{path}: expected one document, found {len(docs)}")
    crd = docs[0]
    errs = []
    if crd.get("apiVersion") != "apiextensions.k8s.io/v1" or crd.get("kind") != "CustomResourceDefinition":
        errs.append(f"not an apiextensions.k8s.io/v1 CustomResourceDefinition ({crd.get('apiVersion')} {crd.get('kind')})")
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    want_name = f"{CRD_PLURAL}.{CRD_GROUP}"
    if (crd.get("metadata") or {}).get("name") != want_name:
        errs.append(f"metadata.name is {(crd.get('metadata') or {}).get('name')!r}, want {want_name!r}")
    if spec.get("group") != CRD_GROUP:
        errs.append(f"group {spec.get('group')!r}, want {CRD_GROUP!r}")
    if names.get("kind") != CRD_KIND or names.get("plural") != CRD_PLURAL:
        errs.append(f"names {names.get('kind')}/{names.get('plural')}, want {CRD_KIND}/{CRD_PLURAL}")
    if spec.get("scope") != "Namespaced":
        errs.append(f"scope {spec.get('scope')!r}, want Namespaced")
    versions = {v.get("name"): v for v in spec.get("versions") or []}
    v = versions.get(CRD_VERSION)
    rules = optional = 0
    if not v:
        errs.append(f"no version {CRD_VERSION} (found {sorted(versions)})")
    else:
        if not (v.get("served") and v.get("storage")):
            errs.append(f"{CRD_VERSION} must be served and the storage version")
        if "status" not in (v.get("subresources") or {}):
            errs.append(f"{CRD_VERSION} has no status subresource (the Role patches autoresizepolicies/status)")
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if not schema:
            errs.append(f"{CRD_VERSION} has no openAPIV3Schema")
        else:
            errs += _structural_problems(schema, "openAPIV3Schema")
            for k in ("spec", "status"):
                if k not in (schema.get("properties") or {}):
                    errs.append(f"openAPIV3Schema has no {k}")
            try:
                import celpy
                env = celpy.Environment()
            except ImportError:
                env = None
                errs.append("cel-python is needed to parse the CRD's CEL rules (--install)")
            for where, rule in _cel_rules(schema, "openAPIV3Schema"):
                rules += 1
                if not rule.get("rule"):
                    errs.append(f"{where}: x-kubernetes-validations entry without a rule")
                elif env is not None:
                    # Parse only. cel-python has no optional types: `x.?f` and
                    # `m[?k]` are parsed as `x.f` and `m[k]` (the rest of the
                    # rule is still checked).
                    text = rule["rule"]
                    if ".?" in text or "[?" in text:
                        optional += 1
                        text = text.replace(".?", ".").replace("[?", "[")
                    try:
                        env.compile(text)
                    except Exception as e:  # celpy.CELParseError
                        errs.append(f"{where}: CEL rule does not parse: {rule['rule']!r}: {str(e).splitlines()[0]}")
            if rules == 0:
                errs.append("no x-kubernetes-validations: the validation errors must be CEL rules in the CRD (docs/reference/configuration.md#what-the-api-server-checks)")
    errs += _validate_k8s(crd, a.kube_versions.split(","), str(path.name))
    if errs:
        for e in errs:
            print(f"  {e}", file=sys.stderr)
        die(f"{path}")
    print(f"  {path.name}: {CRD_KIND} {CRD_GROUP}/{CRD_VERSION}, namespaced, status subresource, "
          f"{rules} CEL rule(s) that parse"
          + (f" ({optional} with optional-field syntax, parsed as plain selections)" if optional else "")
          + f", valid against Kubernetes {a.kube_versions}")
    if a.role_dir:
        got = set()
        for name, role in _roles(a.role_dir).items():
            got |= _triples(role["rules"], f"Role {name}")
        for res, verbs in ((CRD_PLURAL, ("get", "list", "watch")), (f"{CRD_PLURAL}/status", ("patch",))):
            for verb in verbs:
                if (CRD_GROUP, res, verb, "*") not in got:
                    die(f"the rendered Role does not grant {verb} {res}.{CRD_GROUP}")
        print(f"  the Role grants get/list/watch {CRD_PLURAL} and patch {CRD_PLURAL}/status of this CRD")


# ------------------------------------------------------------------ sidecar


def _rendered_sidecar(chart: str) -> dict:
    """The injected container, from the one template helper (as the Kyverno
    policy renders it; hack/check-injection.py proves the
    MutatingAdmissionPolicy injects the same container)."""
    import helm_python as helm

    values = {"injection": {"mode": "kyverno"}, "clusters": [{"name": "fixture"}]}
    with helm.Chart.load(chart) as c:
        out = c.render(values=values, name="cnpg-autoresize", namespace="default", is_install=True)
    for template, text in out.items():
        if template.endswith(".txt"):
            continue
        for d in yaml.safe_load_all(text):
            if d and d.get("kind") == "Policy":
                return d["spec"]["rules"][0]["mutate"]["patchStrategicMerge"]["spec"]["initContainers"][0]
    die("no Kyverno Policy rendered: cannot extract the injected container")
    return {}


def _sidecar_view(container: dict, where: str) -> dict:
    bad = [k for k in SIDECAR_FORBIDDEN if k in container]
    if bad:
        die(f"{where} has {', '.join(bad)}: the injected sidecar must have no readiness or startup probe "
            "(its readiness gates PostgreSQL's Service endpoints; a native sidecar's startup probe delays PostgreSQL)")
    missing = [k for k in SIDECAR_FIELDS if k not in container]
    if missing:
        die(f"{where} lacks {', '.join(missing)}")
    return {k: container[k] for k in SIDECAR_FIELDS}


def cmd_write_sidecar(a) -> None:
    view = _sidecar_view(_rendered_sidecar(a.chart), "the rendered container")
    header = (
        "# The container the chart injects into CloudNativePG instance pods, as rendered\n"
        "# for the kubelet stand-in of the end-to-end tests (probes, ports, resources:\n"
        "# requests equal limits, so the pod keeps its QoS class). Kept in sync with\n"
        "# the chart by hack/check-chart.sh; regenerate with\n"
        "#   bash hack/check-chart.sh --render-sidecar tests/packaging/sidecar-container.yaml\n"
        "# It has no readinessProbe and no startupProbe, on purpose (see the chart README).\n"
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(header + yaml.safe_dump(view, sort_keys=False), encoding="utf-8")
    print(f"  wrote {', '.join(view)} of the injected container to {a.out}")


def cmd_check_sidecar(a) -> None:
    rendered = _sidecar_view(_rendered_sidecar(a.chart), "the rendered container")
    if not Path(a.fixture).exists():
        die(f"{a.fixture} is missing: bash hack/check-chart.sh --render-sidecar {a.fixture}")
    fixture = yaml.safe_load(Path(a.fixture).read_text(encoding="utf-8")) or {}
    extra = sorted(set(fixture) - set(SIDECAR_FIELDS))
    if extra:
        die(f"{a.fixture} has fields the check does not cover: {', '.join(extra)}")
    fixture_view = _sidecar_view(fixture, a.fixture)
    diffs = [k for k in SIDECAR_FIELDS if fixture_view[k] != rendered[k]]
    if diffs:
        for k in diffs:
            print(f"  {k}: fixture {json.dumps(fixture_view[k])}\n  {' ' * len(k)}  chart   {json.dumps(rendered[k])}",
                  file=sys.stderr)
        die(f"{a.fixture} drifted from the chart: bash hack/check-chart.sh --render-sidecar {a.fixture}")
    print(f"  {a.fixture} matches the chart ({', '.join(SIDECAR_FIELDS)}; no {' / '.join(SIDECAR_FORBIDDEN)})")


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
    unknown = {m: f for m, f in used.items() if m not in allowed and m not in NOT_METRICS}
    if unknown:
        die(f"unknown metric names (not in {a.metrics}, the names of docs/reference/metrics.md): "
            + ", ".join(f"{m} ({', '.join(sorted(f))})" for m, f in sorted(unknown.items())))
    used = {m: f for m, f in used.items() if m not in NOT_METRICS}
    base = {m for m in used if m in known} | {m.rsplit("_", 1)[0] for m in used if m not in known}
    unused = sorted(known - base)
    print(f"  {len(used)} metric names used by rules/dashboard, all from docs/reference/metrics.md"
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
    s.add_argument("--kube-versions", default="1.30.0,1.33.0,1.36.0")
    s.set_defaults(fn=cmd_validate)

    s = sub.add_parser("check-crd"); s.add_argument("--chart", required=True)
    s.add_argument("--kube-versions", default="1.30.0,1.33.0,1.36.0")
    s.add_argument("--role-dir", help="rendered manifests whose Role must grant the CRD's resources")
    s.set_defaults(fn=cmd_check_crd)

    s = sub.add_parser("write-sidecar"); s.add_argument("--chart", required=True); s.add_argument("out")
    s.set_defaults(fn=cmd_write_sidecar)

    s = sub.add_parser("check-sidecar"); s.add_argument("--chart", required=True); s.add_argument("fixture")
    s.set_defaults(fn=cmd_check_sidecar)

    s = sub.add_parser("extract-rules"); s.add_argument("dir"); s.add_argument("out")
    s.add_argument("--expect-alerts")
    s.set_defaults(fn=cmd_extract_rules)

    s = sub.add_parser("check-tests-cover"); s.add_argument("tests"); s.add_argument("--alerts", required=True)
    s.set_defaults(fn=cmd_check_tests_cover)

    s = sub.add_parser("check-role"); s.add_argument("dir"); s.add_argument("expected")
    s.add_argument("--values", help="the values the chart was rendered with (their `clusters`)")
    s.add_argument("--fullname", default="cnpg-autoresize", help="the release's resource name prefix")
    s.set_defaults(fn=cmd_check_role)

    s = sub.add_parser("cluster-roles"); s.add_argument("dir")
    s.add_argument("--expect", choices=["none"], required=True)
    s.set_defaults(fn=cmd_cluster_roles)

    s = sub.add_parser("write-role"); s.add_argument("dir"); s.add_argument("out")
    s.set_defaults(fn=cmd_write_role)

    s = sub.add_parser("write-admission"); s.add_argument("dir"); s.add_argument("out")
    s.set_defaults(fn=cmd_write_admission)

    s = sub.add_parser("check-metrics"); s.add_argument("dir"); s.add_argument("metrics")
    s.set_defaults(fn=cmd_check_metrics)

    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    # helm_python ships a module named `logging`; never run with its directory as cwd.
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
