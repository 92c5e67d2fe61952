"""sd21.contract's environments: what a chart writes (`to_env`) is what the entrypoint reads
(`from_env`), each variable has one name, one type and one default, a bad value is refused
naming it, and model_image/README.md's table is the contract's."""
from __future__ import annotations

import ast
import dataclasses
import math
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given, settings, strategies as st

from sd21 import contract
from sd21.contract import (
    PROCESSES, CloudWatchEnv, ColdStartMetricsEnv, ContractError, GatewayEnv, JobsEnv, ServerEnv, StageEnv,
)
from sd21.contract.variable import OneOf, Pattern, Range, Var

ROOT = Path(__file__).resolve().parents[3]
CONTRACT = ROOT / "model_image" / "sd21" / "contract"
PARTS = (JobsEnv, CloudWatchEnv)


def fields_of(cls) -> list[tuple[dataclasses.Field, Var]]:
    return [(field, field.metadata["var"]) for field in dataclasses.fields(cls) if "var" in field.metadata]


def values_of(var: Var) -> st.SearchStrategy:
    """Any value the variable may hold (what its check accepts); never "" (that reads as unset)."""
    check = var.check
    if var.type is bool:
        return st.booleans()
    if isinstance(check, OneOf):
        return st.sampled_from(check.choices)
    if isinstance(check, Pattern):
        return st.from_regex(check.regex, fullmatch=True)
    if var.type is str:
        return st.text(min_size=1)
    if var.type is int:
        low = check.low + check.strict if isinstance(check, Range) else -(2**40)
        high = check.high if isinstance(check, Range) and check.high != math.inf else 2**40
        return st.integers(int(low), int(high))
    assert var.type is float
    low = check.low if isinstance(check, Range) else None
    strategy = st.floats(min_value=low, max_value=check.high if isinstance(check, Range) else None,
                         allow_nan=False, allow_infinity=False, exclude_min=bool(check and check.strict))
    return strategy


@st.composite
def environments(draw, cls):
    """An instance built as a chart builds one: some variables given (the required ones always)."""
    given_values = {}
    for field, var in fields_of(cls):
        if field.default is dataclasses.MISSING or draw(st.booleans()):
            unset = st.none() if var.default is None and field.default is not dataclasses.MISSING else st.nothing()
            given_values[field.name] = draw(unset | values_of(var))
    for field in dataclasses.fields(cls):
        if "part" in field.metadata and draw(st.booleans()):
            given_values[field.name] = draw(environments(field.metadata["part"]))
    instance = cls(**given_values)
    try:
        instance.check()
    except ContractError:
        assume(False)  # a relation the values break (a job queue without a bucket): refused, tested below
    return instance


