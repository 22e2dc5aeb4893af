"""The CRD: crds/ is what crd.py renders, every field is described, and CEL rules are well-formed enough to load."""

from pathlib import Path

import yaml

from modelplane_operator.crd import CRD_FILES, model_crd, render_all

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_crds_folder_matches_source():
    for name, text in render_all().items():
        assert (CRDS / name).read_text() == text, f"crds/{name} is stale: run `make crds`"


def walk(schema, path="spec"):
    yield path, schema
    for name, prop in (schema.get("properties") or {}).items():
        yield from walk(prop, f"{path}.{name}")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def test_every_field_has_a_description():
    for make in CRD_FILES.values():
        root = make()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        missing = [p for p, s in walk(root["properties"]["spec"]) if not s.get("description")]
        missing += [p for p, s in walk(root["properties"]["status"], "status") if not s.get("description")]
        assert missing == [], make.__name__


def test_printer_columns_scale_subresource_short_name():
    crd = model_crd()
    version = crd["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Served", "GPUs", "Ready", "Phase", "Endpoint", "Age"]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert "mdl" in crd["spec"]["names"]["shortNames"]
    assert yaml.safe_load(yaml.safe_dump(crd)) == crd


# --- the CEL rules, evaluated -------------------------------------------------------------------------------------
# A small evaluator for the CEL the CRDs use (has, ?:, arithmetic, comparisons, in, && || !, list literals, indexing,
# size, string, type, startsWith, endsWith, contains, matches, all, exists, filter, and the Kubernetes quantity
# library's quantity, isQuantity, compareTo, isInteger, asInteger), so that the rules' logic is tested here;
# tests/integration checks the same against a real API server.

import re  # noqa: E402
from decimal import Decimal  # noqa: E402

import pytest  # noqa: E402

from modelplane_operator import quantity as quantities  # noqa: E402
from modelplane_operator.crd import agent_crd, agent_spec_with_defaults, model_spec_with_defaults  # noqa: E402

_TOKEN = re.compile(r"""\s*(?:(\d+)|'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|([A-Za-z_]\w*)|"""
                    r"""(==|!=|<=|>=|&&|\|\||[-+*/%<>!?:().,\[\]]))""")


class CelError(Exception):
    pass


class _Quantity:
    """The Kubernetes CEL quantity type, over modelplane_operator.quantity's parsing."""

    def __init__(self, text):
        try:
            self.value = quantities.parse(text)
        except (ValueError, ArithmeticError) as e:
            raise CelError(f"not a quantity: {text!r}") from e

    def compareTo(self, other):  # noqa: N802 (CEL's name)
        return (self.value > other.value) - (self.value < other.value)

    def isInteger(self):  # noqa: N802
        return self.value == self.value.to_integral_value() and abs(self.value) < 2**63

    def asInteger(self):  # noqa: N802
        if not self.isInteger():
            raise CelError("not an integer")
        return int(self.value)


def _is_quantity(text):
    try:
        _Quantity(text)
        return True
    except CelError:
        return False


def _cel_string(value):
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise CelError(f"no string() of {value!r}")
    return str(value)


def _cel_type(value):
    return {bool: "bool", int: "int", str: "string", list: "list", dict: "map"}[type(value)]


FUNCTIONS = {"size": len, "string": _cel_string, "quantity": _Quantity, "isQuantity": _is_quantity,
             "type": _cel_type}
METHODS = {"startsWith": lambda s, p: s.startswith(p), "endsWith": lambda s, p: s.endswith(p),
           "contains": lambda s, p: p in s, "matches": lambda s, p: _search(p, s), "size": len,
           "compareTo": lambda q, o: q.compareTo(o), "isInteger": lambda q: q.isInteger(),
           "asInteger": lambda q: q.asInteger()}


def _search(pattern: str, text: str) -> bool:
    """RE2's matches; Python warns of RE2's [[] and []] (a bracket each), so they are escaped here."""
    return re.search(pattern.replace("[[]", r"\[").replace("[]]", r"\]"), text) is not None


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text)


def _tokens(rule: str) -> list:
    out, pos = [], 0
    while pos < len(rule.rstrip()):
        m = _TOKEN.match(rule, pos)
        assert m, f"cannot tokenise {rule[pos:]!r}"
        num, single, double, ident, op = m.groups()
        text = single if single is not None else double
        out.append(("int", int(num)) if num else ("str", _unescape(text)) if text is not None else
                   ("id", ident) if ident else ("op", op))
        pos = m.end()
    return out + [("end", None)]


