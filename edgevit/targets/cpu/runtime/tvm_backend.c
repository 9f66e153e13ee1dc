/* edgevit cpu backend: the TVM backend hooks that TVM's LLVM kernels call, without the TVM runtime.
 *
 * TVM's LLVM code reaches its runtime only through weak (linkonce) function-pointer variables, null
 * by default: __TVMBackendAllocWorkspace / __TVMBackendFreeWorkspace (intermediate buffers too big
 * for the stack) and __TVMBackendParallelLaunch / __TVMBackendParallelBarrier (parallel loops).
 * The strong definitions below win at link time (docs/cpu-backend.md):
 *
 * - thread pool (pthreads, no OpenMP): __TVMBackendParallelLaunch(f, cdata, num_task) runs tasks
 *   0..n-1 with n = num_task clamped to the thread count (num_task 0: the thread count), task 0 on
 *   the calling thread and task k on worker k, unless worker k has not started it by the time the
 *   caller finished task 0 (asleep, or not scheduled on a busy machine): then the caller runs it
 *   itself. Every task sees penv->num_task = n. The workers are created on the first launch that
 *   needs them, then wait for work spinning for EV_SPIN_US microseconds before sleeping on a
 *   condition variable. The thread count starts at
 *   EDGEVIT_DEFAULT_THREADS and is changed by edgevit_set_threads(n) (clamped to 1..EV_MAX_THREADS)
 *   between runs. A launch from inside a task runs serially on that thread (one task).
 *   __TVMBackendParallelBarrier waits until all n tasks of the launch have reached it.
 * - workspace: one LIFO arena of EV_WORKSPACE_BYTES per thread (the calling thread uses arena 0,
 *   worker k arena k; a thread runs its tasks one after the other), static, no malloc; TVM frees in reverse order of allocation. An allocation
 *   that does not fit returns NULL and the kernel returns -1. ev_workspace_peak_bytes() is the
 *   highest use of any one arena.
 *
 * One caller at a time: edgevit_run (and the thread count) may not be used by two threads at once.
 * Kernels return 0 on success, nonzero when a workspace allocation failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifndef EV_WORKSPACE_BYTES
#define EV_WORKSPACE_BYTES (1u << 20) /* per thread */
#endif
#ifndef EDGEVIT_DEFAULT_THREADS
#define EDGEVIT_DEFAULT_THREADS 1
#endif
#ifndef EV_MAX_THREADS
#define EV_MAX_THREADS 16
#endif
#ifndef EV_SPIN_US
#define EV_SPIN_US 500 /* how long an idle worker spins before it sleeps (the caller: before it yields) */
#endif
#ifndef EV_HOT_SPIN_US
#define EV_HOT_SPIN_US 50 /* the first part of that spin, without yielding: the gap between two kernels */
#endif
#define EV_WORKSPACE_ALIGN 64u
#define EV_LINE 64

typedef struct {
  void *sync_handle;
  int32_t num_task;
} TVMParallelGroupEnv;

typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv *penv, void *cdata);

/* ---- workspace: one LIFO arena per thread --------------------------------------------------- */
typedef struct {
  size_t top, peak;
} ev_arena_state;

static uint8_t ev_workspace[EV_MAX_THREADS][EV_WORKSPACE_BYTES] __attribute__((aligned(EV_WORKSPACE_ALIGN)));
static ev_arena_state ev_arena[EV_MAX_THREADS];
static _Thread_local int ev_thread_index;  /* 0: the calling thread, k: worker k */
static _Thread_local int ev_in_task;       /* inside a parallel task: nested launches run serially */

static void *ev_alloc_workspace(int device_type, int device_id, uint64_t nbytes, int dtype_code, int dtype_bits) {
  (void)device_type;
  (void)device_id;
  (void)dtype_code;
  (void)dtype_bits;
  ev_arena_state *a = &ev_arena[ev_thread_index];
  uint64_t size = (nbytes + EV_WORKSPACE_ALIGN - 1) & ~(uint64_t)(EV_WORKSPACE_ALIGN - 1);
  if (size > EV_WORKSPACE_BYTES - a->top) return NULL;
  void *p = ev_workspace[ev_thread_index] + a->top;
  a->top += (size_t)size;
  if (a->top > a->peak) a->peak = a->top;
  return p;
}

static int ev_free_workspace(int device_type, int device_id, void *ptr) {
  (void)device_type;
  (void)device_id;
  uint8_t *base = ev_workspace[ev_thread_index], *p = (uint8_t *)ptr;
  if (p < base || p >= base + EV_WORKSPACE_BYTES) return -1;
  ev_arena[ev_thread_index].top = (size_t)(p - base); /* frees ptr and anything allocated after it */
  return 0;
}

