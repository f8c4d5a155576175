#!/usr/bin/env python3
"""Tests the chart's sidecar injection without a cluster (run by hack/check-chart.sh).

It renders the chart with the Helm v4 SDK (helm-python-sdk), takes its
MutatingAdmissionPolicy and binding, and plays the API server's admission of
the sample pods in tests/packaging/pods/ with a CEL interpreter (cel-python):

  1. matchConstraints (resource rules, objectSelector) and the binding's
     matchResources (namespaceSelector) -- label selectors, done in Python;
  2. matchConditions, evaluated by CEL with `object`, `oldObject`, `request`;
  3. the policy's variables (in order, as `variables.<name>`), then each
     mutation's JSONPatch expression, whose result is applied with the
     `jsonpatch` package (RFC 6902);
  4. a reinvocation: the policy again on its own output (must change nothing).

Expectations: an instance pod gets exactly one container appended to
initContainers (after CNPG's bootstrap-controller), equal to the container the
Kyverno variant renders for the same cluster from the same values (plus the
API token mount the policy copies from the postgres container); the patched
pod is a valid Pod of Kubernetes 1.36 (kubernetes-validate, strict); Job
pods, unrelated pods, pods of other namespaces or of unlisted clusters, and
pods that already carry the container are left unchanged.

THE ADAPTER (what cel-python lacks, and exactly how it is supplied; the
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

Exit status 0 when every case passed. The last line is "N passed, N failed".
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
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


def merged(base: dict, **overrides) -> dict:
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


def kyverno_containers(docs: list[dict]) -> dict[str, dict]:
    pols = [d for d in docs if d["kind"] == "Policy"]
    if len(pols) != 1:
        raise AssertionError(f"expected one Kyverno Policy, got {len(pols)}")
    out = {}
    for rule in pols[0]["spec"]["rules"]:
        cluster = rule["match"]["any"][0]["resources"]["selector"]["matchLabels"]["cnpg.io/cluster"]
        (c,) = rule["mutate"]["patchStrategicMerge"]["spec"]["initContainers"]
        out[cluster] = c
    return out


def load_pod(name: str) -> dict:
    return yaml.safe_load((PODS / f"{name}.yaml").read_text(encoding="utf-8"))


def token_mounts(pod: dict) -> list[dict]:
    pg = [c for c in pod["spec"]["containers"] if c["name"] == "postgres"]
    return [{"name": m["name"], "mountPath": m["mountPath"], "readOnly": True}
            for m in (pg[0].get("volumeMounts") or []) if m["mountPath"] == TOKEN_PATH] if pg else []


def validate_pod(pod: dict) -> None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(pod, "1.36.0", strict=True)
    except kubernetes_validate.ValidationError as e:  # type: ignore[attr-defined]
        raise AssertionError(f"patched pod is not a valid 1.36 Pod: {str(e).splitlines()[0]}") from e


# --------------------------------------------------------------------- cases

class Runner:
    def __init__(self, verbose: bool):
        self.passed = 0
        self.failed = 0
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


def expect_injected(ad, policy, binding, pod_name, expected_container, namespace=NAMESPACE):
    pod = load_pod(pod_name)
    out, why = admit(ad, policy, binding, pod, namespace)
    if why != "mutated":
        raise AssertionError(f"not injected: {why}")
    want = copy.deepcopy(pod)
    container = copy.deepcopy(expected_container)
    container["volumeMounts"] = container.get("volumeMounts", []) + token_mounts(pod)
    want["spec"].setdefault("initContainers", []).append(container)
    if out != want:
        got = out["spec"].get("initContainers", [])
        diff = [f"initContainers names: {[c['name'] for c in got]}"]
        if got:
            g = got[-1]
            for k in sorted(set(g) | set(container)):
                if g.get(k) != container.get(k):
                    diff.append(f"{k}: got {json.dumps(g.get(k))} want {json.dumps(container.get(k))}")
        for k in ("metadata", "containers", "volumes"):
            if out.get(k, out["spec"].get(k)) != want.get(k, want["spec"].get(k)):
                diff.append(f"{k} changed")
        raise AssertionError("; ".join(diff))
    if [c["name"] for c in out["spec"]["initContainers"]][0] != pod["spec"]["initContainers"][0]["name"]:
        raise AssertionError("the sidecar is not after CNPG's init containers")
    validate_pod(out)
    # Reinvocation: the policy again on its own output changes nothing.
    again, why_again = admit(ad, policy, binding, out, namespace)
    if again != out:
        raise AssertionError(f"reinvocation changed the pod again ({why_again})")
    args = [a for a in container["args"] if a.startswith(("--data-path", "--wal-path", "--tablespace"))]
    return f"{why}; reinvocation: {why_again}; {' '.join(args)}"


def expect_unchanged(ad, policy, binding, pod_name, namespace=NAMESPACE, pod=None):
    pod = pod if pod is not None else load_pod(pod_name)
    out, why = admit(ad, policy, binding, pod, namespace)
    if out != pod:
        raise AssertionError(f"pod changed ({why})")
    return why


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("-v", "--verbose", action="store_true", help="say why each pod was (not) mutated")
    a = p.parse_args()
    try:
        ad = Adapter()
        import helm_python  # noqa: F401
        import jsonpatch  # noqa: F401
        import kubernetes_validate  # noqa: F401
    except ImportError as e:
        print(f"FAIL: {e}: needs cel-python, jsonpatch, helm-python-sdk, kubernetes-validate "
              "(bash hack/check-chart.sh --install)", file=sys.stderr)
        return 1

    r = Runner(a.verbose)
    example = yaml.safe_load(EXAMPLE_VALUES.read_text(encoding="utf-8"))
    listed = [{"name": "pg-main", "walStorage": True, "tablespaces": ["analytics"]},
              {"name": "pg-reporting"},
              {"name": "pg-odd", "walStorage": True, "tablespaces": ["_scratch", "events"]}]
    # (title, values for the policy, values for the Kyverno reference)
    value_sets = [
        ("default values (no clusters listed)", {},
         {"clusters": listed, "injection": {"mode": "kyverno"}}),
        ("example values (clusters listed, a custom password Secret)",
         merged(example, injection__mode="mutatingAdmissionPolicy", clusters=example["clusters"] + listed[2:]),
         merged(example, clusters=example["clusters"] + listed[2:])),
    ]
    for title, policy_values, kyverno_values in value_sets:
        print(f"==> {title}")
        try:
            policy, binding = policy_and_binding(render(policy_values))
            want = kyverno_containers(render(kyverno_values))
        except Exception as e:  # a render failure is a test failure
            r.failed += 1
            print(f"  FAIL  render: {e}")
            continue
        listed_only = bool(policy_values.get("clusters"))

        def literals(policy=policy):
            exprs = [(f"matchCondition {c['name']}", c["expression"]) for c in policy["spec"]["matchConditions"]]
            exprs += [(f"variable {v['name']}", v["expression"]) for v in policy["spec"]["variables"]]
            exprs += [(f"mutation {i}", m["jsonPatch"]["expression"]) for i, m in enumerate(policy["spec"]["mutations"])]
            problems = [p for w, e in exprs for p in check_homogeneous_literals(e, w)]
            if problems:
                raise AssertionError("; ".join(problems))
            return f"{len(exprs)} expressions"

        def settings(policy=policy):
            s = policy["spec"]
            if s.get("failurePolicy") != "Ignore":
                raise AssertionError(f"failurePolicy is {s.get('failurePolicy')}, not Ignore")
            if s.get("reinvocationPolicy") not in ("IfNeeded", "Never"):
                raise AssertionError("reinvocationPolicy missing")
            if [m["patchType"] for m in s["mutations"]] != ["JSONPatch"]:
                raise AssertionError("expected a single JSONPatch mutation")
            return "failurePolicy Ignore, JSONPatch"

        r.case("policy: failurePolicy Ignore, one JSONPatch mutation", settings)
        r.case("policy: list and map literals are homogeneous", literals)
        r.case("instance pod with data + WAL + tablespace: the Kyverno container of pg-main",
               lambda: expect_injected(ad, policy, binding, "instance-data-wal-tablespace", want["pg-main"]))
        r.case("instance pod with data only: the Kyverno container of pg-reporting",
               lambda: expect_injected(ad, policy, binding, "instance-data-only", want["pg-reporting"]))
        r.case("instance pod with two tablespaces, one named _scratch (volume tbs-1scratch)",
               lambda: expect_injected(ad, policy, binding, "instance-two-tablespaces", want["pg-odd"]))
        r.case("CNPG join Job pod: unchanged", lambda: expect_unchanged(ad, policy, binding, "job-join"))
        r.case("CNPG initdb Job pod: unchanged", lambda: expect_unchanged(ad, policy, binding, "job-initdb"))
        r.case("unrelated pod: unchanged", lambda: expect_unchanged(ad, policy, binding, "unrelated"))

        def conditions_alone(policy=policy):
            # Defence in depth: without the objectSelector, matchConditions
            # alone still refuse these pods.
            for name in ("job-join", "job-initdb", "unrelated"):
                if failing_condition(ad, policy, load_pod(name), NAMESPACE) is None:
                    raise AssertionError(f"every matchCondition is true for {name}")
            if failing_condition(ad, policy, load_pod("instance-data-wal-tablespace"), NAMESPACE) is not None:
                raise AssertionError("a matchCondition is false for an instance pod")
            return "Job and unrelated pods refused by matchConditions too"
        r.case("matchConditions alone refuse the Job and unrelated pods", conditions_alone)
        r.case("instance pod already carrying the container: unchanged",
               lambda: expect_unchanged(ad, policy, binding, "instance-already-injected"))
        def other_namespace():
            pod = load_pod("instance-data-only")
            pod["metadata"]["namespace"] = "other"
            return expect_unchanged(ad, policy, binding, None, namespace="other", pod=pod)
        r.case("instance pod in another namespace: unchanged", other_namespace)
        if listed_only:
            r.case("instance pod of a cluster not in `clusters`: unchanged",
                   lambda: expect_unchanged(ad, policy, binding, "instance-unlisted-cluster"))
        else:
            def unlisted():
                pod = load_pod("instance-unlisted-cluster")
                out, why = admit(ad, policy, binding, pod, NAMESPACE)
                names = [c["name"] for c in out["spec"].get("initContainers", [])]
                if why != "mutated" or names.count(policy_values.get("sidecar", {}).get("containerName", "cnpg-autoresize")) != 1:
                    raise AssertionError(f"expected the container (empty clusters = every cluster): {why}")
                env = {e["name"]: e for e in out["spec"]["initContainers"][-1]["env"]}
                secret = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
                if secret["name"] != "pg-other-autoresize":
                    raise AssertionError(f"password Secret {secret['name']}, want pg-other-autoresize")
                validate_pod(out)
                return why
            r.case("instance pod of any cluster (empty `clusters`): injected, Secret <cluster>-autoresize", unlisted)

    print(f"{r.passed} passed, {r.failed} failed")
    return 0 if r.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
