"""The proofs: benchmarks and chaos runs against real ``hub`` processes.

They live beside the product, not in it: the ``delivery-hub`` wheel and the container image
hold no line of them. They run from a source checkout (``pip install -e '.[bench]'``, which
brings Apprise and matplotlib for two of the benchmarks) as ``hub bench …`` and ``hub chaos …``;
figures and what each run checks are in docs/benchmarks.md and docs/reliability.md.

- ``common``: the hub of real processes a run starts (``start_stack``) and the measuring tools;
- ``servers``: the helper processes (provider fakes, webhook receiver, no-op worker);
- ``webhook_check``: what reached the webhook subscriber, against the hub's records;
- ``bench`` (burst), ``bench_mix``, ``bench_peak``, ``bench_peer``, ``bench_relay``,
  ``bench_scale``, ``bench_webhooks``: the benchmark scenarios;
- ``chaos``: the fault-injection runs;
- ``cli``: what ``hub bench`` and ``hub chaos`` call;
- ``simulate``, ``sim_population``, ``sim_hub``, ``sim_report``: ``hub simulate availability``
  (docs/first-attempt.md).
"""
