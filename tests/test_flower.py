"""Flower shows the controller's jobs: its HTTP API and its tasks page in headless Chromium.

This module's stack runs Flower as ``twinctl up --flower`` does (``Stack(flower=True)``,
``--address=127.0.0.1`` on a free port), with ``FLOWER_UNAUTHENTICATED_API=true`` in
this stack's environment only. A static run, a dynamic template run and a call go over
MQTT; Flower must list them by task name with the request id in ``args`` and the
scenario's ``summary`` in ``kwargs``, and its tasks page must show them (the rendered
DOM and a screenshot are kept under ``test-artifacts/``). A second Flower, set up as
docs/operations.md says for production (basic auth), must refuse anonymous requests.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import new_id, running_stack, stack_env
from tests.orchestrator import Orchestrator
from twinctl import embedded
from twinctl.stack import Stack, stop_process_groups

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
# 127.0.0.1 must never go through an HTTP(S)_PROXY from the environment
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with _http.open(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def _log_tail(stack: Stack, part: str, limit: int = 3000) -> str:
    path = stack.log_dir / f"{part}.log" if stack.log_dir else None
    if path is None or not path.exists():
        return "(no log)"
    return path.read_text("utf-8", "replace")[-limit:]


@pytest.fixture(scope="module")
def stack(redis_server: Any, mqtt_server: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    """Ingress, one worker process and Flower, started as ``twinctl up --flower`` does
    (this module's stack, in place of conftest's)."""
    env = stack_env(redis_server, mqtt_server, FLOWER_UNAUTHENTICATED_API="true")
    with running_stack(env, tmp_path_factory.mktemp("stack-logs"), workers=1, flower=True,
                       flower_port=embedded.free_port()) as s:
        yield s


@pytest.fixture(scope="module")
def flower(stack: Stack) -> str:
    """Flower's base URL, once it answers and receives the worker's events.

    Events are Redis pub/sub: a job sent before Flower listens is never shown, so wait
    until Flower's event state knows the worker (its heartbeat, every 2 s).
    """
    base = f"http://127.0.0.1:{stack.flower_port}"
    deadline = time.monotonic() + 30
    last: object = None
    while True:
        bad = stack.failed()
        assert bad is None, f"the {bad} stopped; Flower's log:\n{_log_tail(stack, 'flower')}"
        try:
            workers = _get_json(f"{base}/api/workers?status=true")
            if isinstance(workers, dict) and any(workers.values()):
                return base
            last = workers
        except (OSError, ValueError) as exc:  # not listening yet / starting
            last = exc
        assert time.monotonic() < deadline, (
            f"Flower saw no live worker within 30 s (last answer: {last!r}); "
            f"its log:\n{_log_tail(stack, 'flower')}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def jobs(stack: Stack, flower: str) -> dict[str, str]:
    """A static run, a dynamic template run and a call, answered; their request ids."""
    s = stack.settings
    orch = Orchestrator(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
    rids = {"static": new_id("flower-static"), "dynamic": new_id("flower-dyn"),
            "call": new_id("flower-call")}
    try:
        orch.send({"id": rids["static"], "cmd": "run", "scenario": {
            "mode": "static",
            "elements": {"pump": {"model": "CentrifugalPump", "instance": "P-101"}},
            "inputs": {"pump.speed": 1300, "pump.flow": 0.025}}})
        orch.send({"id": rids["dynamic"], "cmd": "run", "template": "pump_to_tank",
                   "args": {"speed": 1300, "stop": 30, "step": 1}})
        orch.send({"id": rids["call"], "cmd": "call", "function": "mean",
                   "args": {"x": [1.0, 2.0, 6.0]}})
        for rid in rids.values():
            final = orch.wait_final(rid, timeout=30)[-1]
            assert final["type"] == "result", final
    finally:
        orch.close()
    return rids


def flower_tasks(base: str, rids: dict[str, str], timeout: float = 20.0) -> dict[str, dict]:
    """Flower's task records of ``rids`` (by kind), once all of them have succeeded."""
    deadline = time.monotonic() + timeout
    while True:
        listed = _get_json(f"{base}/api/tasks?limit=1000")
        found: dict[str, dict] = {}
        for task in listed.values():
            for kind, rid in rids.items():
                if repr(rid) in (task.get("args") or ""):
                    found[kind] = task
        if len(found) == len(rids) and all(t["state"] == "SUCCESS" for t in found.values()):
            return found
        assert time.monotonic() < deadline, (
            f"Flower did not list all of {rids} as succeeded within {timeout:.0f} s; "
            f"it has {json.dumps(listed, indent=1)[:3000]}")
        time.sleep(0.25)


