"""HeatExchanger: effectiveness-NTU limits, an independent LMTD check, energy balance.

References (F. P. Incropera, D. P. DeWitt et al., Fundamentals of Heat and Mass
Transfer, 6th ed., Wiley 2007):
* sec. 11.4, Table 11.3: eps for parallel and counter flow; for Cr = 0 every
  arrangement gives eps = 1 - exp(-NTU); counter flow with Cr = 1 gives NTU/(1+NTU);
* sec. 11.3: the log mean temperature difference method, q = UA dT_lm, an
  independent route to the same outlet temperatures.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from modellib import CodedError, Model, ModelRuntimeError, get_model
from modellib.models.heat_exchanger import effectiveness

CP = 4186.0


def hx(**params: object) -> Model:
    return get_model("HeatExchanger")({"ua": 2000.0, **params})


def run(model: Model, th: float, tc: float, mh: float, mc: float) -> dict[str, float]:
    return dict(model.output(0.0, {"hot_inlet_temperature": th, "cold_inlet_temperature": tc,
                                   "hot_mass_flow": mh, "cold_mass_flow": mc}, {}))


@pytest.mark.parametrize("ntu", [0.0, 0.1, 1.0, 3.0, 10.0, 50.0])
def test_cr_zero_gives_one_minus_exp_for_both_arrangements(ntu: float) -> None:
    for arrangement in ("counter", "parallel"):
        assert effectiveness(ntu, 0.0, arrangement) == pytest.approx(1.0 - math.exp(-ntu),
                                                                     rel=1e-15, abs=1e-300)


@pytest.mark.parametrize("ntu", [0.1, 1.0, 3.0, 10.0])
def test_counter_flow_cr_one(ntu: float) -> None:
    assert effectiveness(ntu, 1.0, "counter") == ntu / (1.0 + ntu)
    # continuous into Cr = 1 (the expm1 form keeps the digits)
    for cr in (1.0 - 1e-6, 1.0 - 1e-10, 1.0 - 1e-15):
        assert effectiveness(ntu, cr, "counter") == pytest.approx(ntu / (1.0 + ntu), rel=1e-5)
    # through the model: equal capacity rates
    model = hx(ua=ntu * 0.5 * CP)
    y = run(model, 360.0, 290.0, 0.5, 0.5)
    assert y["effectiveness"] == pytest.approx(ntu / (1.0 + ntu), rel=1e-14)


def test_parallel_flow_cr_one_tends_to_one_half() -> None:
    assert effectiveness(60.0, 1.0, "parallel") == pytest.approx(0.5, rel=1e-15)
    assert effectiveness(1.0, 1.0, "parallel") == pytest.approx((1 - math.exp(-2.0)) / 2.0)


def test_hand_computed_values() -> None:
    # NTU = 1, Cr = 0.5: counter (1 - e^-0.5)/(1 - 0.5 e^-0.5) = 0.564733...,
    # parallel (1 - e^-1.5)/1.5 = 0.517913...
    assert effectiveness(1.0, 0.5, "counter") == pytest.approx(0.5647334, rel=1e-6)
    assert effectiveness(1.0, 0.5, "parallel") == pytest.approx(0.5179132, rel=1e-6)
    # counter flow beats parallel flow at the same NTU and Cr
    for ntu in (0.5, 1.0, 4.0):
        for cr in (0.25, 0.5, 0.75, 1.0):
            assert effectiveness(ntu, cr, "counter") > effectiveness(ntu, cr, "parallel")


@pytest.mark.parametrize("arrangement", ["counter", "parallel"])
@pytest.mark.parametrize(("mh", "mc"), [(0.3, 0.5), (0.5, 0.3), (0.2, 0.2 * CP / 2000.0)])
def test_energy_balance_and_lmtd(arrangement: str, mh: float, mc: float) -> None:
    ua = 1500.0
    model = hx(ua=ua, arrangement=arrangement, cp_hot=2000.0, cp_cold=CP)
    th_in, tc_in = 370.0, 285.0
    y = run(model, th_in, tc_in, mh, mc)
    q = y["heat_rate"]
    assert q > 0.0
    # hot loss = cold gain = heat rate
    assert mh * 2000.0 * (th_in - y["hot_outlet_temperature"]) == pytest.approx(q, rel=1e-12)
    assert mc * CP * (y["cold_outlet_temperature"] - tc_in) == pytest.approx(q, rel=1e-12)
    c_min = min(mh * 2000.0, mc * CP)
    assert y["effectiveness"] == pytest.approx(q / (c_min * (th_in - tc_in)), rel=1e-12)
    # independent check: q = UA * log mean temperature difference
    if arrangement == "counter":
        d1 = th_in - y["cold_outlet_temperature"]
        d2 = y["hot_outlet_temperature"] - tc_in
    else:
        d1 = th_in - tc_in
        d2 = y["hot_outlet_temperature"] - y["cold_outlet_temperature"]
    lmtd = d1 if math.isclose(d1, d2, rel_tol=1e-12) else (d1 - d2) / math.log(d1 / d2)
    assert ua * lmtd == pytest.approx(q, rel=1e-9)


def test_reverse_temperature_difference_gives_negative_heat_rate() -> None:
    y = run(hx(), 290.0, 330.0, 0.4, 0.6)
    assert y["heat_rate"] < 0.0
    assert 290.0 < y["hot_outlet_temperature"] < 330.0
    assert 290.0 < y["cold_outlet_temperature"] < 330.0


def test_zero_flows_without_division_by_zero() -> None:
    model = hx()
    # hot stream stagnant: it takes the cold inlet temperature, the cold stream is unchanged
    y = run(model, 350.0, 290.0, 0.0, 0.4)
    assert y == {"hot_outlet_temperature": 290.0, "cold_outlet_temperature": 290.0,
                 "heat_rate": 0.0, "effectiveness": 1.0}
    y = run(model, 350.0, 290.0, 0.4, 0.0)
    assert y == {"hot_outlet_temperature": 350.0, "cold_outlet_temperature": 350.0,
                 "heat_rate": 0.0, "effectiveness": 1.0}
    # the limit is approached continuously
    y = run(model, 350.0, 290.0, 1e-9, 0.4)
    assert y["hot_outlet_temperature"] == pytest.approx(290.0, abs=1e-9)
    y = run(model, 350.0, 290.0, 0.0, 0.0)
    assert y == {"hot_outlet_temperature": 350.0, "cold_outlet_temperature": 290.0,
                 "heat_rate": 0.0, "effectiveness": 0.0}
    for arrangement in ("counter", "parallel"):
        y = run(hx(arrangement=arrangement), 350.0, 290.0, 0.0, 0.4)
        assert all(np.isfinite(list(y.values())))


def test_negative_mass_flow_is_a_runtime_error() -> None:
    with pytest.raises(ModelRuntimeError, match="cold_mass_flow"):
        run(hx(), 350.0, 290.0, 0.4, -0.1)


def test_outputs_are_floats() -> None:
    y = run(hx(arrangement="parallel"), 350.0, 290.0, 0.3, 0.5)
    assert all(type(v) is float for v in y.values())


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({}, "missing_argument", "ua"),
        ({"ua": 0.0}, "invalid_argument", "ua"),
        ({"ua": 1.0, "arrangement": "cross"}, "invalid_argument", "arrangement"),
        ({"ua": 1.0, "cp_hot": 0.0}, "invalid_argument", "cp_hot"),
        ({"ua": 1.0, "cp_cold": -5.0}, "invalid_argument", "cp_cold"),
    ],
)
def test_parameter_errors(params: dict[str, Any], code: str, field: str) -> None:
    with pytest.raises(CodedError) as info:
        get_model("HeatExchanger")(params)
    assert (info.value.code, info.value.path) == (code, f"params.{field}")


def test_defaults() -> None:
    p = hx().p
    assert (p["arrangement"], p["cp_hot"], p["cp_cold"]) == ("counter", 4186.0, 4186.0)


def test_describe_is_json_with_units_and_descriptions() -> None:
    meta = get_model("HeatExchanger").describe()
    json.dumps(meta)
    assert meta["name"] == "HeatExchanger" and meta["description"] and meta["reference"]
    assert meta["states"] == []
    for kind in ("parameters", "inputs", "outputs", "states"):
        for var in meta[kind]:
            assert var["unit"].isascii() and var["unit"] and var["description"], var
