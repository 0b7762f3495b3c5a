"""``streaming_aum.openmp_wait``: when importing the package shortens torch's OpenMP spin-wait,
when it leaves OpenMP alone, and what ``aum bench offline`` passes to its children.

The speed effect itself is a benchmark figure (BENCHMARKS.md, "Offline: AuM vs AST-B"), not a
test; these check the rules, in this process on plain dicts and in fresh interpreters, where
the import order is real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from streaming_aum import openmp_wait
from streaming_aum.bench import offline

SPIN_VARIABLES = ("GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any OpenMP wait setting or package choice."""
    env = {k: v for k, v in os.environ.items()
           if k not in (*openmp_wait.USER_VARIABLES, openmp_wait.ENV_CHOICE)}
    env.update(extra)
    return env


def test_sets_both_spin_variables_before_torch_loads() -> None:
    env: dict[str, str] = {}
    status = openmp_wait.apply(env, torch_loaded=False)
    assert env == {"GOMP_SPINCOUNT": openmp_wait.SPIN_COUNT,
                   "KMP_BLOCKTIME": openmp_wait.BLOCK_TIME_MS}
    assert status == (f"set GOMP_SPINCOUNT={openmp_wait.SPIN_COUNT} "
                      f"KMP_BLOCKTIME={openmp_wait.BLOCK_TIME_MS}")
    # libgomp parses a plain integer count, Intel OpenMP whole milliseconds
    assert int(openmp_wait.SPIN_COUNT) > 0 and int(openmp_wait.BLOCK_TIME_MS) > 0


@pytest.mark.parametrize("name, value", [("OMP_WAIT_POLICY", "ACTIVE"),
                                         ("GOMP_SPINCOUNT", "300000"),
                                         ("KMP_BLOCKTIME", "200")])
def test_a_users_own_setting_wins(name: str, value: str) -> None:
    env = {name: value}
    status = openmp_wait.apply(env, torch_loaded=False)
    assert env == {name: value}  # nothing added, nothing changed
    assert status.startswith("kept") and f"{name}={value}" in status


def test_keep_leaves_openmp_alone_and_choices_are_checked() -> None:
    env = {openmp_wait.ENV_CHOICE: " Keep "}
    assert openmp_wait.apply(env, torch_loaded=False).startswith("kept")
    assert set(env) == {openmp_wait.ENV_CHOICE}
    env = {openmp_wait.ENV_CHOICE: "auto"}
    assert openmp_wait.apply(env, torch_loaded=False).startswith("set")
    env = {openmp_wait.ENV_CHOICE: "fast"}
    with pytest.warns(RuntimeWarning, match=r"STREAMING_AUM_OPENMP='fast' is not one of auto, "
                                            r"keep: OpenMP left as it is; auto shortens"):
        status = openmp_wait.apply(env, torch_loaded=False)
    assert status.startswith("kept") and set(env) == {openmp_wait.ENV_CHOICE}


def test_too_late_once_torch_is_loaded() -> None:
    env: dict[str, str] = {}
    status = openmp_wait.apply(env, torch_loaded=True)
    assert env == {} and "torch was imported before" in status


def _probe(code: str, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return json.loads(out.strip().splitlines()[-1])


PROBE = ("import json, os{first}\nimport streaming_aum\n"
         "from streaming_aum import openmp_wait as w\n"
         "print(json.dumps({{'status': w.STATUS, 'spin': os.environ.get('GOMP_SPINCOUNT'), "
         "'block': os.environ.get('KMP_BLOCKTIME')}}))")


def test_importing_the_package_first_sets_the_spin_in_a_fresh_interpreter() -> None:
    got = _probe(PROBE.format(first=""), clean_env())
    assert got["status"].startswith("set")
    assert (got["spin"], got["block"]) == (openmp_wait.SPIN_COUNT, openmp_wait.BLOCK_TIME_MS)


def test_importing_torch_first_leaves_the_environment_unchanged() -> None:
    got = _probe(PROBE.format(first="\nimport torch"), clean_env())
    assert "torch was imported before" in got["status"]
    assert got["spin"] is None and got["block"] is None


def test_users_policy_survives_the_import() -> None:
    got = _probe(PROBE.format(first=""), clean_env(OMP_WAIT_POLICY="PASSIVE"))
    assert got["status"].startswith("kept") and got["spin"] is None


def test_bench_children_apply_the_rule_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent's own package setting is not passed on as if the user had set it: every
    child (AuM and AST-B alike) applies the same rule when it imports streaming_aum."""
    for k in (*openmp_wait.USER_VARIABLES, openmp_wait.ENV_CHOICE):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(openmp_wait, "SET_HERE",
                        {"GOMP_SPINCOUNT": openmp_wait.SPIN_COUNT,
                         "KMP_BLOCKTIME": openmp_wait.BLOCK_TIME_MS})
    monkeypatch.setenv("GOMP_SPINCOUNT", openmp_wait.SPIN_COUNT)
    monkeypatch.setenv("KMP_BLOCKTIME", openmp_wait.BLOCK_TIME_MS)
    env = offline._child_env(2)
    assert not set(SPIN_VARIABLES) & set(env)
    assert openmp_wait.apply(dict(env), torch_loaded=False).startswith("set")
    # a value the user changed after the import is theirs: passed on as it is, and kept
    monkeypatch.setenv("GOMP_SPINCOUNT", "5")
    env = offline._child_env(2)
    assert env["GOMP_SPINCOUNT"] == "5"
    assert "GOMP_SPINCOUNT=5" in openmp_wait.apply(dict(env), torch_loaded=False)
    # the user's choice reaches every child
    monkeypatch.setenv(openmp_wait.ENV_CHOICE, "keep")
    assert offline._child_env(2)[openmp_wait.ENV_CHOICE] == "keep"