@pytest.mark.parametrize("cls", PROCESSES + PARTS, ids=lambda cls: cls.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_what_a_chart_writes_the_process_reads_back(cls, data):
    written = data.draw(environments(cls))
    env = written.to_env()
    assert all(name.startswith("SD21_") and isinstance(value, str) for name, value in env.items())
    read = cls.from_env(env)
    assert read == written
    assert read.to_env() == env  # and nothing was added on the way


def test_a_pod_spec_names_what_was_given_in_that_order_and_nothing_else():
    env = ServerEnv(queue_size=4, port=8080, request_timeout_s=60, model_version=None,
                    jobs=JobsEnv(queue_url="https://sqs/q", bucket="b"), cloudwatch=CloudWatchEnv(cluster="c"))
    assert list(env.to_env().items()) == [
        ("SD21_QUEUE_SIZE", "4"), ("SD21_PORT", "8080"), ("SD21_REQUEST_TIMEOUT_S", "60"),
        ("SD21_JOBS_QUEUE_URL", "https://sqs/q"), ("SD21_BUCKET", "b"), ("SD21_CLOUDWATCH_CLUSTER", "c")]
    # As the chart wrote it: a whole number stays one (the template is unchanged), a flag is 0/1.
    assert ServerEnv(watchdog_factor=10, ui=False).to_env() == {"SD21_WATCHDOG_FACTOR": "10", "SD21_UI": "0"}
    assert ServerEnv().to_env() == {}


def test_unset_and_empty_are_the_one_default():
    assert ServerEnv.from_env({}) == ServerEnv.from_env({"SD21_QUEUE_SIZE": ""}) == ServerEnv()
    assert ServerEnv().request_timeout_s == GatewayEnv().request_timeout_s == 60
    assert ServerEnv().model_name == GatewayEnv().model_name == "sd21-512"


def test_every_name_is_defined_once_with_one_default():
    """Two processes may read one variable (the model name, the port, the bucket): through the
    same definition, so with the same type and default (or required where it cannot start without)."""
    seen: dict[str, Var] = {}
    for cls in PROCESSES + PARTS:
        names = [var.name for var, _ in cls.variables()]
        assert len(names) == len(set(names)), f"{cls.__name__} reads a variable twice"
        for field, var in fields_of(cls):
            assert seen.setdefault(var.name, var) is var, f"{var.name} is defined twice"
            assert field.default in (var.default, dataclasses.MISSING), (cls.__name__, var.name)
            assert var.name.startswith("SD21_") and var.doc
            assert var.default is None or var.check is None or var.check(var.default) is None, var.name


def bad_value(var: Var):
    """A value of the wrong type, or one its check refuses; None when any non-empty string will do."""
    return {int: "4.5", float: "fast", bool: "yes"}.get(var.type) or {OneOf: "tpu", Pattern: "bogus"}.get(
        type(var.check))


@pytest.mark.parametrize("var", sorted({var for cls in PROCESSES for var, _ in cls.variables() if bad_value(var)},
                                       key=lambda var: var.name), ids=lambda var: var.name)
def test_a_bad_value_is_refused_naming_the_variable(var):
    bad = bad_value(var)
    with pytest.raises(ContractError, match=var.name) as refused:
        var.parse(bad)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("environ, message", [
    ({"SD21_QUEUE_SIZE": "0"}, "SD21_QUEUE_SIZE='0': must be at least 1"),
    ({"SD21_PORT": "70000"}, "SD21_PORT='70000': must be 1..65535"),
    ({"SD21_WATCHDOG_MIN_S": "0"}, "SD21_WATCHDOG_MIN_S='0': must be above 0"),
    ({"SD21_DRAIN_GRACE_S": "nan"}, "SD21_DRAIN_GRACE_S='nan' is not a number"),
    ({"SD21_UI": "off"}, "SD21_UI='off' is not 0 or 1"),
    ({"SD21_CPU_FAULT": "explode:1"}, "SD21_CPU_FAULT='explode:1': must be error-after:N or hang-after:N"),
    ({"SD21_CLOUDWATCH_PERIOD_S": "-1"}, "SD21_CLOUDWATCH_PERIOD_S='-1': must be above 0"),
    ({"SD21_JOBS_URL_EXPIRES_S": "30"}, "SD21_JOBS_URL_EXPIRES_S='30': must be 60..604800"),
    ({"SD21_JOBS_QUEUE_URL": "https://sqs/q"}, "SD21_JOBS_QUEUE_URL needs SD21_BUCKET"),
])
def test_the_server_refuses_with_one_line(environ, message):
    with pytest.raises(ContractError) as refused:
        ServerEnv.from_env(environ)
    assert message in str(refused.value)


def test_every_missing_required_variable_is_named_at_once():
    with pytest.raises(ContractError, match="SD21_PROMETHEUS_URL, SD21_NODE_POOL, SD21_CLOUDWATCH_CLUSTER must be set"):
        ColdStartMetricsEnv.from_env({"SD21_CLOUDWATCH_PERIOD_S": "30"})
    with pytest.raises(ContractError, match="SD21_PROMETHEUS_URL='prometheus:9090': must be an http"):
        ColdStartMetricsEnv.from_env({"SD21_PROMETHEUS_URL": "prometheus:9090", "SD21_NODE_POOL": "inf2",
                                      "SD21_CLOUDWATCH_CLUSTER": "c"})


def test_an_entrypoint_prints_one_line_and_exits_2(capsys):
    from sd21.env import read

    with pytest.raises(SystemExit) as exited:
        read(StageEnv, {"SD21_STAGE_WORKERS": "many"})
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: SD21_STAGE_WORKERS='many' is not an integer\n"


def test_the_entrypoints_flags_default_to_the_environment_and_override_it():
    from sd21 import compile, server, stage

    assert vars(stage.parse_args([], environ={})) == {
        "backend": "neuron", "bucket": None, "model_name": "sd21-512", "version": None, "dest": "/model",
        "workers": 8, "chunk_mib": 8}
    args = server.parse_args(["--queue-size", "2"], environ=ServerEnv(queue_size=9, ui=False, port=81).to_env())
    assert (args.queue_size, args.no_ui, args.port, args.request_timeout_s) == (2, True, 81, 60)
    args = compile.parse_args([], environ={"SD21_WEIGHTS_SOURCE": "s3://b/w/", "SD21_IMAGE_NEURON_SDK": "2.31.1"})
    assert (args.weights_source, args.model_id, args.env.image_neuron_sdk) == (
        "s3://b/w/", contract.CompileEnv().model_id, "2.31.1")


def test_the_readme_table_is_the_contracts():
    readme = (ROOT / "model_image" / "README.md").read_text()
    block = readme.split("<!-- env:begin -->\n", 1)[1].split("<!-- env:end -->", 1)[0]
    assert block == contract.environment_table(), "run `python -m sd21.contract` and paste it into the README"


def test_the_contract_imports_only_the_standard_library_and_the_artifact():
    """The CDK app installs sd21 without its dependencies and builds its charts' env from here."""
    for path in CONTRACT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.module in (None, "variable", "environment", "artifact"), (path.name, node.module)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
                assert all(name.split(".")[0] in sys.stdlib_module_names | {"__future__"} for name in names), \
                    (path.name, names)
