"""Reply encoding: strict JSON, non-finite numbers as null and named in warnings."""

from __future__ import annotations

import json
import math
import re

import numpy as np

from tasks.replies import encode_json, envelope_parts, timestamp


def test_non_finite_numbers_become_null_and_are_named() -> None:
    text = encode_json({"values": {"a": math.nan, "b": [1.0, math.inf]},
                        "x": np.float64(-np.inf), "ok": 2.5})
    data = json.loads(text)
    assert data["values"] == {"a": None, "b": [1.0, None]}
    assert data["x"] is None and data["ok"] == 2.5
    assert data["warnings"] == ["values.a was nan, sent as null",
                                "values.b[1] was inf, sent as null",
                                "x was -inf, sent as null"]
    assert "NaN" not in text and "Infinity" not in text


def test_finite_payload_has_no_warnings_and_keeps_full_precision() -> None:
    data = json.loads(encode_json({"v": 0.1 + 0.2, "arr": np.array([1.5, 2.5])}))
    assert data == {"v": 0.30000000000000004, "arr": [1.5, 2.5]}


def test_envelope_splices_seq() -> None:
    head, tail = envelope_parts("job-1", "c1", "result", {"status": "ok"})
    msg = json.loads(head + "7" + tail)
    assert list(msg)[:5] == ["id", "controller", "type", "seq", "ts"]
    assert msg["seq"] == 7 and msg["status"] == "ok"
    head, tail = envelope_parts("job-1", "c1", "pong", {})
    assert json.loads(head + "0" + tail)["type"] == "pong"


def test_timestamp_is_utc_with_milliseconds() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", timestamp())


def test_a_lone_surrogate_is_sent_escaped_not_lost() -> None:
    from tasks.replies import encode_json

    text = encode_json({"message": "bad key '\udc80'", "unit": "m³"})
    assert text.encode("utf-8")  # storable and sendable
    assert json.loads(text)["message"] == "bad key '\udc80'"