class _Cel:
    """Recursive descent over the tokens; each method returns a function of the variables."""

    def __init__(self, rule: str):
        self.toks, self.i = _tokens(rule), 0
        self.fn = self.ternary()
        assert self.peek() == ("end", None), rule

    def peek(self):
        return self.toks[self.i]

    def take(self, op=None):
        tok = self.toks[self.i]
        assert op is None or tok == ("op", op), (tok, op)
        self.i += 1
        return tok

    def accept(self, op):
        if self.peek() == ("op", op):
            self.i += 1
            return True
        return False

    def ternary(self):
        cond = self.logic("||", self.and_)
        if not self.accept("?"):
            return cond
        yes = self.ternary()
        self.take(":")
        no = self.ternary()
        return lambda env: yes(env) if cond(env) else no(env)

    def and_(self):
        return self.logic("&&", self.compare)

    def logic(self, op, sub):
        left = sub()
        while self.accept(op):
            left = self._logic(op, left, sub())
        return left

    @staticmethod
    def _logic(op, left, right):
        decisive = op == "||"  # true decides ||, false decides &&; an error on one side gives way to it

        def fn(env):
            try:
                a = left(env)
            except CelError:
                if right(env) is decisive:
                    return decisive
                raise
            return a if a is decisive else right(env)
        return fn

    def compare(self):
        left = self.arith(("+", "-"), self.arith_mul)
        ops = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
               "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
               "in": lambda a, b: a in b}
        while self.peek()[1] in ops and self.peek()[0] in ("op", "id"):
            f, right, prev = ops[self.take()[1]], self.arith(("+", "-"), self.arith_mul), left
            left = lambda env, f=f, a=prev, b=right: f(a(env), b(env))  # noqa: E731
        return left

    def arith_mul(self):
        return self.arith(("*", "/", "%"), self.unary)

    def arith(self, ops, sub):
        funcs = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
                 "/": lambda a, b: a // b, "%": lambda a, b: a % b}
        left = sub()
        while self.peek()[0] == "op" and self.peek()[1] in ops:
            f, right, prev = funcs[self.take()[1]], sub(), left

            def left(env, f=f, a=prev, b=right):
                x, y = a(env), b(env)
                if f in (funcs["/"], funcs["%"]) and y == 0:
                    raise CelError("division by zero")
                return f(x, y)
        return left

    def unary(self):
        if self.accept("!"):
            inner = self.unary()
            return lambda env: not inner(env)
        if self.accept("-"):
            inner = self.unary()
            return lambda env: -inner(env)
        return self.postfix()

    def postfix(self, fn=None):
        fn = fn or self.primary()
        while True:
            if self.accept("."):
                name = self.take()[1]
                if self.accept("("):
                    fn = self.method(fn, name)
                else:
                    fn = lambda env, base=fn, name=name: _select(base(env), name)  # noqa: E731
            elif self.accept("["):
                index = self.ternary()
                self.take("]")
                fn = lambda env, base=fn, index=index: _select(base(env), index(env))  # noqa: E731
            else:
                return fn

    def method(self, base, name):
        if name in ("all", "exists", "filter"):
            var = self.take()[1]
            self.take(",")
            body = self.ternary()
            self.take(")")
            pick = lambda env, x: body({**env, var: x})  # noqa: E731
            if name == "filter":
                return lambda env: [x for x in base(env) if pick(env, x)]
            agg = all if name == "all" else any
            return lambda env: agg(pick(env, x) for x in base(env))
        args = [] if self.accept(")") else self.args()
        impl = METHODS[name]
        return lambda env: impl(base(env), *(a(env) for a in args))

    def args(self, close=")"):
        out = [self.ternary()]
        while self.accept(","):
            out.append(self.ternary())
        self.take(close)
        return out

    def primary(self):
        kind, value = self.take()
        if kind in ("int", "str"):
            return lambda env: value
        if (kind, value) == ("op", "("):
            inner = self.ternary()
            self.take(")")
            return inner
        if (kind, value) == ("op", "["):
            items = [] if self.accept("]") else self.args("]")
            return lambda env: [item(env) for item in items]
        assert kind == "id", (kind, value)
        if value in ("true", "false"):
            return lambda env: value == "true"
        if value == "has":  # has(x.a.b): x.a must exist, b is tested
            self.take("(")
            base, names = self.primary(), []
            while self.accept("."):
                names.append(self.take()[1])
            self.take(")")

            def present(env, base=base, path=names[:-1], field=names[-1]):
                obj = base(env)
                for name in path:
                    obj = _select(obj, name)
                return isinstance(obj, dict) and field in obj
            return present
        if value in FUNCTIONS and self.accept("("):
            args, impl = self.args(), FUNCTIONS[value]
            return lambda env: impl(*(a(env) for a in args))
        if value in ("int", "string", "bool"):  # type names, as type() gives them
            return lambda env: value
        return lambda env: env[value] if value in env else _missing(value)


