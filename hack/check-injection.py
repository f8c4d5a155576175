#!/usr/bin/env python3
"""Tests the chart's sidecar injection on every path, without a cluster (run by hack/check-chart.sh).

It renders the chart with the Helm v4 SDK (helm-python-sdk) and plays, for
the pods of tests/packaging/pods/ (CloudNativePG instance pods as 1.25,
1.27.0, 1.28.2, 1.30 and main create them, each Guaranteed and Burstable;
CNPG's Job pods; unrelated pods), what a real API server does on CREATE:

  1. the ServiceAccount admission plugin: a projected kube-api-access-<x>
     token volume mounted into every container, unless the pod sets
     automountServiceAccountToken: false (CNPG main mounts its own, into
     postgres only);
  2a. the MutatingAdmissionPolicy and its binding: matchConstraints and the
     binding's matchResources (label selectors, in Python), matchConditions,
     variables and the JSONPatch expression evaluated by a CEL interpreter
     (cel-python), the patch applied with `jsonpatch` (RFC 6902), and a
     reinvocation (must change nothing);
  2b. or the Kyverno Policy, the subset Kyverno applies here: match by kind,
     operation and label selector; preconditions (Equals/NotEquals); a
     patchStrategicMerge (initContainers merged by name, new ones appended)
     whose whole-string {{ JMESPath }} variables are evaluated with the
     `jmespath` package against {"request": {"object": <pod>}} and
     substituted as JSON;
  2c. or the CNPG-I plugin (`cnpg-autoresize plugin inject`), on the pod
     before admission as the operator calls it, then step 1 — compared when
     the binary has that subcommand, reported as not available otherwise
     (REQUIRE_CNPG_I below turns that into a failure).

For every instance pod, each path must append exactly one container after
CNPG's own init containers and change nothing else; the container must have
the API token and only read-only mounts; the policy's and Kyverno's (and the
plugin's) containers must be equal (mounts compared by mountPath; Kyverno's
--wal-path/--tablespace arguments only when its values list what the pod
has: it cannot read them from the pod); the pod must be one the API server
accepts (the Kubernetes 1.36 Pod schema with kubernetes-validate, strict,
and the validation rules a patch easily breaks: every mount names a volume
of the pod, unique names and mount paths) and keep its QoS class (Kubernetes'
ComputePodQOS on the defaulted pod: init containers count). Job pods,
unrelated pods, pods of other namespaces or unlisted clusters, and pods
that already carry the container are left unchanged by both policies.

THE CEL ADAPTER (what cel-python lacks, and exactly how it is supplied; the
expressions themselves are evaluated as written, nothing is rewritten):
  - `JSONPatch{op: ..., path: ..., value: ...}`: Kubernetes declares the type
    JSONPatch; here `JSONPatch` is a binding whose "construction" returns a
    map of the given fields, marked as a JSONPatch so the test can require
    that the expression returns a list of JSONPatch values, as the API server
    does.
  - `Object.spec.initContainers{...}` and nested `Object.<path>{...}`: the API
    server types these from the Pod's OpenAPI schema; here `Object` is a
    binding whose `.field` selections build the type path and whose
    construction returns a map of the given fields, marked with that path.
    Field names are not checked against the schema here; instead (a) every
    map in a patch value must be a typed object whose path is its parent's
    path plus the field name (except resource quantity maps, which are plain
    maps in Kubernetes too), and (b) the patched pod is validated against
    the Kubernetes 1.36 Pod schema.
  - `string.substring(start[, end])` from cel-go's ext strings library
    (part of Kubernetes' CEL environment), as a function binding.
  - `jsonpatch.escapeKey` is not used by the chart's expressions and is not
    provided.
What cel-python does not do at all is type-checking. The one Kubernetes type
rule a policy easily breaks -- list and map literals must be homogeneous
(cel.HomogeneousAggregateLiterals) -- is checked statically on the parse tree
for literals whose element kinds are evident (literals, typed objects).
Both policies also run on a real kube-apiserver in hack/envtest.sh.

Exit status 0 when every case passed. The last line is "N passed, N failed".
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from fractions import Fraction
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "cnpg-autoresize"
EXAMPLE_VALUES = CHART / "ci" / "example-values.yaml"
PODS = ROOT / "tests" / "packaging" / "pods"
NAMESPACE = "databases"
RELEASE = "cnpg-autoresize"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
PLAIN_MAP_SUFFIXES = (".resources.limits", ".resources.requests")


# ------------------------------------------------------------------ adapter

def _celpy():
    import celpy  # noqa: F401  (import errors are reported by main)
    from celpy import celtypes
    return celpy, celtypes


class Adapter:
    """The bindings Kubernetes' CEL environment has and cel-python lacks."""

    def __init__(self):
        celpy, celtypes = _celpy()
        self.celpy = celpy
        self.celtypes = celtypes
        adapter = self

        class Typed(celtypes.MapType):
            """A value built with Object.<path>{...}: a map that remembers its type."""
            type_path = ""

        class Patch(celtypes.MapType):
            """A value built with JSONPatch{...}."""

        class TypeRef(celtypes.MapType):
            """`Object`, `Object.spec`, ...: field selection extends the path,
            construction (`TypeRef{fields}`) builds a Typed map."""

            def __init__(self, path: str):
                super().__init__({})
                self.path = path

            def __getitem__(self, key):
                return TypeRef(f"{self.path}.{key}")

            def __contains__(self, key):
                return True

            def __call__(self, fields):
                if self.path == "JSONPatch":
                    out = Patch(adapter._fields(fields))
                    unknown = set(map(str, out.keys())) - {"op", "path", "from", "value"}
                    if unknown:
                        raise ValueError(f"JSONPatch has no field(s) {sorted(unknown)}")
                    return out
                out = Typed(adapter._fields(fields))
                out.type_path = self.path
                return out

        self.Typed, self.Patch, self.TypeRef = Typed, Patch, TypeRef

        def substring(s, start, end=None):
            s = str(s)
            start = int(start)
            end = len(s) if end is None else int(end)
            if not 0 <= start <= end <= len(s):
                raise ValueError(f"substring({start}, {end}) out of range for {s!r}")
            return celtypes.StringType(s[start:end])

        self.functions = {"substring": substring}

    def _fields(self, fields):
        return {self.celtypes.StringType(k): v for k, v in (fields or {}).items()}

    def bindings(self) -> dict:
        return {"JSONPatch": self.TypeRef("JSONPatch"), "Object": self.TypeRef("Object")}

    def evaluate(self, expr: str, activation: dict, where: str):
        env = self.celpy.Environment()
        try:
            ast = env.compile(expr)
        except Exception as e:  # CELParseError
            raise AssertionError(f"{where}: CEL does not parse: {e}") from e
        prg = env.program(ast, functions=self.functions)
        act = dict(self.bindings())
        act.update(activation)
        result = prg.evaluate(act)
        if isinstance(result, self.celpy.evaluation.CELEvalError):
            raise AssertionError(f"{where}: CEL evaluation error: {result.args}")
        return result

    def to_cel(self, value):
        return self.celpy.json_to_cel(value)

    def to_json(self, value):
        ct = self.celtypes
        if isinstance(value, ct.BoolType):
            return bool(value)
        if isinstance(value, (ct.IntType, ct.UintType)):
            return int(value)
        if isinstance(value, ct.DoubleType):
            return float(value)
        if isinstance(value, (ct.StringType, str)):
            return str(value)
        if isinstance(value, (ct.MapType, ct.MessageType, dict)):
            return {str(k): self.to_json(v) for k, v in value.items()}
        if isinstance(value, (ct.ListType, list)):
            return [self.to_json(v) for v in value]
        if value is None:
            return None
        raise AssertionError(f"unexpected CEL value {value!r} ({type(value).__name__})")

    def check_typed(self, value, path: str, where: str, problems: list):
        """Every map in a patch value is Object.<path>{...} with the right path."""
        ct = self.celtypes
        if isinstance(value, (ct.MapType, ct.MessageType)):
            if path.endswith(PLAIN_MAP_SUFFIXES):
                if isinstance(value, self.Typed):
                    problems.append(f"{where}: {path} must be a plain map, got {value.type_path}{{...}}")
                for k, v in value.items():
                    if not isinstance(v, ct.StringType):
                        problems.append(f"{where}: {path}[{k}] must be a string quantity")
                return
            if not isinstance(value, self.Typed):
                problems.append(f"{where}: the map at {path} is not built with {path}{{...}} "
                                "(the API server rejects mixed-type map literals)")
                return
            if value.type_path != path:
                problems.append(f"{where}: {value.type_path}{{...}} used where {path} is expected")
            for k, v in value.items():
                self.check_typed(v, f"{path}.{k}", where, problems)
        elif isinstance(value, (ct.ListType, list)):
            for v in value:
                self.check_typed(v, path, where, problems)


