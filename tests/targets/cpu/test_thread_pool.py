"""The cpu runtime's thread pool and per-thread workspace (edgevit/targets/cpu/runtime/tvm_backend.c):
a parallel TVM kernel with a workspace intermediate gives the same outputs at 1, 2 and 3 threads;
tasks run on distinct threads, see num_task, meet at barriers and keep their workspace to themselves
while the others use theirs; statuses propagate; num_task and edgevit_set_threads are clamped;
nested launches run serially. Built with ASan/UBSan (llvm_harness) and once with ThreadSanitizer."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgevit.backend.kernels.base import KernelCode
from edgevit.profiles.profile import load_profile
from edgevit.targets.cpu.isa import llvm_target
from edgevit.targets.cpu.llvm_kernels import assemble, compile_kernels
from tests.targets.cpu.llvm_harness import HOST, build_and_run
from tests.targets.cpu.test_llvm_kernels import parallel_workspace_func

N = 16 * 1024
POOL_MAIN = r"""#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "kernels.h"

typedef struct { void *sync_handle; int32_t num_task; } TVMParallelGroupEnv;
typedef int (*FTVMParallelLambda)(int, TVMParallelGroupEnv *, void *);
extern int (*__TVMBackendParallelLaunch)(FTVMParallelLambda, void *, int);
extern int (*__TVMBackendParallelBarrier)(int, TVMParallelGroupEnv *);
extern void *(*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int);
extern int (*__TVMBackendFreeWorkspace)(int, int, void *);
int edgevit_set_threads(int n);
int edgevit_get_threads(void);
size_t ev_workspace_peak_bytes(void);

#define MAXT 8
#define WS 65536
typedef struct {
  int runs[MAXT], num_task[MAXT], phase[MAXT], sum[MAXT], ws_ok[MAXT], nested[MAXT];
  pthread_t thread[MAXT];
} probe_t;

static int nested_task(int task, TVMParallelGroupEnv *env, void *cdata) {
  (void)task;
  *(int *)cdata = env->num_task;
  return 0;
}

/* Each task fills its own workspace, meets the others twice, checks its workspace is intact. */
static int probe(int task, TVMParallelGroupEnv *env, void *cdata) {
  probe_t *p = (probe_t *)cdata;
  p->runs[task] += 1;
  p->num_task[task] = env->num_task;
  p->thread[task] = pthread_self();
  unsigned char *ws = (unsigned char *)__TVMBackendAllocWorkspace(1, 0, WS, 0, 8);
  if (ws == NULL) return -1;
  memset(ws, task + 1, WS);
  p->phase[task] = 10 * (task + 1);
  __TVMBackendParallelBarrier(task, env);
  int sum = 0;
  for (int k = 0; k < env->num_task; k++) sum += p->phase[k];
  p->sum[task] = sum;
  __TVMBackendParallelBarrier(task, env);
  int ok = 1;
  for (int i = 0; i < WS; i++) ok &= ws[i] == task + 1;
  p->ws_ok[task] = ok;
  __TVMBackendParallelLaunch(nested_task, &p->nested[task], 0);
  return __TVMBackendFreeWorkspace(1, 0, ws);
}

static int failing(int task, TVMParallelGroupEnv *env, void *cdata) {
  (void)env;
  (void)cdata;
  return task == 1 ? 7 : 0;
}

static float a[%(N)d], b[%(N)d];

