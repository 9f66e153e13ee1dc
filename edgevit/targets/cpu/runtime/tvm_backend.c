/* edgevit cpu backend: the TVM backend hooks that TVM's LLVM kernels call, without the TVM runtime.
 *
 * TVM's LLVM code reaches its runtime only through weak (linkonce) function-pointer variables, null
 * by default: __TVMBackendAllocWorkspace / __TVMBackendFreeWorkspace (intermediate buffers too big
 * for the stack) and __TVMBackendParallelLaunch / __TVMBackendParallelBarrier (parallel loops).
 * The strong definitions below win at link time:
 *
 * - workspace comes from one static arena of EV_WORKSPACE_BYTES (define it to resize), handed out
 *   last-in first-out as TVM frees in reverse order of allocation; no malloc. An allocation that
 *   does not fit returns NULL and the kernel returns -1. ev_workspace_peak_bytes() reports the
 *   high-water mark;
 * - parallel loops run serially on the calling thread (one task), a correct stand-in until the
 *   backend's own thread pool serves them.
 *
 * Kernels return 0 on success, nonzero when a workspace allocation failed.
 */
#include <stddef.h>
#include <stdint.h>

#ifndef EV_WORKSPACE_BYTES
#define EV_WORKSPACE_BYTES (1u << 20)
#endif
#define EV_WORKSPACE_ALIGN 64u

typedef struct {
  void *sync_handle;
  int32_t num_task;
} TVMParallelGroupEnv;

typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv *penv, void *cdata);

static uint8_t ev_workspace[EV_WORKSPACE_BYTES] __attribute__((aligned(EV_WORKSPACE_ALIGN)));
static size_t ev_workspace_top, ev_workspace_peak;

static void *ev_alloc_workspace(int device_type, int device_id, uint64_t nbytes, int dtype_code, int dtype_bits) {
  (void)device_type;
  (void)device_id;
  (void)dtype_code;
  (void)dtype_bits;
  uint64_t size = (nbytes + EV_WORKSPACE_ALIGN - 1) & ~(uint64_t)(EV_WORKSPACE_ALIGN - 1);
  if (size > EV_WORKSPACE_BYTES - ev_workspace_top) return NULL;
  void *p = ev_workspace + ev_workspace_top;
  ev_workspace_top += (size_t)size;
  if (ev_workspace_top > ev_workspace_peak) ev_workspace_peak = ev_workspace_top;
  return p;
}

static int ev_free_workspace(int device_type, int device_id, void *ptr) {
  (void)device_type;
  (void)device_id;
  uint8_t *p = (uint8_t *)ptr;
  if (p < ev_workspace || p >= ev_workspace + EV_WORKSPACE_BYTES) return -1;
  ev_workspace_top = (size_t)(p - ev_workspace); /* frees ptr and anything allocated after it */
  return 0;
}

static int ev_parallel_launch(FTVMParallelLambda flambda, void *cdata, int num_task) {
  (void)num_task;
  TVMParallelGroupEnv env = {NULL, 1};
  return flambda(0, &env, cdata);
}

static int ev_parallel_barrier(int task_id, TVMParallelGroupEnv *penv) {
  (void)task_id;
  (void)penv;
  return 0;
}

/* The highest workspace use since start-up, in bytes. */
size_t ev_workspace_peak_bytes(void) { return ev_workspace_peak; }

void *(*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int) = ev_alloc_workspace;
int (*__TVMBackendFreeWorkspace)(int, int, void *) = ev_free_workspace;
int (*__TVMBackendParallelLaunch)(FTVMParallelLambda, void *, int) = ev_parallel_launch;
int (*__TVMBackendParallelBarrier)(int, TVMParallelGroupEnv *) = ev_parallel_barrier;
