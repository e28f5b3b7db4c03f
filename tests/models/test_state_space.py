"""LinearStateSpace against scipy.signal.lsim (the same dx/dt = Ax + Bu, y = Cx + Du).

Reference: K. Ogata, Modern Control Engineering, 5th ed. (2010), sec. 2-4, and
scipy.signal.StateSpace / lsim, which is exact for inputs that are linear between samples
(the ramp and the constant used here). Steady state: A x = -B u.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import integrate, signal

from modellib import CodedError, Model, get_model

# a damped oscillator (poles -1 +- 2j) with 2 inputs and 2 outputs
A = [[0.0, 1.0], [-5.0, -2.0]]
B = [[0.0, 1.0], [1.0, 0.5]]
C = [[1.0, 0.0], [0.5, -1.0]]
D = [[0.0, 0.0], [0.25, 0.0]]
PARAMS = {"A": A, "B": B, "C": C, "D": D}


def model(**over: object) -> Model:
    return get_model("LinearStateSpace")({**PARAMS, **over}, path="params")


def test_ports_follow_the_shapes() -> None:
    m = model()
    assert m.input_names() == ("u1", "u2")
    assert m.output_names() == ("y1", "y2")
    assert m.state_names() == ("x1", "x2")
    assert [v.description for v in m.inputs] == ["input 1 of 2", "input 2 of 2"]
    assert all(v.unit == "1" for v in (*m.inputs, *m.outputs, *m.states))
    assert m.initial_state() == {"x1": 0.0, "x2": 0.0}
    # a 3-state, 1-input, 1-output model without D
    one = get_model("LinearStateSpace")({"A": np.diag([-1.0, -2.0, -3.0]).tolist(),
                                         "B": [[1.0], [1.0], [1.0]], "C": [[1.0, 1.0, 1.0]]})
    assert (one.input_names(), one.output_names(), one.state_names()) == (
        ("u1",), ("y1",), ("x1", "x2", "x3"))
    assert one.output(0.0, {"u1": 9.0}, {"x1": 1.0, "x2": 2.0, "x3": 3.0}) == {"y1": 6.0}
    # the class still describes the templates
    assert get_model("LinearStateSpace").inputs[0].name == "u{i}"


def test_response_matches_scipy_lsim() -> None:
    m = model()
    t = np.linspace(0.0, 8.0, 161)
    u = np.column_stack([0.5 * t, np.ones_like(t)])  # a ramp and a step
    x0 = [1.0, -0.5]
    _, y_ref, x_ref = signal.lsim(signal.StateSpace(A, B, C, D), u, t, X0=x0)

    def rhs(tt: float, z: np.ndarray) -> list[float]:
        d = m.derivatives(tt, {"u1": 0.5 * tt, "u2": 1.0}, {"x1": z[0], "x2": z[1]})
        return [d["x1"], d["x2"]]

    sol = integrate.solve_ivp(rhs, (0.0, 8.0), x0, t_eval=t, method="DOP853",
                              rtol=1e-10, atol=1e-12)
    assert sol.success
    np.testing.assert_allclose(sol.y.T, x_ref, rtol=0, atol=1e-8)
    y = np.array([list(m.output(tt, {"u1": a, "u2": b}, {"x1": p, "x2": q}).values())
                  for tt, (a, b), (p, q) in zip(t, u, sol.y.T, strict=True)])
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-8)


def test_outputs_are_floats_and_d_defaults_to_zero() -> None:
    m = model(D=None)
    y = m.output(0.0, {"u1": 100.0, "u2": 100.0}, {"x1": 1.0, "x2": 2.0})
    assert y == {"y1": 1.0, "y2": -1.5}
    assert all(type(v) is float for v in y.values())
    assert all(type(v) is float for v in m.derivatives(
        0.0, {"u1": 1.0, "u2": 2.0}, {"x1": 1.0, "x2": 2.0}).values())


def test_steady_state_solves_a_x_equals_minus_b_u() -> None:
    m = model()
    u = {"u1": 2.0, "u2": -1.0}
    x = m.steady_state(0.0, u, m.initial_state())
    expected = np.linalg.solve(np.array(A), -np.array(B) @ [2.0, -1.0])
    assert [x["x1"], x["x2"]] == pytest.approx(expected.tolist(), rel=1e-12)
    assert all(abs(v) < 1e-12 for v in m.derivatives(0.0, u, x).values())
    # the DC gain of scipy's model gives the same outputs
    dc = -np.array(C) @ np.linalg.solve(np.array(A), np.array(B)) + np.array(D)
    y = m.output(0.0, u, x)
    assert [y["y1"], y["y2"]] == pytest.approx((dc @ [2.0, -1.0]).tolist(), rel=1e-12)


def test_singular_a_has_no_steady_state() -> None:
    m = model(A=[[0.0, 1.0], [0.0, 0.0]])  # a double integrator
    with pytest.raises(CodedError) as info:
        m.steady_state(0.0, {"u1": 0.0, "u2": 0.0}, m.initial_state())
    assert info.value.code == "runtime_error"
    assert "singular" in info.value.message


@pytest.mark.parametrize(
    ("over", "field", "text"),
    [
        ({"A": [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]]}, "A", "params.A must be square"),
        ({"B": [[1.0], [2.0], [3.0]]}, "B",
         "params.B must have 2 rows (one per row of A), got 3"),
        ({"C": [[1.0, 0.0, 0.0]]}, "C",
         "params.C must have 2 columns (one per column of A), got 3"),
        ({"D": [[0.0, 0.0]]}, "D", "params.D must have 2 rows (one per row of C), got 1"),
        ({"D": [[0.0], [0.0]]}, "D",
         "params.D must have 2 columns (one per column of B), got 1"),
        ({"A": [[0.0, 1.0], [2.0]]}, "A", "rows must all have the same length"),
        ({"B": []}, "B", ""),
        ({"C": [["1", 0.0]]}, "C", "must be a number"),
    ],
)
def test_shape_errors_name_the_matrix(over: dict, field: str, text: str) -> None:
    with pytest.raises(CodedError) as info:
        model(**over)
    assert (info.value.code, info.value.path) == ("invalid_argument", f"params.{field}")
    assert text in info.value.message


def test_missing_matrix_is_a_missing_argument() -> None:
    with pytest.raises(CodedError) as info:
        get_model("LinearStateSpace")({"A": A, "B": B}, path="params")
    assert (info.value.code, info.value.path) == ("missing_argument", "params.C")


def test_describe_is_json_and_every_variable_has_unit_and_description() -> None:
    meta = get_model("LinearStateSpace").describe()
    json.dumps(meta)
    assert meta["description"] and meta["reference"] and meta["feedthrough"] is True
    for kind in ("parameters", "inputs", "outputs", "states"):
        assert meta[kind], kind
        for var in meta[kind]:
            assert var["unit"] and var["description"], var
    m = model()
    for var in (*m.inputs, *m.outputs, *m.states):
        assert var.unit and var.description
        json.dumps(var.describe())