int main(void) {
  FILE *f = fopen("out.bin", "wb");
  FILE *t = fopen("report.txt", "w");
  if (f == NULL || t == NULL) return 4;
  for (int i = 0; i < %(N)d; i++) a[i] = (float)(i %% 97) - 48.0f;
  for (int threads = 1; threads <= 3; threads++) {
    edgevit_set_threads(threads);
    for (int rep = 0; rep < 50; rep++) { /* many launches: wake-ups, spinning and sleeping workers */
      memset(b, 0, sizeof b);
      if (ev_par_scale(a, b) != 0) return 3;
    }
    fwrite(b, 1, sizeof b, f);
    for (int requested = 0; requested <= 5; requested++) {
      probe_t p;
      memset(&p, 0, sizeof p);
      int rc = __TVMBackendParallelLaunch(probe, &p, requested);
      int n = p.num_task[0], distinct = 0;
      for (int k = 0; k < n; k++) {
        int seen = 0;
        for (int j = 0; j < k; j++) seen |= pthread_equal(p.thread[j], p.thread[k]);
        distinct += !seen;
      }
      int ok = rc == 0;
      for (int k = 0; k < n; k++)
        ok &= p.runs[k] == 1 && p.num_task[k] == n && p.sum[k] == 5 * n * (n + 1) && p.ws_ok[k] && p.nested[k] == 1;
      for (int k = n; k < MAXT; k++) ok &= p.runs[k] == 0;
      fprintf(t, "launch threads=%%d requested=%%d tasks=%%d distinct=%%d ok=%%d\n", threads, requested, n, distinct, ok);
    }
    fprintf(t, "status threads=%%d rc=%%d\n", threads, __TVMBackendParallelLaunch(failing, NULL, 0));
  }
  int low = edgevit_set_threads(0), high = edgevit_set_threads(1000);
  fprintf(t, "clamp %%d %%d %%d\n", low, high, edgevit_get_threads());
  fprintf(t, "peak %%zu\n", ev_workspace_peak_bytes());
  fclose(t);
  fclose(f);
  return 0;
}
""" % {"N": N}


@pytest.fixture(scope="module")
def kernels():
    """The parallel workspace kernel (ev_par_scale) compiled for the host profile."""
    return compile_kernels([KernelCode("ev_par_scale", parallel_workspace_func(), ())], llvm_target(load_profile("host")))


def _report(workdir: Path) -> list[str]:
    return (workdir / "report.txt").read_text().splitlines()


def test_parallel_kernel_and_pool_at_1_2_3_threads(kernels, tmp_path) -> None:
    raw = build_and_run(kernels, POOL_MAIN, HOST, tmp_path)
    outs = np.frombuffer(raw, dtype=np.float32).reshape(3, N)
    a = (np.arange(N) % 97).astype(np.float32) - 48.0
    for out in outs:
        np.testing.assert_array_equal(out, 2 * a + 1)
    lines = _report(tmp_path)
    for threads in (1, 2, 3):
        for requested in range(6):
            tasks = threads if requested == 0 or requested > threads else requested
            assert (f"launch threads={threads} requested={requested} tasks={tasks} distinct={tasks} ok=1" in lines), \
                (threads, requested, lines)
    assert "status threads=1 rc=0" in lines  # one task: task 1 (the failing one) never runs
    assert "status threads=2 rc=7" in lines and "status threads=3 rc=7" in lines
    assert "clamp 1 16 16" in lines
    peak = int(next(ln for ln in lines if ln.startswith("peak")).split()[1])
    assert 65536 <= peak <= 1 << 20  # the largest use of one thread's arena, not the sum over threads


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_pool_is_clean_under_thread_sanitizer(kernels, tmp_path) -> None:
    """The same program built with -fsanitize=thread: no data race between the caller, the workers,
    the barrier and the per-thread workspaces."""
    (tmp_path / "kernels.s").write_text(kernels.assembly)
    (tmp_path / "kernels.h").write_text(kernels.header)
    (tmp_path / "support.c").write_text(kernels.support)
    (tmp_path / "main.c").write_text(POOL_MAIN)
    assemble(tmp_path / "kernels.s", tmp_path / "kernels.o", "gcc")
    build = subprocess.run(["gcc", "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=thread",
                            "-pthread", "main.c", "support.c", "kernels.o", "-o", "k", "-lm"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    done = subprocess.run(["./k"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"TSAN_OPTIONS": "halt_on_error=1 report_signal_unsafe=0", "PATH": "/usr/bin:/bin"})
    if "FATAL: ThreadSanitizer: unexpected memory mapping" in done.stderr:
        pytest.skip("ThreadSanitizer cannot run on this kernel's memory layout (ASLR); needs setarch -R")
    assert done.returncode == 0 and "WARNING: ThreadSanitizer" not in done.stderr, done.stderr[-3000:]
    assert all(ln.endswith("ok=1") for ln in _report(tmp_path) if ln.startswith("launch"))
