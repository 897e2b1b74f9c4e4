"""tagger's vLLM-CPU thread defaults, decided without starting vLLM."""

from __future__ import annotations

from tagger.llm.vllm_engine import CPU_THREAD_ENV, cpu_thread_env


def test_cpu_runs_get_openmp_threads_on_every_core():
    assert cpu_thread_env(False, {}) == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"} == CPU_THREAD_ENV


def test_gpu_runs_are_left_alone():
    assert cpu_thread_env(True, {}) == {}


def test_the_users_own_settings_win():
    assert cpu_thread_env(False, {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}) == {}
    assert cpu_thread_env(False, {"VLLM_CPU_OMP_THREADS_BIND": "0-3"}) == {}
    assert cpu_thread_env(False, {"PATH": "/bin"}) == CPU_THREAD_ENV


def test_the_returned_settings_are_a_copy():
    cpu_thread_env(False, {})["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "7"
    assert CPU_THREAD_ENV == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
