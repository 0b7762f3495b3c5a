"""Speed and memory benchmarks behind ``aum bench ...``.

Each benchmark is a submodule (``offline``); nothing is imported here, so that
``python -m streaming_aum.bench.offline`` (the per-measurement child process) runs cleanly.
"""
