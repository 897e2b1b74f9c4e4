"""tagger's vLLM-CPU thread defaults, decided without starting vLLM."""

from __future__ import annotations

from tagger.llm.vllm_engine import CPU_THREAD_ENV, cpu_thread_env

ALL_CORES = {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}


def test_cpu_runs_get_the_measured_default():
    # all cores won the quiet-machine measurement (docs/decisions.md, "LLM budget and speed")
    assert cpu_thread_env(False, {}) == CPU_THREAD_ENV == ALL_CORES
    assert cpu_thread_env(False, {}, ALL_CORES) == ALL_CORES


def test_gpu_runs_are_left_alone():
    assert cpu_thread_env(True, {}, ALL_CORES) == {}


def test_the_users_own_settings_win():
    assert cpu_thread_env(False, {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}, ALL_CORES) == {}
    assert cpu_thread_env(False, {"VLLM_CPU_OMP_THREADS_BIND": "0-3"}, ALL_CORES) == {}
    assert cpu_thread_env(False, {"PATH": "/bin"}, ALL_CORES) == ALL_CORES


def test_the_returned_settings_are_a_copy():
    cpu_thread_env(False, {}, ALL_CORES)["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "7"
    assert ALL_CORES == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