def _select(obj, name):
    if isinstance(obj, list) and isinstance(name, int) and 0 <= name < len(obj):
        return obj[name]
    if not isinstance(obj, dict) or name not in obj:
        raise CelError(f"no such key: {name}")
    return obj[name]


def _missing(name):
    raise CelError(f"undeclared reference: {name}")


def cel_violations(schema: dict, value, path: str = "spec") -> list[tuple[str, str]]:
    """(field, message) for every x-kubernetes-validations rule that `value` breaks, as the API server reports them."""
    out = []
    for v in schema.get("x-kubernetes-validations", []):
        try:
            ok = _Cel(v["rule"]).fn({"self": value}) is True
        except CelError:
            ok = False
        if not ok:
            out.append((path + v.get("fieldPath", ""), v["message"]))
    for sub_path, sub_schema, sub in _children(schema, value, path):
        out += cel_violations(sub_schema, sub, sub_path)
    return out


def _children(schema: dict, value, path: str):
    if isinstance(value, dict):
        for name, sub in value.items():
            if name in (schema.get("properties") or {}):
                yield f"{path}.{name}", schema["properties"][name], sub
            elif isinstance(schema.get("additionalProperties"), dict):
                yield f"{path}[{name}]", schema["additionalProperties"], sub
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield f"{path}[{i}]", schema["items"], item


def openapi_violations(schema: dict, value, path: str = "spec") -> list[tuple[str, str]]:
    """(field, keyword) for the OpenAPI value validations the CRDs use (pattern, enum, minimum, maximum, maxLength,
    minLength, minItems, maxItems, maxProperties, required) that `value` breaks."""
    out = []
    checks = {
        "pattern": lambda v, p: not isinstance(v, str) or _search(p, v),
        "enum": lambda v, e: v in e,
        "minimum": lambda v, m: not isinstance(v, (int, float)) or v >= m,
        "maximum": lambda v, m: not isinstance(v, (int, float)) or v <= m,
        "minLength": lambda v, m: not isinstance(v, str) or len(v) >= m,
        "maxLength": lambda v, m: not isinstance(v, str) or len(v) <= m,
        "minItems": lambda v, m: not isinstance(v, list) or len(v) >= m,
        "maxItems": lambda v, m: not isinstance(v, list) or len(v) <= m,
        "maxProperties": lambda v, m: not isinstance(v, dict) or len(v) <= m,
        "required": lambda v, r: not isinstance(v, dict) or all(n in v for n in r),
    }
    out += [(path, keyword) for keyword, check in checks.items() if keyword in schema
            and not check(value, schema[keyword])]
    for sub_path, sub_schema, sub in _children(schema, value, path):
        out += openapi_violations(sub_schema, sub, sub_path)
    return out


def _spec_schema(crd: dict) -> dict:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def admission(spec: dict) -> list[tuple[str, str]]:
    return cel_violations(_spec_schema(model_crd()), model_spec_with_defaults(spec))


def refusals(spec: dict, kind: str = "Model") -> list[str]:
    """The fields the API server names in refusing `spec` (OpenAPI checks and CEL rules)."""
    schema, spec = ((_spec_schema(model_crd()), model_spec_with_defaults(spec)) if kind == "Model" else
                    (_spec_schema(agent_crd()), agent_spec_with_defaults(spec)))
    return sorted({f for f, _ in openapi_violations(schema, spec) + cel_violations(schema, spec)})


SOURCE = "hf://Qwen/Qwen2.5-7B-Instruct"


def test_cel_evaluator_agrees_with_the_established_rules():
    assert admission({"source": SOURCE}) == []
    assert [f for f, _ in admission({"source": "ftp://x/y"})] == ["spec.source"]
    assert admission({"source": SOURCE, "gpus": 0, "gpuType": "A100"}) == [("spec.gpuType", "gpuType requires gpus > 0")]
    assert [f for f, _ in admission({"source": SOURCE, "engineArgs": {"enableAutoToolChoice": True}})] == [
        "spec.engineArgs.toolCallParser"]
    assert [f for f, _ in admission({"source": SOURCE, "engineArgs": {"extraArgs": ["--api-key=x"]}})] == [
        "spec.engineArgs.extraArgs"]