/* The highest workspace use of any one thread's arena since start-up, in bytes. */
size_t ev_workspace_peak_bytes(void) {
  size_t peak = 0;
  for (int i = 0; i < EV_MAX_THREADS; i++)
    if (ev_arena[i].peak > peak) peak = ev_arena[i].peak;
  return peak;
}

/* ---- thread pool -------------------------------------------------------------------------- */
/* A worker's mailbox holds 2 L when the caller posts it task k of launch L, and 2 L + 1 once the task
 * is claimed, by the worker or by the caller (compare-and-swap from 2 L: exactly one of them runs it). */
typedef struct {
  _Alignas(EV_LINE) atomic_uint job;
  unsigned seen; /* the last mailbox value the worker acted on (worker-private) */
  pthread_t thread;
} ev_worker;

static ev_worker ev_workers[EV_MAX_THREADS]; /* index 0 unused: task 0 runs on the caller */
static int ev_threads = EDGEVIT_DEFAULT_THREADS < 1 ? 1
                        : EDGEVIT_DEFAULT_THREADS > EV_MAX_THREADS ? EV_MAX_THREADS : EDGEVIT_DEFAULT_THREADS;
static int ev_started = 1; /* threads that exist: the caller and workers 1..ev_started-1 */
static unsigned ev_launches;
static struct { /* the current launch: written by the caller before it posts the mailboxes */
  FTVMParallelLambda flambda;
  void *cdata;
  int num_task;
} ev_job;
static _Alignas(EV_LINE) atomic_int ev_pending;    /* tasks 1..n-1 not finished yet */
static _Alignas(EV_LINE) atomic_int ev_status;     /* first nonzero task status of the launch */
static _Alignas(EV_LINE) atomic_int ev_sleepers;   /* workers waiting on ev_wake */
static _Alignas(EV_LINE) atomic_int ev_bar_count;  /* barrier: tasks arrived */
static _Alignas(EV_LINE) atomic_uint ev_bar_round; /* barrier: completed barriers */
static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ev_wake = PTHREAD_COND_INITIALIZER;

static inline void ev_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield");
#endif
}

static uint64_t ev_now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Spin until `*word != seen` for at most EV_SPIN_US; 1 if it changed. After EV_HOT_SPIN_US the thread
 * yields its core every 256 pauses, so a spinning worker does not keep a preempted caller (or anyone
 * else on a busy machine) waiting. */
static int ev_spin_until_changed(atomic_uint *word, unsigned seen) {
  uint64_t start = 0;
  for (unsigned i = 1;; i++) {
    if (atomic_load_explicit(word, memory_order_acquire) != seen) return 1;
    ev_pause();
    if ((i & 255u) == 0) {
      uint64_t now = ev_now_ns();
      if (start == 0) start = now;
      if (now - start > (uint64_t)EV_SPIN_US * 1000u) return 0;
      if (now - start > (uint64_t)EV_HOT_SPIN_US * 1000u) sched_yield();
    }
  }
}

static void ev_run_task(int task, TVMParallelGroupEnv *env) {
  int status = ev_job.flambda(task, env, ev_job.cdata);
  if (status != 0) {
    int ok = 0;
    atomic_compare_exchange_strong(&ev_status, &ok, status);
  }
}

/* Run task k of the posted launch if nobody claimed it yet (mailbox value `posted`). */
static void ev_claim_and_run(int k, unsigned posted) {
  if (!atomic_compare_exchange_strong(&ev_workers[k].job, &posted, posted + 1u)) return;
  TVMParallelGroupEnv env = {NULL, ev_job.num_task};
  ev_run_task(k, &env);
  atomic_fetch_sub_explicit(&ev_pending, 1, memory_order_release);
}

static void *ev_worker_main(void *arg) {
  ev_worker *w = (ev_worker *)arg;
  int k = (int)(w - ev_workers);
  ev_thread_index = k;
  ev_in_task = 1;
  for (;;) {
    if (!ev_spin_until_changed(&w->job, w->seen)) {
      pthread_mutex_lock(&ev_lock);
      atomic_fetch_add(&ev_sleepers, 1);
      while (atomic_load(&w->job) == w->seen) pthread_cond_wait(&ev_wake, &ev_lock);
      atomic_fetch_sub(&ev_sleepers, 1);
      pthread_mutex_unlock(&ev_lock);
    }
    unsigned v = atomic_load(&w->job);
    if ((v & 1u) == 0) ev_claim_and_run(k, v); /* posted; else the caller took the task */
    w->seen = v | 1u;
  }
  return NULL;
}