def check_homogeneous_literals(expr: str, where: str) -> list[str]:
    """List/map literals whose evident element kinds differ (a type error for
    the API server, cel.HomogeneousAggregateLiterals)."""
    celpy, _ = _celpy()
    import lark

    tree = celpy.Environment().compile(expr)

    def kind(node):
        # Descend through single-child wrappers (expr -> ... -> primary).
        while isinstance(node, lark.Tree):
            if node.data == "member_object":
                parts = []
                n = node.children[0]
                while isinstance(n, lark.Tree) and n.data in ("member", "member_dot", "primary", "ident"):
                    if n.data == "member_dot":
                        parts.append(str(n.children[1]))
                        n = n.children[0]
                    else:
                        n = n.children[0]
                parts.append(str(n))
                return "object " + ".".join(reversed(parts))
            if node.data == "list_lit":
                return "list"
            if node.data == "map_lit":
                return "map"
            if node.data == "literal":
                tok = node.children[0]
                return {"STRING_LIT": "string", "MLSTRING_LIT": "string", "INT_LIT": "int",
                        "UINT_LIT": "uint", "FLOAT_LIT": "double", "BOOL_LIT": "bool",
                        "NULL_LIT": "null", "BYTES_LIT": "bytes"}.get(tok.type, tok.type)
            kids = [c for c in node.children if c is not None]
            if len(kids) != 1:
                return None
            node = kids[0]
        return None

    problems = []
    for node in tree.iter_subtrees():
        if node.data == "exprlist" or node.data == "mapinits":
            values = node.children if node.data == "exprlist" else node.children[1::2]
            keys = [] if node.data == "exprlist" else node.children[0::2]
            for group, what in ((values, "elements"), (keys, "keys")):
                kinds = {k for k in (kind(c) for c in group) if k is not None}
                if len(kinds) > 1:
                    problems.append(f"{where}: literal with {what} of different types {sorted(kinds)}")
    return problems


# -------------------------------------------------------------- admission

def selector_matches(selector: dict | None, labels: dict) -> bool:
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def rules_match(rules: list, operation: str) -> bool:
    for r in rules or []:
        if ("" in r.get("apiGroups", []) or "*" in r.get("apiGroups", [])) \
                and ("v1" in r.get("apiVersions", []) or "*" in r.get("apiVersions", [])) \
                and ("pods" in r.get("resources", []) or "*" in r.get("resources", [])) \
                and (operation in r.get("operations", []) or "*" in r.get("operations", [])):
            return True
    return False


def short(value, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def namespace_object(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}}


def failing_condition(ad: Adapter, policy: dict, pod: dict, namespace: str) -> str | None:
    """The first matchCondition that is false for `pod` (None: all true)."""
    act = {"object": ad.to_cel(pod), "oldObject": None,
           "request": ad.to_cel({"operation": "CREATE", "namespace": namespace}),
           "namespaceObject": ad.to_cel(namespace_object(namespace))}
    for cond in policy["spec"].get("matchConditions") or []:
        if not ad.evaluate(cond["expression"], act, f"matchCondition {cond['name']}"):
            return cond["name"]
    return None


