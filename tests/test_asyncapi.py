"""``docs/asyncapi.yaml``, the MQTT API as an AsyncAPI 3.0 document, checked for real.

- The official parser, ``@asyncapi/parser`` from npm, validates the document against
  the AsyncAPI 3.0 schema and its rules (run by a small Node script). The test installs
  it, pinned, into ``.cache/asyncapi/`` (git-ignored) on first use; it skips only when
  ``npm`` is missing. A broken copy of the document must be reported invalid.
- Every message example in the document, and messages made by the code itself (the
  shipped example commands, real static and dynamic results, a call, errors,
  ``describe``, wrapped in the real reply envelope), validate against the payload
  schemas (Ajv with ajv-formats, the JSON Schema validator the parser uses).
- Every ``cmd`` of ``ingress.commands.COMMANDS`` has its message, and every error code
  of ``PROTOCOL.md`` (and of the code) is in the document's error code enum.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "asyncapi.yaml"
PROTOCOL = ROOT.parent / "shared" / "PROTOCOL.md"
MODULES = ROOT / ".cache" / "asyncapi"
PACKAGES = {"@asyncapi/parser": "3.6.6", "ajv": "8.20.0", "ajv-formats": "3.0.1"}

# Parses and validates a document; validates each message example, and the samples
# given in a JSON file ([{"channel", "message", "payload"}]), against the payload schema.
VALIDATOR = r"""
const fs = require('fs');
const { Parser, fromFile } = require('@asyncapi/parser');
const AjvModule = require('ajv');
const Ajv = AjvModule.default || AjvModule;
const formatsModule = require('ajv-formats');
const addFormats = formatsModule.default || formatsModule;

