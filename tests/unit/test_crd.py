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
# A small evaluator for the CEL the CRDs use (has, ?:, arithmetic, comparisons, && || !, size, startsWith, matches,
# all, filter), so that the rules' logic is tested here; tests/integration checks the same against a real API server.

import re  # noqa: E402

import pytest  # noqa: E402

from modelplane_operator.crd import model_spec_with_defaults  # noqa: E402

_TOKEN = re.compile(r"\s*(?:(\d+)|'((?:[^'\\]|\\.)*)'|([A-Za-z_]\w*)|(==|!=|<=|>=|&&|\|\||[-+*/%<>!?:().,]))")


class CelError(Exception):
    pass


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text)


def _tokens(rule: str) -> list:
    out, pos = [], 0
    while pos < len(rule.rstrip()):
        m = _TOKEN.match(rule, pos)
        assert m, f"cannot tokenise {rule[pos:]!r}"
        num, text, ident, op = m.groups()
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
               "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
        while self.peek()[0] == "op" and self.peek()[1] in ops:
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
        while self.accept("."):
            name = self.take()[1]
            if self.accept("("):
                fn = self.method(fn, name)
            else:
                fn = lambda env, base=fn, name=name: _select(base(env), name)  # noqa: E731
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
        impl = {"startsWith": lambda s, p: s.startswith(p), "endsWith": lambda s, p: s.endswith(p),
                "matches": lambda s, p: re.search(p, s) is not None, "size": len}[name]
        return lambda env: impl(base(env), *(a(env) for a in args))

    def args(self):
        out = [self.ternary()]
        while self.accept(","):
            out.append(self.ternary())
        self.take(")")
        return out

    def primary(self):
        kind, value = self.take()
        if kind in ("int", "str"):
            return lambda env: value
        if (kind, value) == ("op", "("):
            inner = self.ternary()
            self.take(")")
            return inner
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
        if value == "size":
            self.take("(")
            arg = self.args()[0]
            return lambda env: len(arg(env))
        return lambda env: env[value] if value in env else _missing(value)


def _select(obj, name):
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
    if isinstance(value, dict):
        for name, sub in value.items():
            if name in (schema.get("properties") or {}):
                out += cel_violations(schema["properties"][name], sub, f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += cel_violations(schema["items"], item, f"{path}[{i}]")
    return out


def admission(spec: dict) -> list[tuple[str, str]]:
    schema = model_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return cel_violations(schema, model_spec_with_defaults(spec))


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