def admit(ad: Adapter, policy: dict, binding: dict, pod: dict, namespace: str) -> tuple[dict, str]:
    """One admission of `pod` (CREATE) through policy + binding. Returns the
    resulting pod and why it was (not) mutated."""
    import jsonpatch

    spec = policy["spec"]
    labels = (pod.get("metadata") or {}).get("labels") or {}
    ns = namespace_object(namespace)
    mc = spec["matchConstraints"]
    if not rules_match(mc.get("resourceRules"), "CREATE"):
        return pod, "resource rules do not match"
    if not selector_matches(mc.get("objectSelector"), labels):
        return pod, "policy objectSelector does not match"
    if not selector_matches(mc.get("namespaceSelector"), ns["metadata"]["labels"]):
        return pod, "policy namespaceSelector does not match"
    mr = (binding.get("spec") or {}).get("matchResources") or {}
    if mr.get("resourceRules") and not rules_match(mr["resourceRules"], "CREATE"):
        return pod, "binding resource rules do not match"
    if not selector_matches(mr.get("objectSelector"), labels):
        return pod, "binding objectSelector does not match"
    if not selector_matches(mr.get("namespaceSelector"), ns["metadata"]["labels"]):
        return pod, "binding namespaceSelector does not match"

    request = {"operation": "CREATE", "namespace": namespace, "name": pod["metadata"].get("name", ""),
               "kind": {"group": "", "version": "v1", "kind": "Pod"},
               "resource": {"group": "", "version": "v1", "resource": "pods"}}
    base = {"object": ad.to_cel(pod), "oldObject": None, "request": ad.to_cel(request),
            "namespaceObject": ad.to_cel(ns)}
    for cond in spec.get("matchConditions") or []:
        ok = ad.evaluate(cond["expression"], base, f"matchCondition {cond['name']}")
        if not isinstance(ok, ad.celtypes.BoolType):
            raise AssertionError(f"matchCondition {cond['name']} returned {short(ok)}, not a bool")
        if not ok:
            return pod, f"matchCondition {cond['name']} is false"

    current = copy.deepcopy(pod)
    for i, mutation in enumerate(spec["mutations"]):
        if mutation["patchType"] != "JSONPatch":
            raise AssertionError(f"mutation {i}: patchType {mutation['patchType']} is not tested here")
        act = {**base, "object": ad.to_cel(current)}
        variables = {}
        for var in spec.get("variables") or []:
            act["variables"] = ad.celtypes.MapType(
                {ad.celtypes.StringType(k): v for k, v in variables.items()})
            variables[var["name"]] = ad.evaluate(var["expression"], act, f"variable {var['name']}")
        act["variables"] = ad.celtypes.MapType(
            {ad.celtypes.StringType(k): v for k, v in variables.items()})
        result = ad.evaluate(mutation["jsonPatch"]["expression"], act, f"mutation {i}")
        # (cel-python returns a list concatenation as a plain Python list.)
        if not isinstance(result, (ad.celtypes.ListType, list)) or not all(isinstance(p, ad.Patch) for p in result):
            raise AssertionError(f"mutation {i} must return a list of JSONPatch values, got {short(result)}")
        problems: list[str] = []
        for p in result:
            if "value" in p and str(p["path"]).startswith("/spec/initContainers/"):
                ad.check_typed(p["value"], "Object.spec.initContainers", f"mutation {i}", problems)
        if problems:
            raise AssertionError("; ".join(problems))
        ops = ad.to_json(result)
        current = jsonpatch.apply_patch(current, ops)
    return current, "mutated"


# ------------------------------------------ ServiceAccount admission plugin

SA_VOLUME_PREFIX = "kube-api-access-"


def service_account_admission(pod: dict) -> dict:
    """What Kubernetes' ServiceAccount admission plugin does to a new pod
    (plugin/pkg/admission/serviceaccount, mountServiceAccountToken) before
    any mutating admission policy or webhook: unless
    automountServiceAccountToken is false, a projected token volume
    kube-api-access-<random> (reused when one with that prefix exists) is
    mounted read-only at the token path into every init container and
    container that has nothing mounted there yet."""
    out = copy.deepcopy(pod)
    spec = out["spec"]
    spec.setdefault("serviceAccountName", "default")
    if spec.get("automountServiceAccountToken") is False:
        return out
    volumes = spec.setdefault("volumes", [])
    existing = [v["name"] for v in volumes if v["name"].startswith(SA_VOLUME_PREFIX)]
    # The suffix is random on a real server; fixed here so runs compare.
    name = existing[0] if existing else SA_VOLUME_PREFIX + "x7k2p"
    needed = False
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            if not any(m["mountPath"] == TOKEN_PATH for m in c.get("volumeMounts") or []):
                c.setdefault("volumeMounts", []).append({"name": name, "readOnly": True, "mountPath": TOKEN_PATH})
                needed = True
    if needed and not existing:
        volumes.append({"name": name, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}})
    return out


# ----------------------------------------------------------------- Kyverno

# Strategic merge keys of the lists a container patch can touch (the Pod's
# OpenAPI x-kubernetes-patch-merge-key); any other list is replaced.
MERGE_KEYS = {"initContainers": "name", "containers": "name", "volumeMounts": "mountPath",
              "env": "name", "ports": "containerPort", "volumes": "name"}
KYVERNO_VAR = re.compile(r"\{\{(.*?)\}\}", re.S)