def test_flower_api_lists_the_jobs_by_name_with_request_id_and_summary(
    flower: str, jobs: dict[str, str], stack: Stack
) -> None:
    found = flower_tasks(flower, jobs)
    cid = stack.settings.controller_id
    assert {kind: t["name"] for kind, t in found.items()} == {
        "static": "twin.run", "dynamic": "twin.run", "call": "twin.call"}
    for kind, task in found.items():
        # args is Celery's repr: (request id, controller, reply topic, ...)
        assert task["args"][1:].startswith(f"{jobs[kind]!r}, {cid!r}, "), task["args"]
        assert task["worker"].startswith(f"twin-{cid}-"), task["worker"]
        assert "result seq=1" in (task["result"] or ""), task["result"]
    assert "'summary': 'static: 1 element(s) CentrifugalPump'" in found["static"]["kwargs"]
    assert ("'summary': 'dynamic: 3 element(s) CentrifugalPump, Pipe, Tank'"
            in found["dynamic"]["kwargs"])
    assert "'mean'" in found["call"]["args"]
    # an operator finds a job by its request id (the search box), and filters by name
    for kind, rid in jobs.items():
        for query in (rid, f"args:{rid}"):
            hits = _get_json(f"{flower}/api/tasks?" + urllib.parse.urlencode({"search": query}))
            assert list(hits) == [found[kind]["uuid"]], (query, hits)
    dynamic = _get_json(f"{flower}/api/tasks?search=kwargs:dynamic")
    assert list(dynamic) == [found["dynamic"]["uuid"]], dynamic
    only_calls = _get_json(f"{flower}/api/tasks?taskname=twin.call&limit=1000")
    assert {t["name"] for t in only_calls.values()} == {"twin.call"}