@pytest.mark.parametrize("gpus,args,field", [
    (4, {"tensorParallelSize": 2, "dataParallelSize": 2}, None),
    (8, {"tensorParallelSize": 2, "pipelineParallelSize": 2, "dataParallelSize": 2}, None),
    (4, {"dataParallelSize": 2}, None),
    (4, {"pipelineParallelSize": 2, "dataParallelSize": 2}, None),
    (0, {"dataParallelSize": 3}, None),
    (4, {"tensorParallelSize": 4, "dataParallelSize": 2}, "spec.engineArgs.tensorParallelSize"),  # 8 GPUs wanted
    (4, {"tensorParallelSize": 2}, "spec.engineArgs.tensorParallelSize"),  # 2 of 4 GPUs idle
    (4, {"tensorParallelSize": 2, "pipelineParallelSize": 1}, "spec.engineArgs.tensorParallelSize"),
    (2, {"dataParallelSize": 4}, "spec.engineArgs.dataParallelSize"),
    (6, {"dataParallelSize": 4}, "spec.engineArgs.dataParallelSize"),
    (4, {"prefillContextParallelSize": 8}, "spec.engineArgs.prefillContextParallelSize"),
    (6, {"pipelineParallelSize": 4}, "spec.engineArgs.pipelineParallelSize"),
])
def test_parallel_sizes_must_use_exactly_the_replicas_gpus(gpus, args, field):
    """vLLM asks for tensor × pipeline × prefill-context × data parallel GPUs: more than the pod has crash-loops it."""
    fields = [f for f, _ in admission({"source": SOURCE, "gpus": gpus, "engineArgs": args})]
    assert fields == ([field] if field else []), fields


def test_tls_and_headless_server_options_refused_with_the_field_named():
    for args, field in [({"sslCertfile": "/tls/crt"}, "sslCertfile"), ({"sslKeyfile": "/tls/key"}, "sslKeyfile"),
                        ({"headless": True}, "headless")]:
        [(path, message)] = admission({"source": SOURCE, "engineArgs": args})
        assert path == f"spec.engineArgs.{field}" and message.startswith(f"{field} is not supported: ")
    assert admission({"source": SOURCE, "engineArgs": {"headless": False}}) == []  # renders nothing
    for arg in ("--ssl-certfile=/x", "--ssl_keyfile", "--headless"):
        [(path, message)] = admission({"source": SOURCE, "engineArgs": {"extraArgs": [arg, "x"]}})
        assert path == "spec.engineArgs.extraArgs" and "--ssl-certfile, --ssl-keyfile, --headless" in message
    assert admission({"source": SOURCE, "engineArgs": {"extraArgs": ["--ssl-ca-certs", "/x"]}}) == []


def test_every_rule_is_one_the_evaluator_reads():
    def rules(schema):
        yield from (v["rule"] for v in schema.get("x-kubernetes-validations", []))
        for sub in [*(schema.get("properties") or {}).values(), schema.get("items"), schema.get("additionalProperties")]:
            if isinstance(sub, dict):
                yield from rules(sub)
    for make in CRD_FILES.values():
        for rule in rules(make()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]):
            _Cel(rule)


