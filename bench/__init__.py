"""bench: how fast, how lean and how far a Docker-API-compatible engine scales, side by side with dockerd.

Run it with `python -m bench` (see `python -m bench --help`). Each target is measured in the same run;
the terminal shows medians and the ratio against the reference target (dockerd), and a JSON report is
written under reports/bench/. Nothing here is a timed test: the figures are measurements, not assertions.

Modules: targets (which daemons, the per-target session: probe image, labelled containers, cleanup),
client (a small keep-alive HTTP/1.1 client over unix/tcp sockets), stats (medians, percentiles),
lifecycle, api_rate, streams, memory, suite (the measurements) and report (table + JSON).
"""

BENCH_LABEL = "org.conformance.bench"
