"""Alarm rules of a scenario (scenario_builder.alarms): their checks with paths, and the
raised/cleared events of static and dynamic runs, located between rows, with
deadband and delays, against closed forms. No broker or queue here."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy.optimize import brentq

from modellib.errors import CodedError
from scenario_builder import check_scenario, run_scenario
from scenario_builder.alarms import AlarmRule, Detector, batch_events

A, OUTLET, CD, G = 1.0, 0.005, 0.62, 9.80665
C = CD * OUTLET * math.sqrt(2 * G)
"""Torricelli: outflow = C sqrt(h)"""
Q, H0, T_OFF = 0.02, 0.5, 500.0


def t_fill(h: float) -> float:
    """The time the tank, filled at Q from H0 through its orifice, reaches level h:
    A dh/dt = Q - C sqrt(h), integrated in closed form with s = sqrt(h)."""
    s0, s = math.sqrt(H0), math.sqrt(h)
    return 2 * A / C**2 * (C * (s0 - s) + Q * math.log((Q - C * s0) / (Q - C * s)))


def t_drain(h1: float, h: float) -> float:
    """Time from level h1 to h with no inflow: sqrt(h) falls at C / (2 A)."""
    return 2 * A * (math.sqrt(h1) - math.sqrt(h)) / C


def fill_and_drain(step: float, alarms: list[dict[str, Any]]) -> dict[str, Any]:
    return {"mode": "dynamic",
            "elements": {"tank": {"model": "Tank", "params": {"area": A, "outlet_area": OUTLET},
                                  "initial": {"level": H0}}},
            "inputs": {"tank.inflow": {"t": [0, T_OFF, T_OFF + 1e-3, 1200],
                                       "v": [Q, Q, 0, 0]}},
            "outputs": ["tank.level", "tank.outflow"],
            "time": {"start": 0, "stop": 1200, "step": step},
            "post": [{"function": "max", "args": {"x": "tank.level"}, "as": "peak"}],
            "alarms": alarms}


def test_a_high_level_raises_and_clears_once_at_the_closed_forms_times() -> None:
    rule = {"name": "T1-high", "on": "tank.level", "high": 1.8, "deadband": 0.1,
            "on_delay": 5.0, "off_delay": 3.0, "priority": "high"}
    events = run_scenario(fill_and_drain(1.0, [rule]))["alarms"]
    assert [e["event"] for e in events] == ["raised", "cleared"]
    h1 = brentq(lambda h: t_fill(h) - T_OFF, H0, (Q / C) ** 2 * (1 - 1e-12))
    raised, cleared = events
    assert raised["t"] == pytest.approx(t_fill(1.8) + 5.0, abs=0.01)  # not the next row
    assert cleared["t"] == pytest.approx(T_OFF + t_drain(h1, 1.7) + 3.0, abs=0.01)
    assert raised["t"] % 1.0 != 0.0
    assert raised["limit"] == 1.8 and raised["priority"] == "high"
    assert raised["message"].startswith("tank.level 1.8") and "above 1.8 m" in raised["message"]
    assert "back below 1.7 m (limit 1.8 m, deadband 0.1 m)" in cleared["message"]
    # the same on 10 s rows: the crossing is still found between them (linear there)
    coarse = run_scenario(fill_and_drain(10.0, [rule]))["alarms"]
    assert coarse[0]["t"] == pytest.approx(raised["t"], abs=0.1)


def test_an_on_delay_longer_than_the_excursion_raises_nothing() -> None:
    h1 = brentq(lambda h: t_fill(h) - T_OFF, H0, (Q / C) ** 2 * (1 - 1e-12))
    above = T_OFF + t_drain(h1, 1.9) - t_fill(1.9)  # seconds above 1.9 m
    rules = [{"name": "long", "on": "tank.level", "high": 1.9, "on_delay": above + 2.0},
             {"name": "short", "on": "tank.level", "high": 1.9, "on_delay": above - 2.0}]
    events = run_scenario(fill_and_drain(1.0, rules))["alarms"]
    assert {e["alarm"] for e in events} == {"short"}


def test_a_deadband_keeps_a_noisy_signal_from_chattering() -> None:
    t = np.arange(0.0, 100.0, 0.5)
    noisy = 1.0 + 0.02 * np.sin(7.3 * t) + np.where(t > 50, -0.5, 0.0)  # about the limit
    loud = batch_events([AlarmRule("x", "y", "high", 1.0)], t, {"y": noisy})
    quiet = batch_events([AlarmRule("x", "y", "high", 1.0, deadband=0.05)], t, {"y": noisy})
    assert len(loud) > 10
    assert [e["event"] for e in quiet] == ["raised", "cleared"]
    assert quiet[1]["t"] == pytest.approx(50.0, abs=0.5)


def test_low_rate_and_deviation_rules() -> None:
    t = np.arange(0.0, 11.0)
    y = np.array([5, 4, 3, 2, 1, 1, 1, 2, 3, 4, 5], dtype=float)
    low = batch_events([AlarmRule("lo", "y", "low", 2.5, deadband=1.0)], t, {"y": y})
    assert [(e["event"], e["t"]) for e in low] == [("raised", 2.5), ("cleared", 8.5)]
    rate = batch_events([AlarmRule("r", "y", "rate", 0.5)], t, {"y": y})
    assert [(e["event"], e["t"]) for e in rate] == [("raised", 1.0), ("cleared", 4.5),
                                                    ("raised", 6.5)]
    ref = np.full(11, 3.0)
    dev = batch_events([AlarmRule("d", "y", "deviation", 1.5, source="ref")], t,
                       {"y": y, "ref": ref})
    assert [(e["event"], e["t"]) for e in dev] == [("raised", 0.0), ("cleared", 0.5),
                                                   ("raised", 3.5), ("cleared", 6.5),
                                                   ("raised", 9.5)]


def test_a_static_run_and_a_post_value_are_checked_once() -> None:
    static = {"mode": "static",
              "elements": {"pump": {"model": "CentrifugalPump", "instance": "P-101"}},
              "inputs": {"pump.speed": 1300, "pump.flow": 0.025},
              "alarms": [{"name": "power", "on": "pump.power", "high": 5000.0,
                          "on_delay": 60.0}]}
    from instances import SHIPPED_INSTANCES, InstanceLibrary

    library = InstanceLibrary(SHIPPED_INSTANCES)
    events = run_scenario(library.resolve(static))["alarms"]
    assert [(e["alarm"], e["event"], e["t"]) for e in events] == [("power", "raised", 0.0)]
    peak = run_scenario(fill_and_drain(1.0, [{"name": "peak", "on": "peak", "high": 1.99}]))
    assert [(e["event"], e["t"]) for e in peak["alarms"]] == [("raised", 1200.0)]


def test_a_detector_fed_tick_by_tick_finds_what_the_batch_finds() -> None:
    t = np.arange(0.0, 20.0)
    y = np.concatenate([np.linspace(0, 2, 10), np.linspace(2, 0, 10)])
    rule = AlarmRule("hi", "y", "high", 1.0, deadband=0.1, on_delay=2.0, off_delay=1.0)
    det = Detector(rule)
    live = [e for tk, yk in zip(t, y, strict=True) for e in det.feed(float(tk), float(yk))]
    assert live == batch_events([rule], t, {"y": y})
    assert [(e["event"], round(e["t"], 9)) for e in live] == [("raised", 6.5),
                                                             ("cleared", 15.95)]


@pytest.mark.parametrize(("rule", "path", "said"), [
    ({"name": "a", "on": "tank.lvl", "high": 1}, "scenario.alarms[0].on", "tank.level"),
    ({"name": "a", "on": "tank.level", "high": 1, "low": 0}, "scenario.alarms[0].low",
     "exactly one condition"),
    ({"name": "a", "on": "tank.level"}, "scenario.alarms[0]", "not none"),
    ({"name": "a", "on": "tank.level", "high": 1, "deadband": -0.1},
     "scenario.alarms[0].deadband", ">= 0"),
    ({"name": "a", "on": "tank.level", "deviation": 0.1}, "scenario.alarms[0].from",
     "required with deviation"),
    ({"name": "a", "on": "tank.level", "high": 1, "from": "tank.outflow"},
     "scenario.alarms[0].from", "deviation only"),
    ({"name": "a", "on": "tank.level", "high": 1, "priority": "critical"},
     "scenario.alarms[0].priority", "urgent"),
    ({"name": "a", "on": "tank.level", "high": 1, "on_dealy": 2}, "scenario.alarms[0].on_dealy",
     "did you mean 'on_delay'"),
    ({"on": "tank.level", "high": 1}, "scenario.alarms[0].name", "name"),
    ({"name": "a", "on": "tank.level", "high": "1.8"}, "scenario.alarms[0].high", "finite"),
])
def test_a_bad_rule_is_refused_with_its_path(rule: dict[str, Any], path: str,
                                             said: str) -> None:
    with pytest.raises(CodedError) as caught:
        check_scenario(fill_and_drain(1.0, [rule]))
    assert caught.value.path == path, caught.value.message
    assert said in caught.value.message, caught.value.message


def test_two_rules_of_one_name_are_refused_and_the_rules_survive_to_data() -> None:
    rule = {"name": "a", "on": "tank.level", "high": 1.0}
    with pytest.raises(CodedError, match="names two rules") as caught:
        check_scenario(fill_and_drain(1.0, [rule, rule]))
    assert caught.value.path == "scenario.alarms[1].name"
    sc = check_scenario(fill_and_drain(1.0, [{**rule, "deadband": 0.1, "on_delay": 2.0}]))
    assert check_scenario(sc.to_data()).alarms == sc.alarms
