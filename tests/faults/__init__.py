"""Helpers of the fault-injection tests (``tests/test_faults_*.py``).

Each fault test runs its own ``redis-server`` and ``mosquitto`` (:mod:`tests.services`)
on free ports, with data directories that survive a restart, and its own controller
id and MQTT prefix; it never touches the machine's shared Redis or broker.

The orchestrator side is :class:`tests.orchestrator.Orchestrator` with a persistent
MQTT 5 session, as a real orchestrator would be written from ``PROTOCOL.md`` alone,
its replies de-duplicated by ``(id, seq)``: at-least-once delivery may repeat a reply,
but a repeated ``(id, seq)`` must be the very same message, and ``seq`` of one
request must run 0..n without a gap.

- :mod:`tests.faults.harness`: the servers, the controller processes and how to kill
  them, the waits on Redis, and the checks of what the orchestrator got;
- :mod:`tests.faults.scenarios`: the commands the tests send;
- :mod:`tests.faults.fixtures`: the pytest fixtures every fault test module imports.
"""