/* Start workers until `n` threads exist (or creation fails); the number of threads that exist. */
static int ev_start_workers(int n) {
  while (ev_started < n) {
    ev_worker *w = &ev_workers[ev_started];
    w->seen = 2u * ev_launches + 1u; /* odd: nothing posted yet */
    atomic_store(&w->job, w->seen);
    if (pthread_create(&w->thread, NULL, ev_worker_main, w) != 0) break;
    pthread_detach(w->thread);
    ev_started++;
  }
  return ev_started;
}

/* Wait until every worker of the launch has finished: spin EV_SPIN_US, then yield the core. */
static void ev_wait_workers(void) {
  uint64_t deadline = 0;
  int yielding = 0;
  for (unsigned i = 1; atomic_load_explicit(&ev_pending, memory_order_acquire) != 0; i++) {
    if (yielding) {
      sched_yield(); /* a worker was descheduled (more threads than free cores): let it run */
      continue;
    }
    ev_pause();
    if ((i & 255u) == 0) {
      uint64_t now = ev_now_ns();
      if (deadline == 0) deadline = now + (uint64_t)EV_SPIN_US * 1000u;
      else if (now > deadline) yielding = 1;
    }
  }
}

static int ev_parallel_launch(FTVMParallelLambda flambda, void *cdata, int num_task) {
  int n = (num_task <= 0 || num_task > ev_threads) ? ev_threads : num_task;
  if (n > 1 && !ev_in_task) {
    int have = ev_start_workers(n);
    if (have < n) n = have;
  }
  if (n <= 1 || ev_in_task) { /* serial: one task on this thread (launches inside it stay serial) */
    TVMParallelGroupEnv env = {NULL, 1};
    int outer = ev_in_task;
    ev_in_task = 1;
    int status = flambda(0, &env, cdata);
    ev_in_task = outer;
    return status;
  }
  ev_job.flambda = flambda;
  ev_job.cdata = cdata;
  ev_job.num_task = n;
  atomic_store(&ev_status, 0);
  atomic_store(&ev_bar_count, 0);
  atomic_store(&ev_pending, n - 1);
  unsigned posted = 2u * ++ev_launches;
  for (int k = 1; k < n; k++) atomic_store(&ev_workers[k].job, posted); /* seq_cst: pairs with ev_sleepers */
  if (atomic_load(&ev_sleepers) > 0) {
    pthread_mutex_lock(&ev_lock);
    pthread_cond_broadcast(&ev_wake);
    pthread_mutex_unlock(&ev_lock);
  }
  TVMParallelGroupEnv env = {NULL, n};
  ev_in_task = 1;
  ev_run_task(0, &env);
  /* Tasks no worker has claimed yet (asleep, or not scheduled on a busy machine) run here, one after
   * the other, on this thread's arena. Safe with barriers: task 0 passed its barriers only once every
   * task had reached them, so a task that uses barriers has been claimed by its worker. */
  for (int k = 1; k < n; k++) ev_claim_and_run(k, posted);
  ev_in_task = 0;
  ev_wait_workers();
  return atomic_load(&ev_status);
}

static int ev_parallel_barrier(int task_id, TVMParallelGroupEnv *penv) {
  (void)task_id;
  int n = penv->num_task;
  if (n <= 1) return 0;
  unsigned round = atomic_load(&ev_bar_round);
  if (atomic_fetch_add(&ev_bar_count, 1) == n - 1) {
    atomic_store(&ev_bar_count, 0);
    atomic_fetch_add(&ev_bar_round, 1);
    return 0;
  }
  for (unsigned i = 1; atomic_load(&ev_bar_round) == round; i++) {
    if (i < 4096u) ev_pause();
    else sched_yield();
  }
  return 0;
}

/* Public API (include/edgevit_model.h): the thread count of the next runs, clamped to
 * 1..EV_MAX_THREADS; returns the count set. Not while edgevit_run is running. */
int edgevit_set_threads(int n) {
  ev_threads = n < 1 ? 1 : n > EV_MAX_THREADS ? EV_MAX_THREADS : n;
  return ev_threads;
}

/* Public API: the thread count parallel loops use (EDGEVIT_DEFAULT_THREADS until changed). */
int edgevit_get_threads(void) { return ev_threads; }

void *(*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int) = ev_alloc_workspace;
int (*__TVMBackendFreeWorkspace)(int, int, void *) = ev_free_workspace;
int (*__TVMBackendParallelLaunch)(FTVMParallelLambda, void *, int) = ev_parallel_launch;
int (*__TVMBackendParallelBarrier)(int, TVMParallelGroupEnv *) = ev_parallel_barrier;