def kyverno_substitute(value, context: dict, where: str):
    """Kyverno's variable substitution, the subset the chart uses: a string
    that is one whole {{ JMESPath }} becomes the expression's JSON value;
    any other use of {{ }} is refused (not emulated here)."""
    import jmespath

    if isinstance(value, dict):
        return {k: kyverno_substitute(v, context, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [kyverno_substitute(v, context, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and "{{" in value:
        m = re.fullmatch(r"\s*\{\{(.*)\}\}\s*", value, re.S)
        if not m or len(KYVERNO_VAR.findall(value)) != 1:
            raise AssertionError(f"{where}: {value!r} is not one whole {{{{ }}}} variable (not emulated)")
        try:
            return jmespath.search(m.group(1).strip(), context)
        except jmespath.exceptions.JMESPathError as e:
            raise AssertionError(f"{where}: JMESPath {m.group(1).strip()!r}: {e}") from e
    return value


def strategic_merge(base, patch, key: str = ""):
    """A strategic merge patch of the kind Kyverno applies: maps merge,
    lists with a merge key merge element by element (new ones appended),
    other values are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for k, v in patch.items():
            out[k] = strategic_merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        mk = MERGE_KEYS[key]
        out = copy.deepcopy(base)
        for item in patch:
            at = [i for i, b in enumerate(out) if isinstance(b, dict) and b.get(mk) == item.get(mk)]
            if at:
                out[at[0]] = strategic_merge(out[at[0]], item, "")
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def kyverno_precondition(cond: dict, context: dict, where: str) -> bool:
    key = kyverno_substitute(cond["key"], context, f"{where}.key")
    value = kyverno_substitute(cond.get("value"), context, f"{where}.value")
    op = cond["operator"]
    if op == "Equals":
        return key == value
    if op == "NotEquals":
        return key != value
    raise AssertionError(f"{where}: precondition operator {op} is not emulated")


def kyverno_admit(policy: dict, pod: dict, namespace: str) -> tuple[dict, str]:
    """One CREATE of `pod` through a namespaced Kyverno Policy: each rule
    whose match (kinds, operations, label selector) and preconditions hold
    applies its patchStrategicMerge, variables substituted against
    {"request": {"object": <the pod as it is then>}}."""
    if policy["metadata"].get("namespace") != namespace:
        return pod, "policy of another namespace"
    current = copy.deepcopy(pod)
    applied, skipped = [], []
    for rule in policy["spec"]["rules"]:
        where = f"rule {rule['name']}"
        blocks = rule["match"].get("any") or rule["match"].get("all") or []
        if set(rule["match"]) - {"any", "all"}:
            raise AssertionError(f"{where}: match keys {sorted(rule['match'])} are not emulated")
        results = []
        for b in blocks:
            r = b["resources"]
            if set(r) - {"kinds", "operations", "selector"}:
                raise AssertionError(f"{where}: match fields {sorted(r)} are not emulated")
            labels = (current.get("metadata") or {}).get("labels") or {}
            results.append("Pod" in r.get("kinds", []) and "CREATE" in r.get("operations", ["CREATE"])
                           and selector_matches(r.get("selector"), labels))
        matched = any(results) if "any" in rule["match"] else all(results)
        if not matched:
            continue
        context = {"request": {"object": current, "operation": "CREATE"}}
        pre = rule.get("preconditions") or {}
        if set(pre) - {"all", "any"}:
            raise AssertionError(f"{where}: preconditions {sorted(pre)} are not emulated")
        if (pre.get("all") and not all(kyverno_precondition(c, context, f"{where} precondition")
                                       for c in pre["all"])) or \
                (pre.get("any") and not any(kyverno_precondition(c, context, f"{where} precondition")
                                            for c in pre["any"])):
            skipped.append(rule["name"])
            continue
        if set(rule["mutate"]) != {"patchStrategicMerge"}:
            raise AssertionError(f"{where}: mutate {sorted(rule['mutate'])} is not emulated")
        patch = kyverno_substitute(rule["mutate"]["patchStrategicMerge"], context, where)
        current = strategic_merge(current, patch)
        applied.append(rule["name"])
    if applied:
        return current, "mutated by " + ", ".join(applied)
    if skipped:
        return current, "preconditions false for " + ", ".join(skipped)
    return current, "no rule matches"


# ------------------------------------------------------------------ CNPG-I

# THE CNPG-I PATH. The plugin (`cnpg-autoresize plugin inject --template FILE
# --cluster FILE --pod FILE`, printing the patched pod as JSON) is compared
# with the other paths when the binary has that subcommand, and reported as
# a failure otherwise (the plugin is part of the product).
REQUIRE_CNPG_I = True
PLUGIN_NAME = "autoresize.cnpg.io"


class CnpgIPlugin:
    def __init__(self):
        import os
        import shutil
        import subprocess

        self.subprocess = subprocess
        target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
        if not target.is_absolute():
            target = ROOT / target
        candidates = [os.environ.get("CNPG_AUTORESIZE_BIN"), str(target / "debug" / "cnpg-autoresize"),
                      str(target / "release" / "cnpg-autoresize"), shutil.which("cnpg-autoresize")]
        self.binary = next((c for c in candidates if c and Path(c).is_file()), None)
        self.why_not = None
        if self.binary is None:
            self.why_not = ("no cnpg-autoresize binary (cargo build, or CNPG_AUTORESIZE_BIN=PATH)")
            return
        probe = subprocess.run([self.binary, "plugin", "inject", "--help"], capture_output=True, text=True)
        if probe.returncode != 0:
            self.why_not = f"{self.binary} has no `plugin inject` subcommand yet"

    def inject(self, template: dict, cluster: dict, pod: dict) -> dict:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            files = {}
            for name, obj in (("template", template), ("cluster", cluster), ("pod", pod)):
                files[name] = Path(d) / f"{name}.json"
                files[name].write_text(json.dumps(obj), encoding="utf-8")
            r = self.subprocess.run([self.binary, "plugin", "inject", "--template", str(files["template"]),
                                     "--cluster", str(files["cluster"]), "--pod", str(files["pod"])],
                                    capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"plugin inject failed ({r.returncode}): {r.stderr.strip()[:500]}")
        try:
            return json.loads(r.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"plugin inject printed no JSON pod: {e}: {r.stdout[:300]!r}") from e


def cnpg_cluster(pod: dict, values: dict) -> dict:
    """The Cluster the operator hands to the plugin with the pod: the one
    the pod's volumes say it is, with the plugin listed — and, where the
    chart's values name a cluster's password Secret, the plugin parameter
    that names it (the plugin's own default is <cluster>-autoresize)."""
    name = pod["metadata"]["labels"]["cnpg.io/cluster"]
    entry = next((c for c in values.get("clusters") or [] if c["name"] == name), {})
    parameters = {}
    secret = entry.get("pgPasswordSecret")
    if isinstance(secret, dict):
        if secret.get("name"):
            parameters["postgresSecret"] = secret["name"]
        if secret.get("key"):
            parameters["postgresSecretKey"] = secret["key"]
    elif secret:
        parameters["postgresSecret"] = secret
    pg = next(c for c in pod["spec"]["containers"] if c["name"] == "postgres")
    paths = [m["mountPath"] for m in pg.get("volumeMounts") or []]
    plugin = {"name": PLUGIN_NAME, "enabled": True}
    if parameters:
        plugin["parameters"] = parameters
    spec = {"instances": 3, "storage": {"size": "10Gi"}, "plugins": [plugin]}
    if "/var/lib/postgresql/wal" in paths:
        spec["walStorage"] = {"size": "10Gi"}
    tbs = [p.rsplit("/", 1)[1] for p in paths if p.startswith("/var/lib/postgresql/tablespaces/")]
    if tbs:
        spec["tablespaces"] = [{"name": t, "storage": {"size": "1Gi"}} for t in tbs]
    return {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": name, "namespace": pod["metadata"]["namespace"]},
            "spec": spec}


# ------------------------------------------------- what the API server does

_SUFFIX = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
           "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
           "P": Fraction(10**15), "E": Fraction(10**18), "Ki": Fraction(2**10), "Mi": Fraction(2**20),
           "Gi": Fraction(2**30), "Ti": Fraction(2**40), "Pi": Fraction(2**50), "Ei": Fraction(2**60)}


def quantity(q) -> Fraction:
    """A Kubernetes resource quantity as an exact number."""
    m = re.fullmatch(r"([+-]?[0-9.]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)", str(q))
    if not m:
        raise AssertionError(f"not a quantity: {q!r}")
    n = Fraction(m.group(1))
    if m.group(2):
        return n * Fraction(10) ** int(m.group(2)[1:])
    return n * _SUFFIX[m.group(3) or ""]


def defaulted(pod: dict) -> dict:
    """The API server's defaulting that matters for QoS: a container's
    request defaults to its limit (SetDefaults_Pod)."""
    out = copy.deepcopy(pod)
    for key in ("initContainers", "containers"):
        for c in out["spec"].get(key) or []:
            res = c.get("resources") or {}
            for name, q in (res.get("limits") or {}).items():
                res.setdefault("requests", {}).setdefault(name, q)
    return out


def qos_class(pod: dict) -> str:
    """Kubernetes' ComputePodQOS (pkg/apis/core/helper/qos), on the defaulted
    pod: init containers count; requests and limits are summed per resource."""
    pod = defaulted(pod)
    if (pod["spec"].get("resources") or {}):
        raise AssertionError("pod-level resources are not emulated")
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for c in (pod["spec"].get("containers") or []) + (pod["spec"].get("initContainers") or []):
        res = c.get("resources") or {}
        for name, q in (res.get("requests") or {}).items():
            if name in ("cpu", "memory") and quantity(q) > 0:
                requests[name] = requests.get(name, 0) + quantity(q)
        found = set()
        for name, q in (res.get("limits") or {}).items():
            if name in ("cpu", "memory") and quantity(q) > 0:
                found.add(name)
                limits[name] = limits.get(name, 0) + quantity(q)
        if not {"cpu", "memory"} <= found:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(name in limits and limits[name] == q for name, q in requests.items()) \
            and len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"


def rejections(pod: dict) -> list[str]:
    """Why the API server's Pod validation (pkg/apis/core/validation) would
    refuse the pod, for the rules a patch easily breaks; the schema is
    checked separately."""
    spec = pod["spec"]
    problems = []
    volumes = [v["name"] for v in spec.get("volumes") or []]
    if len(volumes) != len(set(volumes)):
        problems.append(f"duplicate volume names {volumes}")
    names = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
    if len(names) != len(set(names)):
        problems.append(f"duplicate container names {names}")
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            paths = [m["mountPath"] for m in c.get("volumeMounts") or []]
            if len(paths) != len(set(paths)):
                problems.append(f"{c['name']}: a mountPath used twice {paths}")
            for m in c.get("volumeMounts") or []:
                if m["name"] not in volumes:
                    problems.append(f"{c['name']}: volumeMounts[{m['mountPath']}]: volume {m['name']!r} not found")
            if key == "containers" and "restartPolicy" in c:
                problems.append(f"{c['name']}: restartPolicy is for init containers only")
    return problems


def validate_pod(pod: dict) -> None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(pod, "1.36.0", strict=True)
    except kubernetes_validate.ValidationError as e:  # type: ignore[attr-defined]
        raise AssertionError(f"not a valid 1.36 Pod: {str(e).splitlines()[0]}") from e
    problems = rejections(pod)
    if problems:
        raise AssertionError("the API server would reject the pod: " + "; ".join(problems))


# -------------------------------------------------------------------- render

def render(values: dict) -> list[dict]:
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        out = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for name, text in sorted(out.items()):
        if name.endswith(".txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def with_values(base: dict, **overrides) -> dict:
    v = copy.deepcopy(base)
    for dotted, value in overrides.items():
        node = v
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return v


def policy_and_binding(docs: list[dict]) -> tuple[dict, dict]:
    pols = [d for d in docs if d["kind"] == "MutatingAdmissionPolicy"]
    binds = [d for d in docs if d["kind"] == "MutatingAdmissionPolicyBinding"]
    if len(pols) != 1 or len(binds) != 1:
        raise AssertionError(f"expected one MutatingAdmissionPolicy and one binding, got {len(pols)}/{len(binds)}")
    if binds[0]["spec"]["policyName"] != pols[0]["metadata"]["name"]:
        raise AssertionError("the binding does not name the policy")
    return pols[0], binds[0]


def kyverno_policy(docs: list[dict]) -> dict:
    pols = [d for d in docs if d["kind"] == "Policy"]
    if len(pols) != 1:
        raise AssertionError(f"expected one Kyverno Policy, got {len(pols)}")
    return pols[0]


def plugin_template(values: dict, cluster: str) -> dict:
    """The container before its pod-dependent parts, for the CNPG-I plugin:
    the chart's container for the cluster's entry in values without
    walStorage/tablespaces, its volumeMounts empty (the plugin finds the
    volumes by mount path, as the policies do)."""
    entry = next((c for c in values.get("clusters") or [] if c["name"] == cluster), {"name": cluster})
    entry = {k: v for k, v in entry.items() if k not in ("walStorage", "tablespaces")}
    policy = kyverno_policy(render(with_values(values, injection__mode="kyverno", clusters=[entry])))
    (container,) = policy["spec"]["rules"][0]["mutate"]["patchStrategicMerge"]["spec"]["initContainers"]
    container["volumeMounts"] = []
    return container


def load_pod(name: str) -> dict:
    return yaml.safe_load((PODS / f"{name}.yaml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------- cases

class Runner:
    def __init__(self, verbose: bool):
        self.passed = 0
        self.failed = 0
        self.unavailable: list[str] = []
        self.verbose = verbose

    def case(self, name: str, fn) -> None:
        try:
            detail = fn()
        except AssertionError as e:
            self.failed += 1
            print(f"  FAIL  {name}\n        {e}")
            return
        self.passed += 1
        print(f"  ok    {name}" + (f" ({detail})" if detail and self.verbose else ""))


VOLUME_ARGS = ("--wal-path", "--tablespace")


def injected(before: dict, after: dict, name: str, path: str) -> dict:
    """The one container `path` appended to the init containers; everything
    else as it was (apart from the ServiceAccount plugin's token mount, which
    `before` already has)."""
    got = after["spec"].get("initContainers") or []
    had = before["spec"].get("initContainers") or []
    if [c["name"] for c in got] != [c["name"] for c in had] + [name]:
        raise AssertionError(f"{path}: init containers {[c['name'] for c in got]}, expected "
                             f"{[c['name'] for c in had] + [name]} (appended after CNPG's own)")
    rest_after = {**after, "spec": {**after["spec"], "initContainers": got[:-1]}}
    rest_before = {**before, "spec": {**before["spec"], "initContainers": had}}
    if rest_after != rest_before:
        changed = [k for k in set(rest_after["spec"]) | set(rest_before["spec"])
                   if rest_after["spec"].get(k) != rest_before["spec"].get(k)]
        if rest_after.get("metadata") != rest_before.get("metadata"):
            changed.append("metadata")
        raise AssertionError(f"{path}: changed more than the sidecar: {sorted(changed)}")
    return got[-1]


def comparable(container: dict, with_volume_args: bool) -> dict:
    """A container with its mounts as a map by mountPath and its volume
    arguments as a set (their order carries no meaning)."""
    c = copy.deepcopy(container)
    c["volumeMounts"] = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
    args = c.get("args") or []
    c["args"] = [a for a in args if not a.startswith(VOLUME_ARGS)]
    if with_volume_args:
        c["volumeArgs"] = sorted(a for a in args if a.startswith(VOLUME_ARGS))
    return c


def volume_args_of(pod: dict) -> list[str]:
    """The --wal-path/--tablespace arguments the pod's mounts call for."""
    pg = next(c for c in pod["spec"]["containers"] if c["name"] == "postgres")
    out = []
    for m in pg.get("volumeMounts") or []:
        p = m["mountPath"]
        if p == "/var/lib/postgresql/wal":
            out.append(f"--wal-path={p}")
        elif p.startswith("/var/lib/postgresql/tablespaces/"):
            out.append(f"--tablespace={p.rsplit('/', 1)[1]}={p}")
    return sorted(out)


def check_result(path: str, before: dict, after: dict, original: dict, name: str) -> dict:
    """The checks every injection path must pass on an instance pod."""
    c = injected(before, after, name, path)
    if not any(m["mountPath"] == TOKEN_PATH for m in c.get("volumeMounts") or []):
        raise AssertionError(f"{path}: the sidecar has no API token mount at {TOKEN_PATH}")
    if any(not m.get("readOnly") for m in c.get("volumeMounts") or []):
        raise AssertionError(f"{path}: a mount of the sidecar is not read-only")
    try:
        validate_pod(after)
    except AssertionError as e:
        raise AssertionError(f"{path}: {e}") from e
    want, got = qos_class(original), qos_class(after)
    if want != got:
        raise AssertionError(f"{path}: QoS class {got}, the pod without the sidecar is {want}")
    return c


def write_kyverno(out: Path) -> int:
    kyverno = kyverno_policy(render({"injection": {"mode": "kyverno"}, "clusters": KYVERNO_CLUSTERS}))
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(PODS.glob("cnpg-*.yaml")):
        pod, why = kyverno_admit(kyverno, service_account_admission(load_pod(path.stem)), NAMESPACE)
        if not why.startswith("mutated"):
            print(f"FAIL: {path.stem}: Kyverno did not inject: {why}", file=sys.stderr)
            return 1
        del pod["metadata"]["namespace"]
        (out / f"{path.stem}.json").write_text(json.dumps(pod, indent=1), encoding="utf-8")
    print(f"wrote the Kyverno-injected pods to {out}")
    return 0


# Kyverno cannot read the pod's volumes for its arguments: its values say
# what each listed cluster has, here as the fixtures have it.
KYVERNO_CLUSTERS = [{"name": "pg-main", "walStorage": True, "tablespaces": ["_scratch", "analytics"]},
                    {"name": "pg-reporting"}]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("-v", "--verbose", action="store_true", help="say why each pod was (not) mutated")
    p.add_argument("--write-kyverno", metavar="DIR",
                   help="only write, for each cnpg-*.yaml fixture, the pod as the ServiceAccount plugin and "
                        "the Kyverno policy (default values) leave it, without its namespace (for "
                        "hack/envtest.sh, which creates them on a real API server), and exit")
    a = p.parse_args()
    if a.write_kyverno:
        return write_kyverno(Path(a.write_kyverno))
    try:
        ad = Adapter()
        import helm_python  # noqa: F401
        import jmespath  # noqa: F401
        import jsonpatch  # noqa: F401
        import kubernetes_validate  # noqa: F401
    except ImportError as e:
        print(f"FAIL: {e}: needs cel-python, jsonpatch, jmespath, helm-python-sdk, kubernetes-validate "
              "(bash hack/check-chart.sh --install)", file=sys.stderr)
        return 1

    r = Runner(a.verbose)
    plugin = CnpgIPlugin()
    if plugin.why_not:
        msg = f"CNPG-I plugin path not available: {plugin.why_not}"
        if REQUIRE_CNPG_I:
            r.failed += 1
            print(f"FAIL: {msg}")
        else:
            r.unavailable.append(msg)
            print(f"NOTE: {msg}; the MutatingAdmissionPolicy and Kyverno paths are compared without it")

    example = yaml.safe_load(EXAMPLE_VALUES.read_text(encoding="utf-8"))
    instance_fixtures = sorted(p.stem for p in PODS.glob("cnpg-*.yaml"))
    if len(instance_fixtures) < 8:
        print(f"FAIL: only {len(instance_fixtures)} cnpg-*.yaml fixtures in {PODS}")
        return 1
    listed = KYVERNO_CLUSTERS
    # (title, values: Kyverno renders them with injection.mode=kyverno, the
    #  policy with mutatingAdmissionPolicy)
    value_sets = [
        ("default values (peer authentication; the policy for every cluster, Kyverno for the listed ones)",
         {}, {"clusters": listed}),
        ("example values (password authentication, other resources; pg-main listed without _scratch)",
         example, example),
    ]
    for title, policy_values, kyverno_values in value_sets:
        print(f"==> {title}")
        policy_values = with_values(policy_values, injection__mode="mutatingAdmissionPolicy")
        kyverno_values = with_values(kyverno_values, injection__mode="kyverno")
        try:
            policy, binding = policy_and_binding(render(policy_values))
            kyverno = kyverno_policy(render(kyverno_values))
        except Exception as e:  # a render failure is a test failure
            r.failed += 1
            print(f"  FAIL  render: {e}")
            continue
        name = (policy_values.get("sidecar") or {}).get("containerName", "cnpg-autoresize")
        listed_only = bool(policy_values.get("clusters"))
        kyverno_clusters = {c["name"]: c for c in kyverno_values["clusters"]}

        def literals(policy=policy):
            exprs = [(f"matchCondition {c['name']}", c["expression"]) for c in policy["spec"]["matchConditions"]]
            exprs += [(f"variable {v['name']}", v["expression"]) for v in policy["spec"]["variables"]]
            exprs += [(f"mutation {i}", m["jsonPatch"]["expression"]) for i, m in enumerate(policy["spec"]["mutations"])]
            problems = [p for w, e in exprs for p in check_homogeneous_literals(e, w)]
            if problems:
                raise AssertionError("; ".join(problems))
            return f"{len(exprs)} expressions"

        def settings(policy=policy, kyverno=kyverno):
            s = policy["spec"]
            if s.get("failurePolicy") != "Ignore":
                raise AssertionError(f"failurePolicy is {s.get('failurePolicy')}, not Ignore")
            if s.get("reinvocationPolicy") not in ("IfNeeded", "Never"):
                raise AssertionError("reinvocationPolicy missing")
            if [m["patchType"] for m in s["mutations"]] != ["JSONPatch"]:
                raise AssertionError("expected a single JSONPatch mutation")
            if kyverno["spec"].get("failurePolicy") != "Ignore":
                raise AssertionError("the Kyverno Policy's failurePolicy is not Ignore")
            return "failurePolicy Ignore, JSONPatch"

        r.case("policies: failurePolicy Ignore, one JSONPatch mutation", settings)
        r.case("policy: list and map literals are homogeneous", literals)

        def instance(fixture, policy=policy, binding=binding, kyverno=kyverno, values=policy_values,
                     kyverno_clusters=kyverno_clusters, name=name):
            original = load_pod(fixture)
            cluster = original["metadata"]["labels"]["cnpg.io/cluster"]
            admitted = service_account_admission(original)
            out, why = admit(ad, policy, binding, admitted, NAMESPACE)
            if why != "mutated":
                raise AssertionError(f"policy: not injected: {why}")
            by_policy = check_result("policy", admitted, out, original, name)
            again, _ = admit(ad, policy, binding, out, NAMESPACE)
            if again != out:
                raise AssertionError("policy: a reinvocation changed the pod again")
            if sorted(x for x in by_policy["args"] if x.startswith(VOLUME_ARGS)) != volume_args_of(original):
                raise AssertionError(f"policy: volume arguments {by_policy['args']}, "
                                     f"the pod calls for {volume_args_of(original)}")
            paths = ["policy"]
            if cluster in kyverno_clusters:
                out_k, why_k = kyverno_admit(kyverno, admitted, NAMESPACE)
                if not why_k.startswith("mutated"):
                    raise AssertionError(f"Kyverno: not injected: {why_k}")
                by_kyverno = check_result("Kyverno", admitted, out_k, original, name)
                again_k, _ = kyverno_admit(kyverno, out_k, NAMESPACE)
                if again_k != out_k:
                    raise AssertionError("Kyverno: a second admission changed the pod again")
                # Kyverno's arguments come from values: compared when the
                # values list what the pod has.
                entry = kyverno_clusters[cluster]
                said = sorted(([f"--wal-path=/var/lib/postgresql/wal"] if entry.get("walStorage") else [])
                              + [f"--tablespace={t}=/var/lib/postgresql/tablespaces/{t}"
                                 for t in entry.get("tablespaces") or []])
                same_args = said == volume_args_of(original)
                if comparable(by_policy, same_args) != comparable(by_kyverno, same_args):
                    cp, ck = comparable(by_policy, same_args), comparable(by_kyverno, same_args)
                    diff = [f"{k}: policy {json.dumps(cp.get(k))} / Kyverno {json.dumps(ck.get(k))}"
                            for k in sorted(set(cp) | set(ck)) if cp.get(k) != ck.get(k)]
                    raise AssertionError("the policy's and Kyverno's containers differ: " + "; ".join(diff))
                paths.append("Kyverno" + ("" if same_args else " (arguments as its values say)"))
            if not plugin.why_not:
                template = plugin_template(values, cluster)
                patched = plugin.inject(template, cnpg_cluster(original, values), original)
                # The operator creates the plugin's pod; admission follows.
                out_p = service_account_admission(patched)
                by_plugin = check_result("CNPG-I", admitted, out_p, original, name)
                if comparable(by_policy, True) != comparable(by_plugin, True):
                    cp, ck = comparable(by_policy, True), comparable(by_plugin, True)
                    diff = [f"{k}: policy {json.dumps(cp.get(k))} / CNPG-I {json.dumps(ck.get(k))}"
                            for k in sorted(set(cp) | set(ck)) if cp.get(k) != ck.get(k)]
                    raise AssertionError("the policy's and the CNPG-I plugin's containers differ: "
                                         + "; ".join(diff))
                paths.append("CNPG-I")
            return f"{qos_class(original)}; {', '.join(paths)}"

        for fixture in instance_fixtures + ["instance-data-only"]:
            r.case(f"{fixture}: injected on every path, same container, valid, same QoS",
                   lambda fixture=fixture: instance(fixture))

        def best_effort(policy=policy, binding=binding):
            pod = load_pod("cnpg-1.30-guaranteed")
            for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]:
                c.pop("resources", None)
            out, why = admit(ad, policy, binding, service_account_admission(pod), NAMESPACE)
            if qos_class(pod) != "BestEffort" or qos_class(out) != "Burstable":
                raise AssertionError(f"{qos_class(pod)} -> {qos_class(out)}")
            return "BestEffort -> Burstable"
        r.case("a pod without resources (BestEffort) becomes Burstable: evicted later, not sooner", best_effort)

        def wrong_values(kyverno_values=kyverno_values):
            # Values that claim a WAL volume and tablespaces the pod lacks:
            # the mounts still come from the pod, so the pod stays valid.
            bad = with_values(kyverno_values, clusters=[{"name": "pg-reporting", "walStorage": True,
                                                         "tablespaces": ["ghost"]}])
            pod = load_pod("instance-data-only")
            admitted = service_account_admission(pod)
            out, why = kyverno_admit(kyverno_policy(render(bad)), admitted, NAMESPACE)
            c = check_result("Kyverno", admitted, out, pod, "cnpg-autoresize")
            mounts = sorted(m["mountPath"] for m in c["volumeMounts"])
            return f"mounts {mounts}"
        r.case("Kyverno with values naming volumes the pod lacks: still a valid pod", wrong_values)

        def unchanged(fixture, namespace=NAMESPACE, pod=None, policy=policy, binding=binding, kyverno=kyverno):
            pod = service_account_admission(pod if pod is not None else load_pod(fixture))
            out, why = admit(ad, policy, binding, pod, namespace)
            if out != pod:
                raise AssertionError(f"policy changed the pod ({why})")
            out_k, why_k = kyverno_admit(kyverno, pod, namespace)
            if out_k != pod:
                raise AssertionError(f"Kyverno changed the pod ({why_k})")
            return f"policy: {why}; Kyverno: {why_k}"

        r.case("CNPG join Job pod: unchanged", lambda: unchanged("job-join"))
        r.case("CNPG initdb Job pod: unchanged", lambda: unchanged("job-initdb"))
        r.case("unrelated pod: unchanged", lambda: unchanged("unrelated"))
        r.case("instance pod already carrying the container: unchanged",
               lambda: unchanged("instance-already-injected"))

        def other_namespace():
            pod = load_pod("instance-data-only")
            pod["metadata"]["namespace"] = "other"
            return unchanged(None, namespace="other", pod=pod)
        r.case("instance pod in another namespace: unchanged", other_namespace)

        def conditions_alone(policy=policy):
            # Defence in depth: without the objectSelector, matchConditions
            # alone still refuse these pods.
            for f in ("job-join", "job-initdb", "unrelated", "instance-already-injected"):
                if failing_condition(ad, policy, load_pod(f), NAMESPACE) is None:
                    raise AssertionError(f"every matchCondition is true for {f}")
            if failing_condition(ad, policy, load_pod("cnpg-1.30-guaranteed"), NAMESPACE) is not None:
                raise AssertionError("a matchCondition is false for an instance pod")
            return "Job, unrelated and already-injected pods refused by matchConditions too"
        r.case("matchConditions alone refuse the Job, unrelated and already-injected pods", conditions_alone)

        if listed_only:
            r.case("instance pod of a cluster not in `clusters`: unchanged",
                   lambda: unchanged("instance-unlisted-cluster"))
        else:
            def unlisted(policy=policy, binding=binding, values=policy_values):
                pod = load_pod("instance-unlisted-cluster")
                admitted = service_account_admission(pod)
                out, why = admit(ad, policy, binding, admitted, NAMESPACE)
                if why != "mutated":
                    raise AssertionError(f"expected the container (empty clusters = every cluster): {why}")
                c = check_result("policy", admitted, out, pod, name)
                env = {e["name"]: e for e in c["env"]}
                if "PGPASSWORD" in env:
                    secret = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
                    if secret != "pg-other-autoresize":
                        raise AssertionError(f"password Secret {secret}, want pg-other-autoresize")
                elif env.get("PGHOST", {}).get("value") != "/controller/run" or \
                        "/controller" not in {m["mountPath"] for m in c["volumeMounts"]}:
                    raise AssertionError("peer authentication without CNPG's socket directory")
                return why
            r.case("instance pod of any cluster (empty `clusters`): injected", unlisted)

    for msg in r.unavailable:
        print(f"not available: {msg}")
    print(f"{r.passed} passed, {r.failed} failed" + (f", {len(r.unavailable)} path(s) not available"
                                                       if r.unavailable else ""))
    return 0 if r.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