# Specs whose children the API server accepts: the schema must accept them too.
ADMITTED = [
    {"startupTimeoutSeconds": 86400, "engineArgs": {"shutdownTimeout": 86400, "extraArgs": ["--shutdown-timeout=30"]}},
    {"engineArgs": {"shutdownTimeout": -1, "extraArgs": ["--shutdown_timeout=86400", "--shutdown-timeout", "5"]}},
    {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 1, "memory": "1Gi"}}},
    {"resources": {"requests": {"example.com/fpga": 2}, "limits": {"example.com/fpga": "2", "cpu": "0"}}},
    {"resources": {"limits": {"example.com/fpga": 1}}, "gpuResourceName": "amd.com/gpu"},
    {"resources": {"limits": {"amd.com/gpu": 1}}},  # not the GPU resource of this Model
    {"env": [{"name": "A.b-c_1", "value": "x"}, {"name": "K", "value": "", "valueFrom": {"secretKeyRef": {
        "name": "s.example", "key": ".key_1"}}},
             {"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app.kubernetes.io/name']"}}},
             {"name": "A", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                      "fieldPath": "metadata.annotations['Example.com/x']"}}},
             {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
             {"name": "M", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
             {"name": "C", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": 1}}},
             {"name": "C2", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k", "optional": True}}}]},
    {"nodeSelector": {"example.com/pool": "a", "zone": ""}, "gpuType": "NVIDIA-H100-80GB-HBM3"},
    {"tolerations": [{"operator": "Exists"}, {"key": "example.com/spot", "value": "true", "effect": "NoExecute",
                                              "tolerationSeconds": 30}, {"key": "k", "operator": "Exists"}]},
    {"priorityClassName": "", "runtimeClassName": "nvidia.example", "gpuResourceName": ""},
    {"shmSize": 0}, {"shmSize": "64Mi"}, {"cache": {"claimName": ""}},
    {"apiKeySecretRef": {"name": "keys", "key": "api.key"}},
    {"affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                      {"key": "example.com/gen", "operator": "Gt", "values": ["3"]},
                                      {"key": "spot", "operator": "DoesNotExist"}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {}}]},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {
            "labelSelector": {"matchLabels": {"modelplane.dev/model": "x"}},
            "namespaces": ["team-a"], "topologyKey": "kubernetes.io/hostname"}}]},
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
            "namespaceSelector": {}, "topologyKey": "zone"}]}}},
]


@pytest.mark.parametrize("spec", ADMITTED)
def test_specs_kubernetes_accepts_are_admitted(spec):
    assert refusals({"source": SOURCE, **spec}) == []


# Specs whose Deployment the API server would refuse: refused at admission, the field named.
REFUSED = [
    ({"startupTimeoutSeconds": 2**31 - 1}, "spec.startupTimeoutSeconds"),  # progressDeadlineSeconds overflows
    ({"engineArgs": {"shutdownTimeout": 2**63 - 1}}, "spec.engineArgs.shutdownTimeout"),
    ({"engineArgs": {"extraArgs": ["--shutdown-timeout=99999999999999999999"]}}, "spec.engineArgs.extraArgs"),
    ({"engineArgs": {"extraArgs": ["--shutdown-timeout=86401"]}}, "spec.engineArgs.extraArgs"),
    ({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}}, "spec.resources"),
    ({"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}, "spec.resources"),
    ({"resources": {"limits": {"nvidia.com/gpu": 2}}}, "spec.resources"),
    ({"gpuResourceName": "amd.com/gpu", "resources": {"requests": {"amd.com/gpu": 1}}}, "spec.resources"),
    ({"resources": {"requests": {"example.com/fpga": 1}}}, "spec.resources"),  # no limit
    ({"resources": {"requests": {"example.com/fpga": 1}, "limits": {"example.com/fpga": 2}}}, "spec.resources"),
    ({"resources": {"limits": {"bogus": 1}}}, "spec.resources.limits"),
    ({"resources": {"limits": {"example.kubernetes.io/x": 1}}}, "spec.resources.limits"),
    ({"resources": {"limits": {"example.com/fpga": "1.5"}}}, "spec.resources.limits"),
    ({"resources": {"limits": {"cpu": "-1"}}}, "spec.resources.limits[cpu]"),
    ({"env": [{"name": "E", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
     "spec.env[0].valueFrom"),
    ({"env": [{"name": "E", "valueFrom": {}}]}, "spec.env[0].valueFrom"),
    ({"env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"},
                                          "configMapKeyRef": {"name": "c", "key": "k"}}}]}, "spec.env[0].valueFrom"),
    ({"env": [{"name": "A=B", "value": "x"}]}, "spec.env[0].name"),
    ({"env": [{"name": "1A", "value": "x"}]}, "spec.env[0].name"),
    ({"env": [{"name": "..A", "value": "x"}]}, "spec.env[0].name"),
    ({"env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "Bad_Name", "key": "k"}}}]},
     "spec.env[0].valueFrom.secretKeyRef.name"),
    ({"env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "s", "key": ".."}}}]},
     "spec.env[0].valueFrom.secretKeyRef.key"),
    ({"env": [{"name": "E", "valueFrom": {"fieldRef": {"fieldPath": "spec.containers"}}}]},
     "spec.env[0].valueFrom.fieldRef.fieldPath"),
    ({"env": [{"name": "E", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['bad key']"}}}]},
     "spec.env[0].valueFrom.fieldRef.fieldPath"),
    ({"env": [{"name": "E", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1Mi"}}}]},
     "spec.env[0].valueFrom.resourceFieldRef.divisor"),
    ({"env": [{"name": "E", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1m"}}}]},
     "spec.env[0].valueFrom.resourceFieldRef.divisor"),
    ({"nodeSelector": {"bad key": "a"}}, "spec.nodeSelector"),
    ({"nodeSelector": {"zone": "bad value!"}}, "spec.nodeSelector[zone]"),
    ({"nodeSelector": {"a" * 254 + "/b": "x"}}, "spec.nodeSelector"),  # a prefix of more than 253 characters
    ({"gpuType": "NVIDIA H100"}, "spec.gpuType"),
    ({"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}, "spec.tolerations[0].value"),
    ({"tolerations": [{"operator": "Equal", "value": "v"}]}, "spec.tolerations[0].operator"),
    ({"tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]}, "spec.tolerations[0].effect"),
    ({"tolerations": [{"key": "bad key", "operator": "Exists"}]}, "spec.tolerations[0].key"),
    ({"tolerations": [{"key": "k", "value": "bad value!"}]}, "spec.tolerations[0].value"),
    ({"priorityClassName": "Bad_Name"}, "spec.priorityClassName"),
    ({"runtimeClassName": "Bad_Name"}, "spec.runtimeClassName"),
    ({"gpuResourceName": "bad"}, "spec.gpuResourceName"),
    ({"gpuResourceName": "cpu"}, "spec.gpuResourceName"),
    ({"gpuResourceName": "kubernetes.io/gpu"}, "spec.gpuResourceName"),
    ({"gpuResourceName": "requests.amd.com/gpu"}, "spec.gpuResourceName"),
    ({"shmSize": "-1Gi"}, "spec.shmSize"),
    ({"shmSize": -1}, "spec.shmSize"),
    ({"apiKeySecretRef": {"name": "Bad_Name"}}, "spec.apiKeySecretRef.name"),
    ({"apiKeySecretRef": {"name": "key", "key": "a/b"}}, "spec.apiKeySecretRef.key"),
    ({"source": "s3://bucket/m", "credentialsSecretRef": {"name": "Bad_Name"}}, "spec.credentialsSecretRef.name"),
    ({"cache": {"claimName": "Bad_Name"}}, "spec.cache.claimName"),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}},
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In"}]}]}}}},
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
     ".matchExpressions[0].values"),
    ({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0}]}}},
     "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight"),
    ({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "bad key"}]}}},
     "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey"),
    ({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "topologyKey": "zone", "labelSelector": {"matchExpressions": [{"key": "a", "operator": "Exists",
                                                                       "values": ["x"]}]}}]}}},
     "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector"
     ".matchExpressions[0].values"),
]