function schemaErrors(ajv, schema, payload) {
  const validate = ajv.compile(schema);
  return validate(payload) ? [] : validate.errors.map(
    e => `${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
}

(async () => {
  const [docPath, samplesPath] = process.argv.slice(2);
  const { document, diagnostics } = await fromFile(new Parser(), docPath).parse();
  const out = {
    valid: document !== undefined,
    version: document ? document.version() : null,
    diagnostics: diagnostics.map(d => ({
      severity: d.severity, code: d.code, message: d.message, path: (d.path || []).join('.'),
    })),
    channels: {}, examples: [], samples: [],
  };
  if (document) {
    const ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(ajv);
    for (const channel of document.channels()) {
      out.channels[channel.id()] = {
        address: channel.address(),
        parameters: channel.parameters().all().map(p => p.id()),
        messages: channel.messages().all().map(m => m.id()),
      };
      for (const message of channel.messages()) {
        const schema = message.payload().json();
        for (const example of message.examples()) {
          out.examples.push({
            channel: channel.id(), message: message.id(), name: example.name(),
            errors: schemaErrors(ajv, schema, example.payload()),
          });
        }
      }
    }
    if (samplesPath) {
      for (const sample of JSON.parse(fs.readFileSync(samplesPath, 'utf8'))) {
        const channel = document.channels().get(sample.channel);
        const message = channel && channel.messages().get(sample.message);
        out.samples.push({
          channel: sample.channel, message: sample.message, name: sample.name,
          errors: message ? schemaErrors(ajv, message.payload().json(), sample.payload)
                          : ['no such channel message'],
        });
      }
    }
  }
  process.stdout.write(JSON.stringify(out));
})().catch(e => { console.error((e && e.stack) || e); process.exit(2); });
"""


def _installed_version(package: str) -> str | None:
    meta = MODULES / "node_modules" / package / "package.json"
    try:
        return str(json.loads(meta.read_text("utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="module")
def validator() -> Path:
    """The Node validator script, with the pinned parser installed beside it."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("npm is not installed: the AsyncAPI document is validated by the "
                    "official @asyncapi/parser from npm (install Node.js and npm)")
    MODULES.mkdir(parents=True, exist_ok=True)
    if any(_installed_version(p) != v for p, v in PACKAGES.items()):
        (MODULES / "package.json").write_text(json.dumps(
            {"name": "twinctl-asyncapi-check", "private": True, "dependencies": PACKAGES},
            indent=2) + "\n", "utf-8")
        done = subprocess.run(
            [npm, "install", "--prefix", str(MODULES), "--no-audit", "--no-fund",
             "--ignore-scripts", "--loglevel=error"],
            capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
    for package, version in PACKAGES.items():
        assert _installed_version(package) == version, f"{package} {version} not installed"
    script = MODULES / "validate.cjs"
    script.write_text(VALIDATOR, "utf-8")
    return script


def _validate(script: Path, doc: Path, samples: list[dict[str, Any]] | None = None,
              tmp: Path | None = None) -> dict[str, Any]:
    argv = ["node", str(script), str(doc)]
    if samples is not None:
        assert tmp is not None
        (tmp / "samples.json").write_text(json.dumps(samples), "utf-8")
        argv.append(str(tmp / "samples.json"))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                               "NODE_PATH": str(MODULES / "node_modules")})
    assert done.returncode == 0, f"the validator failed:\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _problems(result: dict[str, Any]) -> list[str]:
    """Errors (0) and warnings (1); information (2) and hints (3) are not problems."""
    return [f"{d['path']}: {d['code']}: {d['message']}"
            for d in result["diagnostics"] if d["severity"] <= 1]


@pytest.fixture(scope="module")
def checked(validator: Path) -> dict[str, Any]:
    return _validate(validator, DOC)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DOC.read_text("utf-8"))
    return data


# ----- the official parser --------------------------------------------------------------

def test_the_document_is_valid_asyncapi_3(checked: dict[str, Any]) -> None:
    assert checked["valid"], "\n".join(_problems(checked))
    assert checked["version"].startswith("3.0.")
    assert not _problems(checked), "\n".join(_problems(checked))


def test_a_broken_copy_is_reported_invalid(validator: Path, tmp_path: Path) -> None:
    text = DOC.read_text("utf-8")
    broken = text.replace("    action: send\n", "    action: publish\n", 1)  # AsyncAPI 2 word
    assert broken != text
    (tmp_path / "action.yaml").write_text(broken, "utf-8")
    result = _validate(validator, tmp_path / "action.yaml")
    assert not result["valid"]
    assert any("action" in d["path"] for d in result["diagnostics"] if d["severity"] == 0)

    dangling = text.replace("'#/components/schemas/ErrorCode'",
                            "'#/components/schemas/ErrorKode'", 1)
    assert dangling != text
    (tmp_path / "ref.yaml").write_text(dangling, "utf-8")
    result = _validate(validator, tmp_path / "ref.yaml")
    assert not result["valid"], "a $ref to nothing passed"


def test_the_topics_are_those_of_the_protocol(checked: dict[str, Any]) -> None:
    addresses = {c["address"]: c for c in checked["channels"].values()}
    assert set(addresses) == {
        "{prefix}/{cid}/cmd", "{prefix}/group/{gid}/cmd", "{prefix}/{cid}/reply/{id}",
        "{prefix}/{cid}/errors", "{prefix}/{cid}/status", "{prefix}/{cid}/alarms"}
    for address, channel in addresses.items():
        assert set(channel["parameters"]) == set(re.findall(r"\{(\w+)\}", address)), address
    replies = addresses["{prefix}/{cid}/reply/{id}"]["messages"]
    assert set(replies) == {"ack", "error", "data", "result", "pong", "description"}


def test_the_status_is_retained(doc: dict[str, Any]) -> None:
    op = doc["operations"]["receiveStatus"]
    assert op["channel"]["$ref"] == "#/channels/status"
    assert op["bindings"]["mqtt"]["retain"] is True


# ----- the messages against the code and PROTOCOL.md -----------------------------------------

def test_every_command_has_its_message(doc: dict[str, Any]) -> None:
    from ingress.commands import COMMANDS

    for channel in ("commands", "groupCommands"):
        assert set(doc["channels"][channel]["messages"]) == set(COMMANDS), channel
        sent = {m["$ref"].rsplit("/", 1)[1] for op in doc["operations"].values()
                if op["channel"]["$ref"] == f"#/channels/{channel}" for m in op["messages"]}
        assert sent == set(COMMANDS), f"operations on {channel}"
    schemas = doc["components"]["schemas"]
    consts = {s["properties"]["cmd"].get("const") for s in schemas.values()
              if isinstance(s, dict) and "cmd" in s.get("properties", {})}
    assert consts >= set(COMMANDS)


def _protocol_codes() -> set[str]:
    text = PROTOCOL.read_text("utf-8")
    section = text[text.index("## Errors"):]
    section = section[section.index("Codes:"):section.index("No input")]
    section = re.sub(r"\([^)]*\)", "", section)  # the explanations, which name `cmd`
    return set(re.findall(r"`([a-z_]+)`", section))


def _code_codes() -> set[str]:
    """Every ``code = "..."`` and ``"code": "..."`` in the packages."""
    found: set[str] = set()
    for package in ("ingress", "tasks", "modellib", "scenario_builder", "instances", "twinctl"):
        for path in (ROOT / package).rglob("*.py"):
            found |= set(re.findall(r'(?:\bcode = |"code": )"([a-z_]+)"',
                                    path.read_text("utf-8")))
    return found


def test_every_error_code_is_in_the_enum(doc: dict[str, Any]) -> None:
    from modellib.errors import ERROR_CODES

    enum = set(doc["components"]["schemas"]["ErrorCode"]["enum"])
    assert enum == set(ERROR_CODES), "the enum is not the protocol's list of codes"
    assert _code_codes() - enum == set(), "codes the controller sends missing from the enum"


def test_the_codes_are_the_contracts(doc: dict[str, Any]) -> None:
    """The project's list against PROTOCOL.md itself, where the shared docs sit beside
    the checkout (a lone clone carries only its own list)."""
    from modellib.errors import ERROR_CODES

    if not PROTOCOL.is_file():
        pytest.skip(f"{PROTOCOL} is not beside this checkout")
    protocol = _protocol_codes()
    assert len(protocol) >= 15, protocol  # the list was found
    assert protocol == set(ERROR_CODES)


def test_every_example_matches_its_schema(checked: dict[str, Any]) -> None:
    assert len(checked["examples"]) >= 20
    bad = [f"{e['channel']}/{e['message']} example {e['name']}: {e['errors']}"
           for e in checked["examples"] if e["errors"]]
    assert not bad, "\n".join(bad)


def _reply(rid: str, rtype: str, fields: dict[str, Any], seq: int = 0) -> dict[str, Any]:
    from tasks.replies import envelope_parts

    head, tail = envelope_parts(rid, "c1", rtype, fields)
    result: dict[str, Any] = json.loads(head + str(seq) + tail)
    return result


def _samples(tmp_path: Path) -> list[dict[str, Any]]:
    """Messages as the code makes them (no services: the libraries and the envelope)."""
    from ingress.errors import InvalidJson, Overloaded
    from instances import SHIPPED_INSTANCES, InstanceLibrary
    from modellib import describe_models
    from modellib.errors import CodedError
    from modellib.functions import call_function, describe_functions
    from scenario_builder import describe_templates, expand_template, run_scenario
    from tasks.replies import encode_json, timestamp

    samples: list[dict[str, Any]] = []

    def add(channel: str, message: str, name: str, payload: dict[str, Any]) -> None:
        samples.append({"channel": channel, "message": message, "name": name,
                        "payload": payload})

    for i, path in enumerate(sorted((ROOT / "twinctl" / "examples").glob("*.json"))):
        command = {"id": f"ex-{i}", **json.loads(path.read_text("utf-8"))}
        add("commands", command["cmd"], path.name, command)
        add("groupCommands", command["cmd"], path.name, command)
    add("commands", "run", "template", {"id": "t-1", "cmd": "run", "template": "pump_to_tank",
                                        "args": {"speed": 1300, "stop": 600}})

    library = InstanceLibrary(tmp_path / "instances", seed=SHIPPED_INSTANCES)
    static = json.loads((ROOT / "twinctl" / "examples" / "pump_line_tank.json").read_text())
    add("replies", "result", "static run",
        _reply("s-1", "result", run_scenario(library.resolve(static["scenario"])), 1))
    dynamic = library.resolve(expand_template("pump_to_tank", {"stop": 20}))
    add("replies", "result", "dynamic run", _reply("d-1", "result", run_scenario(dynamic), 1))
    add("replies", "result", "call", _reply("c-1", "result", {
        "status": "ok", "function": "mean", "value": call_function("mean", {"x": [1, 2, 3]})}, 1))
    add("replies", "ack", "ack", _reply("d-1", "ack", {"queue": "twin.long"}))
    add("replies", "ack", "sweep ack", _reply("w-1", "ack", {"queue": "twin.sweep", "cases": 15,
                                                             "chunks": 15}))
    add("replies", "data", "sweep data", _reply("w-1", "data", {
        "chunk": 0, "progress": {"done": 1, "total": 15}, "columns": ["case", "a", "b"],
        "rows": [[0, 1.0, None]], "failed": {"0": {"code": "runtime_error", "message": "x"}}}, 1))
    from tests.test_alarms import fill_and_drain

    add("replies", "result", "dynamic run with alarms", _reply("a-1", "result", run_scenario(
        fill_and_drain(10.0, [{"name": "hi", "on": "tank.level", "high": 1.8}])), 1))
    import redis

    from tasks.alarmboard import AlarmBoard
    head, tail = AlarmBoard(redis.Redis(), "c1", "twin/c1/alarms")._parts({
        "source": "rt-1", "alarm": "hi", "event": "raised", "state": "unack_active",
        "priority": "high", "value": 1.81, "limit": 1.8, "t": 3.5, "message": "x"})
    add("alarms", "alarm", "alarm message", json.loads(head + "0" + tail))
    add("replies", "result", "alarms", _reply("l-1", "result", {"status": "ok", "alarms": [
        {"source": "rt-1", "alarm": "hi", "state": "unack_active", "priority": "high",
         "value": 1.81, "limit": 1.8, "since": 1.7e9, "message": "x"}]}))
    add("replies", "result", "ack_alarm", _reply("k-1", "result", {
        "status": "ok", "alarm": "hi", "source": "rt-1", "state": "ack_active"}, 1))
    for name, fields in _sweep_results(library).items():
        add("replies", "result", name, _reply("w-1", "result", fields, 16))
    add("replies", "pong", "pong", _reply("p-1", "pong", {}))
    add("replies", "description", "describe", _reply("x-1", "description", {
        "models": describe_models(), "functions": describe_functions(),
        "instances": library.describe(), "templates": describe_templates()}))
    bad = dict(static["scenario"], elements={"pump": {"model": "CentrifugalPmp"}})
    try:
        run_scenario(library.resolve(bad))
    except CodedError as exc:
        add("replies", "error", "unknown model", _reply("e-1", "error", exc.as_reply()))
    else:
        pytest.fail("a misspelt model ran")
    add("replies", "error", "admission",
        _reply("e-2", "error", Overloaded("too many", queued=1001).as_reply()))
    nan = {"status": "ok", "function": "mean", "value": float("nan")}
    add("replies", "result", "non-finite", _reply("n-1", "result", nan, 1))
    add("errors", "errorWithoutId", "invalid json", json.loads(encode_json({
        "controller": "c1", "type": "error", **InvalidJson("not JSON").as_reply(),
        "ts": timestamp()})))
    return samples


def _sweep_results(library: Any) -> dict[str, dict[str, Any]]:
    """A sweep's result as the worker makes it (tasks.sweeps.table_fields), of the
    shipped sweep example: whole, streamed, and with a failed case."""
    from scenario_builder import check_scenario
    from scenario_builder.sweeps import parse_sweep, run_case
    from tasks.sweeps import table_fields

    command = json.loads((ROOT / "twinctl" / "examples" / "pump_speed_sweep.json").read_text())
    sc = check_scenario(library.resolve(command["scenario"]))
    sweep = parse_sweep(command["sweep"], sc, max_cases=100)
    cases: dict[int, dict[str, Any]] = {
        i: {"row": [i, *v, *run_case(sc, sweep, v)]} for i, v in enumerate(sweep.cases)}
    cases[3] = {"row": [3, *sweep.cases[3], None, None, None],
                "failed": {"code": "runtime_error", "message": "no operating point"}}
    total = len(sweep.cases)
    return {name: table_fields(sweep, cases, total=total, chunks=2, max_rows=rows)[1]
            for name, rows in (("sweep", 100), ("streamed sweep", 5))}


def test_messages_made_by_the_code_match_the_document(validator: Path, tmp_path: Path) -> None:
    samples = _samples(tmp_path)
    result = _validate(validator, DOC, samples, tmp_path)
    assert len(result["samples"]) == len(samples)
    bad = [f"{s['channel']}/{s['message']} ({s['name']}): {s['errors']}"
           for s in result["samples"] if s["errors"]]
    assert not bad, "\n".join(bad)


def test_a_message_that_breaks_its_schema_is_caught(validator: Path, tmp_path: Path) -> None:
    wrong = [
        {"channel": "commands", "message": "run", "name": "both",
         "payload": {"id": "x", "cmd": "run", "template": "a", "scenario": {"elements": {}}}},
        {"channel": "commands", "message": "stop", "name": "no target",
         "payload": {"id": "x", "cmd": "stop"}},
        {"channel": "replies", "message": "error", "name": "unknown code",
         "payload": _reply("x", "error", {"code": "oops", "message": "?"})},
        {"channel": "commands", "message": "run", "name": "unknown field",
         "payload": {"id": "x", "cmd": "run", "template": "a", "argz": {}}},
        {"channel": "replies", "message": "pong", "name": "bad time stamp",
         "payload": {**_reply("x", "pong", {}), "ts": "yesterday"}},
    ]
    result = _validate(validator, DOC, wrong, tmp_path)
    assert all(s["errors"] for s in result["samples"]), result["samples"]


def test_protocol_md_links_the_document() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text("utf-8")
    assert "asyncapi.yaml" in text
