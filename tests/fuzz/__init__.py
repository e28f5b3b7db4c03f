"""The parts of the fuzz test (``tests/test_fuzz.py``), each importing only those above it:

- :mod:`~tests.fuzz.protocol`: what PROTOCOL.md fixes (commands, ids, reply types, error
  codes) and the fuzzed stack's size limit;
- :mod:`~tests.fuzz.values`: the special values, and JSON with tokens json.dumps cannot
  write;
- :mod:`~tests.fuzz.commands`: hypothesis strategies of valid commands;
- :mod:`~tests.fuzz.random_commands`: random scenarios and commands, mostly wrong;
- :mod:`~tests.fuzz.strategies`: what hypothesis draws (cases, mutations, the mix) and
  the hand-picked warm-up batch;
- :mod:`~tests.fuzz.oracle`: what a correct answer is, and the checks of what came back;
- :mod:`~tests.fuzz.harness`: the stacks, the connection, and the fuzzer that sends in
  batches and waits for the answers;
- :mod:`~tests.fuzz.report`: the summary and the findings by kind.
"""