@pytest.mark.parametrize("spec,field", REFUSED, ids=[f for _, f in REFUSED])
def test_specs_kubernetes_refuses_in_a_deployment_are_refused_at_admission(spec, field):
    assert refusals({"source": SOURCE, **spec}) == [field]


@pytest.mark.parametrize("spec,field", [
    ({"serviceAccountName": "Bad_SA"}, "spec.serviceAccountName"),
    ({"env": [{"name": "E", "value": "x", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]},
     "spec.env[0].valueFrom"),
    ({"resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "250m"}}}, "spec.resources"),
    ({"serviceAccountName": ""}, None),
    ({"models": [{"name": "m", "adapter": "Bad_Name"}]}, "spec.models[0].adapter"),
    ({"models": [{"name": "m", "adapter": "a" * 64}]}, "spec.models[0].adapter"),
    ({"models": [{"name": "m"}, {"name": "m", "adapter": "sql"}]}, None),  # a Model's base and its adapter
    ({"resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "1", "example.com/fpga": 1}}}, None),
])
def test_agent_specs_kubernetes_refuses_are_refused_at_admission(spec, field):
    assert refusals({"image": "agent:1", "models": [{"name": "m"}], **spec}, "Agent") == ([field] if field else [])


def test_an_agent_may_list_a_models_base_and_its_adapters_each_once():
    """The API server keys spec.models by (name, namespace, adapter), refusing duplicates; a list-map key must be
    required or have a default, or the API server refuses the CRD."""
    models = _spec_schema(agent_crd())["properties"]["models"]
    assert models["x-kubernetes-list-map-keys"] == ["name", "namespace", "adapter"]
    item = models["items"]
    assert all(k in item["required"] or "default" in item["properties"][k] for k in models["x-kubernetes-list-map-keys"])
    assert agent_spec_with_defaults({"image": "a", "models": [{"name": "m"}]})["models"] == [
        {"name": "m", "namespace": "", "adapter": ""}]