def test_flower_with_basic_auth_refuses_anonymous_requests(
    stack: Stack, tmp_path: Path
) -> None:
    """As the docs say to run it in production: ``FLOWER_BASIC_AUTH``, no unauthenticated API."""
    port = embedded.free_port()
    env = {**os.environ, **stack.env, "FLOWER_BASIC_AUTH": "ops:s3cret"}
    env.pop("FLOWER_UNAUTHENTICATED_API", None)
    log = tmp_path / "flower.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks.app", "flower", f"--port={port}",
             "--address=127.0.0.1"], env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not embedded.port_answers("127.0.0.1", port):
            assert proc.poll() is None, log.read_text("utf-8", "replace")[-3000:]
            assert time.monotonic() < deadline, "Flower did not listen within 30 s"
            time.sleep(0.1)
        for path in ("/tasks", "/api/tasks", "/api/workers"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                _http.open(f"{base}{path}", timeout=5)
            assert refused.value.code == 401, path
            good = urllib.request.Request(f"{base}{path}", headers={
                "Authorization": "Basic " + base64.b64encode(b"ops:s3cret").decode()})
            with _http.open(good, timeout=5) as resp:
                assert resp.status == 200, path
    finally:
        stop_process_groups([proc], timeout=10)


def _chromium(binary: Path, *args: str, profile: Path,
              timeout: float = 60.0) -> subprocess.CompletedProcess:
    # --no-proxy-server: Chromium would otherwise take a proxy from the environment
    argv = [str(binary), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-proxy-server", f"--user-data-dir={profile}",
            "--virtual-time-budget=8000", *args]
    return subprocess.run(argv, capture_output=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium; without it the page test is skipped, except in CI where it fails."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is not installed (scripts/ensure-services.sh, run by `make test`)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


def test_flower_tasks_page_renders_the_jobs_in_headless_chromium(
    chromium: Path, flower: str, jobs: dict[str, str], tmp_path: Path
) -> None:
    found = flower_tasks(flower, jobs)  # the page shows what Flower has: wait until it has
    url = f"{flower}/tasks"
    ARTIFACTS.mkdir(exist_ok=True)

    dom = _chromium(chromium, "--dump-dom", url, profile=tmp_path / "profile-dom")
    html = dom.stdout.decode("utf-8", "replace")
    (ARTIFACTS / "flower-tasks.html").write_text(html, "utf-8")
    assert dom.returncode == 0 and "</html>" in html, (
        f"chromium exit {dom.returncode}: {dom.stderr.decode('utf-8', 'replace')[-2000:]}")
    assert 'id="tasks-table"' in html, html[:2000]
    # the rows come from /tasks/datatable after the first paint (hence the virtual time)
    for kind, rid in jobs.items():
        assert f'<tr id="{found[kind]["uuid"]}"' in html, f"no row for the {kind} job"
        assert rid in html, f"the request id {rid} is not on the tasks page"
    assert ">twin.run<" in html and ">twin.call<" in html
    assert "dynamic: 3 element(s) CentrifugalPump, Pipe, Tank" in html

    png = ARTIFACTS / "flower-tasks.png"
    png.unlink(missing_ok=True)
    shot = _chromium(chromium, f"--screenshot={png}", "--window-size=1400,900", url,
                     profile=tmp_path / "profile-shot")
    assert shot.returncode == 0, shot.stderr.decode("utf-8", "replace")[-2000:]
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, len(data)


def test_flower_lists_a_sweep_as_its_chunks_named_with_the_request_and_their_cases(
    flower: str, stack: Stack
) -> None:
    s = stack.settings
    orch = Orchestrator(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
    rid = new_id("flower-sweep")
    try:
        replies = orch.request({"id": rid, "cmd": "run", "scenario": {
            "mode": "dynamic",
            "elements": {"tank": {"model": "Tank", "params": {"area": 1.0, "outlet_area": 0.01},
                                  "initial": {"level": 2.0}}},
            "outputs": ["tank.level"], "time": {"start": 0, "stop": 60, "step": 1},
            "solver": {"max_step": 0.5}},
            "sweep": {"grid": {"tank.area": [1.0 + k / 10 for k in range(40)]}}}, timeout=60)
    finally:
        orch.close()
    assert replies[-1]["type"] == "result" and replies[-1]["status"] == "ok", replies[-1]
    chunks = replies[0]["chunks"]
    assert chunks > 1
    deadline = time.monotonic() + 20
    while True:
        listed = _get_json(f"{flower}/api/tasks?taskname=twin.sweep&limit=1000")
        mine = [t for t in listed.values() if repr(rid) in (t.get("args") or "")]
        if len(mine) == chunks and all(t["state"] == "SUCCESS" for t in mine):
            break
        assert time.monotonic() < deadline, f"Flower lists {len(mine)} of {chunks} chunks"
        time.sleep(0.25)
    shown = sorted(t["args"] for t in mine)
    assert all(f"of {chunks}: cases " in a and "of 40; sweep of 40 case(s), dynamic" in a
               for a in shown), shown
    assert any(f"<sweep chunk 1 of {chunks}: cases 0-" in a for a in shown), shown
    assert {t["name"] for t in mine} == {"twin.sweep"}
