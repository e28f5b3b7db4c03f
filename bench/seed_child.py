"""Baseline (a) of bench/e2e.py: the seed design's child process for one request.

Started fresh for every request, as the published design did: it imports
numpy and scipy, computes the same pump operating values, prints the result.
"""

import json
import sys

import numpy as np  # noqa: F401  (the seed's models import both)
import scipy.optimize  # noqa: F401

G = 9.80665
req = json.loads(sys.argv[1])
p = req["params"]
ratio = req["speed"] / p["rated_speed"]
head = p["shutoff_head"] * ratio**2 - p["curve_coefficient"] * req["flow"] ** 2
power = p["density"] * G * req["flow"] * head / p["efficiency"]
print(json.dumps({"id": req["id"], "type": "result", "seq": 1,
                  "values": {"pump.head": head, "pump.power": power}}))
