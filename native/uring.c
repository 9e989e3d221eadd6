/*
 * memkv.store._uring: positional block I/O through io_uring, for the storage engine's device path.
 *
 * No dependency beyond the kernel UAPI header <linux/io_uring.h>: the rings are set up with
 * raw io_uring_setup / io_uring_enter / io_uring_register system calls and mmap'd directly.
 *
 *   Ring(depth=32, chunk_size=1 MiB, stall_timeout=0.0, wait_slice=0.2)
 *   ring.read(fd, offsets, buffers)  -> list[int]   bytes read into each buffer
 *   ring.write(fd, offsets, buffers) -> list[int]   bytes written from each buffer
 *   ring.write_during(fd, offsets, buffers, during) -> (list[int], during())
 *                                    the same, calling during() (with the GIL) once the first
 *                                    requests are submitted, so that Python work such as hashing
 *                                    the payload overlaps the device write without a thread;
 *                                    during must not use this ring (its lock is held)
 *   ring.register_buffers(buffers)   fixed (pre-pinned) buffers: READ_FIXED / WRITE_FIXED
 *   ring.unregister_buffers(), ring.close()
 *   probe() -> (ok: bool, errno: int)
 *
 * Each call moves every buffer completely: buffers are cut into chunk_size pieces which are
 * queued up to `depth` in flight, submitted and reaped in batches with the GIL released.
 * Short transfers are resubmitted for their remainder; -EAGAIN / -EINTR are retried; a read
 * that returns 0 (end of file) stops that buffer, and its count tells how far it got. Any
 * other error stops new submissions, drains what is in flight, and raises OSError(errno).
 * A Ring serializes its own calls (a lock); use one Ring per thread for parallelism.
 *
 * Waits are never endless where the kernel can bound them (IORING_FEAT_EXT_ARG, 5.11+): the
 * ring waits in slices of wait_slice seconds. After every wait that completed nothing (a slice
 * ran out, or a signal interrupted it) the Python signal handlers run, so a handler's exception
 * (KeyboardInterrupt, a test's timeout) ends the call; with stall_timeout > 0, a call in which no
 * request completes for that many seconds ends with TimeoutError (ETIMEDOUT); a close() from
 * another thread ends it with OSError(ECANCELED). The ring then cancels what is in flight, waits
 * up to ABANDON_WAIT_NS for it, and closes: requests that never answered are "stranded" and the
 * memory they name (the call's buffers, the registered buffers) stays exported, deliberately
 * leaked, so that Python cannot reuse memory the kernel may still write into. Without EXT_ARG
 * only a signal delivered to the waiting thread ends a wait, and stall_timeout does nothing.
 * A signal handler or the callable of write_during that uses the same Ring gets RuntimeError
 * (the ring is busy in that thread) instead of deadlocking on the ring's lock.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if !defined(__linux__)
#error "memkv.store._uring needs Linux"
#endif

#include <errno.h>
#include <linux/io_uring.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_FEAT_EXT_ARG
#define IORING_FEAT_EXT_ARG (1U << 8)
#endif
#ifndef IORING_ENTER_EXT_ARG
#define IORING_ENTER_EXT_ARG (1U << 3)
#endif

#define MAX_DEPTH 4096
#define MAX_REGISTERED 1024
#define MAX_FIXED_LEN (1UL << 30) /* kernel limit per registered buffer */
#define NS_PER_S 1000000000LL
#define DEFAULT_WAIT_SLICE_NS (200LL * 1000000LL) /* longest wait before signals are looked at */
#define POLL_PAUSE_NS (5LL * 1000000LL)       /* drain's pause between looks, without EXT_ARG */
#define ABANDON_WAIT_NS (2LL * NS_PER_S)      /* how long cancelled requests are waited for */
#define CANCEL_TAG UINT64_MAX                 /* user_data of the ring's own cancel requests */

static int sys_setup(unsigned entries, struct io_uring_params *p) {
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
    return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
}

static int sys_register(int fd, unsigned opcode, const void *arg, unsigned nr_args) {
    return (int)syscall(__NR_io_uring_register, fd, opcode, arg, nr_args);
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* ---- the ring -------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    int ring_fd;
    unsigned depth;
    Py_ssize_t chunk_size;
    unsigned features;
    int have_rw; /* IORING_OP_READ / WRITE (5.6+); else READV / WRITEV */
    int ext_arg; /* the kernel bounds a wait (IORING_FEAT_EXT_ARG) */
    long long stall_ns; /* a call with nothing completing for this long is abandoned; 0: never */
    long long slice_ns; /* the longest single wait */
    int closing;        /* close() is waiting for the lock: the call in progress gives up */
    unsigned long owner; /* thread holding the lock (0: none), to refuse re-entry */
    int broken;  /* io_uring_enter failed for the ring as a whole, or a call was abandoned */
    unsigned stranded; /* requests of a broken ring that never completed: their memory must stay */
    /* mappings */
    void *sq_map;
    size_t sq_map_len;
    void *cq_map;
    size_t cq_map_len;
    struct io_uring_sqe *sqes;
    size_t sqes_len;
    /* SQ ring fields */
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    unsigned sq_entries;
    /* CQ ring fields */
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_cqe *cqes;
    /* registered buffers */
    Py_buffer *reg;
    Py_ssize_t nreg;
    PyThread_type_lock lock;
    PyObject *weakreflist;
} Ring;

/* one piece of work in flight: the remainder of a chunk */
typedef struct {
    Py_ssize_t op;     /* index of the buffer it belongs to */
    char *ptr;
    size_t len;
    uint64_t off;
    int fixed;         /* registered buffer index, or -1 */
    struct iovec iov;  /* for READV / WRITEV */
} Slot;

typedef struct {
    char *base;
    size_t len;
    uint64_t off;
    size_t next;       /* next byte not yet cut into a chunk */
    size_t done;       /* bytes transferred */
    uint64_t eof_at;   /* lowest file position where a read hit end of file (UINT64_MAX: none) */
} Op;

static void ring_unmap(Ring *r) {
    if (r->sqes && r->sqes != MAP_FAILED) munmap(r->sqes, r->sqes_len);
    if (r->cq_map && r->cq_map != MAP_FAILED && r->cq_map != r->sq_map) munmap(r->cq_map, r->cq_map_len);
    if (r->sq_map && r->sq_map != MAP_FAILED) munmap(r->sq_map, r->sq_map_len);
    r->sqes = NULL;
    r->cq_map = NULL;
    r->sq_map = NULL;
}

static void ring_release_registered(Ring *r) {
    /* fixed requests the kernel never answered may still write into registered buffers */
    if (!r->stranded) {
        for (Py_ssize_t i = 0; i < r->nreg; i++) PyBuffer_Release(&r->reg[i]);
        PyMem_Free(r->reg);
    }
    r->reg = NULL;
    r->nreg = 0;
}

static void ring_close_fd(Ring *r) {
    ring_unmap(r);
    if (r->ring_fd >= 0) {
        close(r->ring_fd);
        r->ring_fd = -1;
    }
    ring_release_registered(r);
}

static int ring_check_op(int ring_fd, int opcode) {
    /* IORING_REGISTER_PROBE (5.6+): is `opcode` supported? */
    size_t len = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *probe = calloc(1, len);
    int ok = 0;
    if (!probe) return 0;
    if (sys_register(ring_fd, IORING_REGISTER_PROBE, probe, 256) == 0 && opcode <= probe->last_op)
        ok = (probe->ops[opcode].flags & IO_URING_OP_SUPPORTED) != 0;
    free(probe);
    return ok;
}

static int ring_setup(Ring *r, unsigned depth) {
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_COOP_TASKRUN;
    int fd = sys_setup(depth, &p);
    if (fd < 0 && errno == EINVAL) {
        memset(&p, 0, sizeof(p));
        fd = sys_setup(depth, &p);
    }
    if (fd < 0) return -errno;
    r->ring_fd = fd;
    r->features = p.features;
    r->ext_arg = (p.features & IORING_FEAT_EXT_ARG) != 0;
    r->sq_entries = p.sq_entries;

    r->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_map_len > r->sq_map_len) r->sq_map_len = r->cq_map_len;
        r->cq_map_len = r->sq_map_len;
    }
    r->sq_map = mmap(NULL, r->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                     IORING_OFF_SQ_RING);
    if (r->sq_map == MAP_FAILED) goto fail;
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        r->cq_map = r->sq_map;
    } else {
        r->cq_map = mmap(NULL, r->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                         IORING_OFF_CQ_RING);
        if (r->cq_map == MAP_FAILED) goto fail;
    }
    r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED) goto fail;

    char *sq = r->sq_map, *cq = r->cq_map;
    r->sq_head = (unsigned *)(sq + p.sq_off.head);
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    r->have_rw = ring_check_op(fd, IORING_OP_READ) && ring_check_op(fd, IORING_OP_WRITE);
    return 0;
fail:;
    int err = errno;
    ring_close_fd(r);
    return -err;
}

/* ---- submission and completion ---------------------------------------------------------- */

static int find_fixed(Ring *r, const char *ptr, size_t len) {
    for (Py_ssize_t i = 0; i < r->nreg; i++) {
        const char *b = r->reg[i].buf;
        if (ptr >= b && ptr + len <= b + r->reg[i].len) return (int)i;
    }
    return -1;
}

static void prep_sqe(Ring *r, int fd, int is_write, Slot *s, unsigned slot_index) {
    unsigned tail = *r->sq_tail; /* only this thread writes the tail */
    unsigned idx = tail & *r->sq_mask;
    struct io_uring_sqe *sqe = &r->sqes[idx];
    memset(sqe, 0, sizeof(*sqe));
    sqe->fd = fd;
    sqe->off = s->off;
    sqe->user_data = slot_index;
    if (s->fixed >= 0) {
        sqe->opcode = is_write ? IORING_OP_WRITE_FIXED : IORING_OP_READ_FIXED;
        sqe->addr = (uint64_t)(uintptr_t)s->ptr;
        sqe->len = (uint32_t)s->len;
        sqe->buf_index = (uint16_t)s->fixed;
    } else if (r->have_rw) {
        sqe->opcode = is_write ? IORING_OP_WRITE : IORING_OP_READ;
        sqe->addr = (uint64_t)(uintptr_t)s->ptr;
        sqe->len = (uint32_t)s->len;
    } else {
        s->iov.iov_base = s->ptr;
        s->iov.iov_len = s->len;
        sqe->opcode = is_write ? IORING_OP_WRITEV : IORING_OP_READV;
        sqe->addr = (uint64_t)(uintptr_t)&s->iov;
        sqe->len = 1;
    }
    r->sq_array[idx] = idx;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
}

/* The Python side of a call: the GIL's thread state while the ring works without it, the
   callable of write_during with its result or exception, and the exception a signal handler
   raised during a wait. */
typedef enum { KEPT = 0, BY_SIGNAL, BY_STALL, BY_CLOSE } Abandoned;

typedef struct {
    PyThreadState *save;
    PyObject *fn;
    PyObject *result;
    PyObject *etype, *evalue, *etb;
    PyObject *stype, *svalue, *stb;
    Abandoned abandoned; /* why run_ops gave up on the requests in flight, if it did */
} Call;

/* Called once, without the GIL, when the first requests are in flight (write_during). */
static void call_during(Call *c) {
    PyEval_RestoreThread(c->save);
    c->result = PyObject_CallNoArgs(c->fn);
    if (!c->result) PyErr_Fetch(&c->etype, &c->evalue, &c->etb);
    c->save = PyEval_SaveThread();
}

/* Runs the Python signal handlers (main thread only; elsewhere it does nothing); 1 when one
   raised, its exception kept for the caller. */
static int signal_raised(Call *c) {
    PyEval_RestoreThread(c->save);
    int raised = PyErr_CheckSignals() < 0;
    if (raised) PyErr_Fetch(&c->stype, &c->svalue, &c->stb);
    c->save = PyEval_SaveThread();
    return raised;
}

/* io_uring_enter; a wait for completions lasts at most slice_ns where the kernel can bound it
   (then it fails with ETIME having consumed nothing). */
static int enter(Ring *r, unsigned to_submit, unsigned min_complete, long long slice_ns) {
    unsigned flags = min_complete ? IORING_ENTER_GETEVENTS : 0;
    if (!min_complete || !r->ext_arg || slice_ns <= 0) return sys_enter(r->ring_fd, to_submit, min_complete, flags);
    struct __kernel_timespec ts = {.tv_sec = slice_ns / NS_PER_S, .tv_nsec = slice_ns % NS_PER_S};
    struct io_uring_getevents_arg arg;
    memset(&arg, 0, sizeof(arg));
    arg.ts = (uint64_t)(uintptr_t)&ts;
    return (int)syscall(__NR_io_uring_enter, r->ring_fd, to_submit, min_complete, flags | IORING_ENTER_EXT_ARG,
                        &arg, sizeof(arg));
}

/* Wait for `inflight` submitted requests to complete, discarding their results (and the
   completions of the ring's own cancel requests); returns how many could not be waited for:
   the ring refuses even to wait, or ABANDON_WAIT_NS passed. Without EXT_ARG it looks, without
   blocking, every POLL_PAUSE_NS. */
static unsigned drain(Ring *r, unsigned inflight) {
    int refusals = 0;
    long long deadline = now_ns() + ABANDON_WAIT_NS;
    while (inflight && refusals < 3) {
        long long left = deadline - now_ns();
        if (left <= 0) break;
        int ret;
        if (r->ext_arg) {
            ret = enter(r, 0, 1, left < r->slice_ns ? left : r->slice_ns);
        } else {
            ret = sys_enter(r->ring_fd, 0, 0, IORING_ENTER_GETEVENTS); /* runs pending completion work */
            struct timespec pause = {0, POLL_PAUSE_NS};
            nanosleep(&pause, NULL);
        }
        if (ret < 0 && errno != EINTR && errno != ETIME) {
            refusals++;
        }
        unsigned head = *r->cq_head;
        unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
        for (; head != tail; head++) {
            if (r->cqes[head & *r->cq_mask].user_data != CANCEL_TAG && inflight) inflight--;
        }
        __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
    }
    return inflight;
}

/* Give up on the requests in flight: drop what was queued but never consumed by the kernel, ask
   the kernel to cancel every slot that is not free, and wait (bounded) for them. Marks the ring
   broken; returns how many requests are stranded. */
static unsigned abandon(Ring *r, unsigned depth, const unsigned *free_slots, unsigned nfree, unsigned inflight) {
    r->broken = 1;
    __atomic_store_n(r->sq_tail, __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
    unsigned char *is_free = calloc(depth, 1);
    unsigned cancels = 0;
    if (is_free) {
        for (unsigned i = 0; i < nfree; i++) is_free[free_slots[i]] = 1;
        for (unsigned si = 0; si < depth && cancels < r->sq_entries; si++) {
            if (is_free[si]) continue;
            unsigned tail = *r->sq_tail;
            unsigned idx = tail & *r->sq_mask;
            struct io_uring_sqe *sqe = &r->sqes[idx];
            memset(sqe, 0, sizeof(*sqe));
            sqe->opcode = IORING_OP_ASYNC_CANCEL;
            sqe->fd = -1;
            sqe->addr = si; /* the user_data of the request to cancel */
            sqe->user_data = CANCEL_TAG;
            r->sq_array[idx] = idx;
            __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
            cancels++;
        }
        free(is_free);
    }
    if (cancels) sys_enter(r->ring_fd, cancels, 0, 0);
    return drain(r, inflight);
}

/*
 * Move all ops; runs without the GIL. Returns 0 or the positive errno of the first request that
 * failed; call->abandoned says whether, and why, it gave up on the requests in flight.
 */
static int run_ops(Ring *r, int fd, int is_write, Op *ops, Py_ssize_t nops, Call *call) {
    unsigned depth = r->depth;
    Slot *slots = calloc(depth, sizeof(Slot));
    unsigned *free_slots = calloc(depth, sizeof(unsigned));
    unsigned *retry = calloc(depth, sizeof(unsigned));
    if (!slots || !free_slots || !retry) {
        free(slots);
        free(free_slots);
        free(retry);
        return ENOMEM;
    }
    unsigned nfree = depth, nretry = 0, inflight = 0, to_submit = 0;
    for (unsigned i = 0; i < depth; i++) free_slots[i] = depth - 1 - i;
    Py_ssize_t cur = 0; /* first op with bytes not yet cut into chunks */
    int error = 0;
    size_t chunk = (size_t)r->chunk_size;
    int during_pending = call->fn != NULL;
    long long last_progress = now_ns();

    for (;;) {
        /* fill the queue: retries first, then new chunks */
        while (!error && inflight + to_submit < depth) {
            unsigned si;
            if (nretry) {
                si = retry[--nretry];
            } else {
                while (cur < nops && ops[cur].next >= ops[cur].len) cur++;
                if (cur >= nops) break;
                Op *op = &ops[cur];
                size_t n = op->len - op->next;
                if (n > chunk) n = chunk;
                si = free_slots[--nfree];
                Slot *s = &slots[si];
                s->op = cur;
                s->ptr = op->base + op->next;
                s->len = n;
                s->off = op->off + op->next;
                s->fixed = find_fixed(r, s->ptr, n);
                op->next += n;
            }
            prep_sqe(r, fd, is_write, &slots[si], si);
            to_submit++;
        }
        if (inflight + to_submit == 0) break;

        /* submit what is queued and wait for at least one completion; the first time, with a
           hook to run, submit only: the hook runs while the device works */
        unsigned wait_for = during_pending ? 0 : 1;
        int ret = enter(r, to_submit, wait_for, r->slice_ns);
        if (ret < 0) {
            int e = errno;
            if (e != EINTR && e != EAGAIN && e != EBUSY && e != ETIME) {
                /* the ring itself failed (not one request): give up on it. Requests already
                   submitted may still write into the caller's memory, so wait for them; what
                   cannot be waited for is reported as stranded and its buffers are kept. */
                error = error ? error : e;
                r->broken = 1;
                r->stranded = drain(r, inflight);
                break;
            }
            /* nothing was consumed; reap whatever is ready below, then retry */
        } else {
            inflight += (unsigned)ret;
            to_submit -= (unsigned)ret;
            if (during_pending && inflight) {
                call_during(call);
                during_pending = 0;
            }
        }

        /* reap */
        unsigned head = *r->cq_head;
        unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
        int reaped = head != tail;
        if (reaped) last_progress = now_ns();
        while (head != tail) {
            struct io_uring_cqe *cqe = &r->cqes[head & *r->cq_mask];
            unsigned si = (unsigned)cqe->user_data;
            int res = cqe->res;
            head++;
            inflight--;
            Slot *s = &slots[si];
            Op *op = &ops[s->op];
            if (res < 0) {
                if ((res == -EAGAIN || res == -EINTR) && !error) {
                    retry[nretry++] = si;
                    continue;
                }
                if (!error) error = -res;
            } else if (res == 0) {
                if (s->len && !is_write) {
                    if (s->off < op->eof_at) op->eof_at = s->off;
                } else if (s->len && !error) {
                    error = EIO; /* a write that accepted nothing */
                }
            } else {
                op->done += (size_t)res;
                if ((size_t)res < s->len && !error) {
                    s->ptr += res;
                    s->len -= (size_t)res;
                    s->off += (uint64_t)res;
                    retry[nretry++] = si;
                    continue;
                }
            }
            free_slots[nfree++] = si;
        }
        __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
        if (error && inflight == 0) break;

        /* Nothing completed (a slice ran out, a signal interrupted the wait, even the one that
           also submitted, or the kernel said EAGAIN): a signal to handle, a stalled device, or a
           close() waiting. The pass that only submitted for write_during waited for nothing. */
        if (!reaped && inflight && (wait_for || ret < 0)) {
            if (signal_raised(call)) call->abandoned = BY_SIGNAL;
            else if (__atomic_load_n(&r->closing, __ATOMIC_ACQUIRE)) call->abandoned = BY_CLOSE;
            else if (r->stall_ns && r->ext_arg && now_ns() - last_progress >= r->stall_ns) call->abandoned = BY_STALL;
            if (call->abandoned) {
                r->stranded = abandon(r, depth, free_slots, nfree, inflight);
                break;
            }
        }
    }
    free(slots);
    free(free_slots);
    free(retry);
    return error;
}

/* ---- Python methods --------------------------------------------------------------------- */

/* Take the ring's lock (a call of another thread may hold it), running the signal handlers
   while waiting: -1 with an exception when the ring is closed, is busy in this very thread
   (a signal handler or write_during's callable using it), or a handler raised. */
static int ring_lock(Ring *r) {
    if (r->ring_fd < 0) {
        PyErr_SetString(PyExc_ValueError, "I/O on a closed Ring");
        return -1;
    }
    if (r->owner == PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "the Ring is busy with a call of this thread (a signal handler or "
                                            "write_during's callable used it)");
        return -1;
    }
    while (!PyThread_acquire_lock(r->lock, NOWAIT_LOCK)) {
        PyLockStatus got;
        Py_BEGIN_ALLOW_THREADS
        got = PyThread_acquire_lock_timed(r->lock, -1, 1);
        Py_END_ALLOW_THREADS
        if (got == PY_LOCK_ACQUIRED) break;
        if (PyErr_CheckSignals() < 0) return -1;
    }
    if (r->ring_fd < 0) {
        PyThread_release_lock(r->lock);
        PyErr_SetString(PyExc_ValueError, "I/O on a closed Ring");
        return -1;
    }
    r->owner = PyThread_get_thread_ident();
    return 0;
}

static void ring_unlock(Ring *r) {
    r->owner = 0;
    PyThread_release_lock(r->lock);
}

static PyObject *ring_transfer(Ring *r, PyObject *args, int is_write, int with_during) {
    int fd;
    PyObject *offsets_obj, *buffers_obj;
    Call call;
    memset(&call, 0, sizeof(call));
    if (with_during) {
        if (!PyArg_ParseTuple(args, "iOOO", &fd, &offsets_obj, &buffers_obj, &call.fn)) return NULL;
        if (!PyCallable_Check(call.fn)) {
            PyErr_SetString(PyExc_TypeError, "during must be callable");
            return NULL;
        }
    } else if (!PyArg_ParseTuple(args, "iOO", &fd, &offsets_obj, &buffers_obj)) {
        return NULL;
    }
    PyObject *offsets = PySequence_Fast(offsets_obj, "offsets must be a sequence of ints");
    if (!offsets) return NULL;
    PyObject *buffers = PySequence_Fast(buffers_obj, "buffers must be a sequence of buffers");
    if (!buffers) {
        Py_DECREF(offsets);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(offsets);
    PyObject *result = NULL;
    Py_buffer *views = NULL;
    Op *ops = NULL;
    Py_ssize_t got = 0;
    unsigned stranded = 0;
    if (PySequence_Fast_GET_SIZE(buffers) != n) {
        PyErr_SetString(PyExc_ValueError, "offsets and buffers differ in length");
        goto done;
    }
    views = PyMem_Calloc(n ? n : 1, sizeof(Py_buffer));
    ops = PyMem_Calloc(n ? n : 1, sizeof(Op));
    if (!views || !ops) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < n; got++) {
        long long off = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(offsets, got));
        if (off == -1 && PyErr_Occurred()) goto done;
        if (off < 0) {
            PyErr_SetString(PyExc_ValueError, "negative offset");
            goto done;
        }
        int flags = is_write ? PyBUF_SIMPLE : PyBUF_WRITABLE;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(buffers, got), &views[got], flags) < 0) goto done;
        ops[got].base = views[got].buf;
        ops[got].len = (size_t)views[got].len;
        ops[got].off = (uint64_t)off;
        ops[got].eof_at = UINT64_MAX;
    }
    if (ring_lock(r) < 0) goto done;
    call.save = PyEval_SaveThread();
    int err = run_ops(r, fd, is_write, ops, n, &call);
    PyEval_RestoreThread(call.save);
    if (r->broken) {
        stranded = r->stranded;
        ring_close_fd(r);
    }
    ring_unlock(r);
    if (call.abandoned == BY_SIGNAL) {
        PyErr_Restore(call.stype, call.svalue, call.stb);
        call.stype = call.svalue = call.stb = NULL;
        goto done;
    }
    if (!err && call.abandoned != KEPT) {
        /* OSError(errno, ...) is the subclass of that errno (TimeoutError for ETIMEDOUT) */
        int code = call.abandoned == BY_STALL ? ETIMEDOUT : ECANCELED;
        const char *why = call.abandoned == BY_STALL
                              ? "no I/O request completed within the stall timeout (the device stalled); the ring "
                                "was abandoned"
                              : "the Ring was closed by another thread during the call";
        PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", code, why);
        if (exc) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        goto done;
    }
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    if (call.fn && !call.result) {
        if (call.etype) {
            PyErr_Restore(call.etype, call.evalue, call.etb);
            call.etype = call.evalue = call.etb = NULL;
            goto done;
        }
        call.result = PyObject_CallNoArgs(call.fn); /* nothing was submitted (no bytes) */
        if (!call.result) goto done;
    }
    result = PyList_New(n);
    if (!result) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        size_t count = ops[i].done;
        if (ops[i].eof_at != UINT64_MAX) {
            size_t prefix = (size_t)(ops[i].eof_at - ops[i].off);
            if (prefix < count) count = prefix;
        }
        PyObject *v = PyLong_FromSize_t(count);
        if (!v) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, v);
    }
    if (call.fn) {
        PyObject *pair = PyTuple_Pack(2, result, call.result);
        Py_SETREF(result, pair);
    }
done:
    Py_XDECREF(call.result);
    Py_XDECREF(call.etype);
    Py_XDECREF(call.evalue);
    Py_XDECREF(call.etb);
    Py_XDECREF(call.stype);
    Py_XDECREF(call.svalue);
    Py_XDECREF(call.stb);
    /* Buffers of requests a broken ring never completed stay exported (deliberately leaked):
       releasing them would let Python reuse memory the kernel may still write into. */
    if (!stranded)
        for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(ops);
    Py_DECREF(offsets);
    Py_DECREF(buffers);
    return result;
}

static PyObject *Ring_read(Ring *r, PyObject *args) { return ring_transfer(r, args, 0, 0); }
static PyObject *Ring_write(Ring *r, PyObject *args) { return ring_transfer(r, args, 1, 0); }
static PyObject *Ring_write_during(Ring *r, PyObject *args) { return ring_transfer(r, args, 1, 1); }

static PyObject *Ring_register_buffers(Ring *r, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "register_buffers takes a sequence of writable buffers");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > MAX_REGISTERED) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "register between 1 and %d buffers", MAX_REGISTERED);
        return NULL;
    }
    Py_buffer *views = PyMem_Calloc(n, sizeof(Py_buffer));
    struct iovec *iov = PyMem_Calloc(n, sizeof(struct iovec));
    Py_ssize_t got = 0;
    if (!views || !iov) {
        PyErr_NoMemory();
        goto fail;
    }
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &views[got], PyBUF_WRITABLE) < 0) goto fail;
        if (views[got].len <= 0 || (size_t)views[got].len > MAX_FIXED_LEN) {
            got++;
            PyErr_SetString(PyExc_ValueError, "each registered buffer must be 1 byte to 1 GiB");
            goto fail;
        }
        iov[got].iov_base = views[got].buf;
        iov[got].iov_len = (size_t)views[got].len;
    }
    if (ring_lock(r) < 0) goto fail;
    if (r->nreg) {
        sys_register(r->ring_fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
        ring_release_registered(r);
    }
    int rc, err = 0;
    Py_BEGIN_ALLOW_THREADS
    rc = sys_register(r->ring_fd, IORING_REGISTER_BUFFERS, iov, (unsigned)n);
    if (rc < 0) err = errno;
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        ring_unlock(r);
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto fail;
    }
    r->reg = views;
    r->nreg = n;
    ring_unlock(r);
    PyMem_Free(iov);
    Py_DECREF(seq);
    Py_RETURN_NONE;
fail:
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(iov);
    Py_DECREF(seq);
    return NULL;
}

static PyObject *Ring_unregister_buffers(Ring *r, PyObject *Py_UNUSED(ignored)) {
    if (ring_lock(r) < 0) return NULL;
    if (r->nreg) {
        sys_register(r->ring_fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
        ring_release_registered(r);
    }
    ring_unlock(r);
    Py_RETURN_NONE;
}

static PyObject *Ring_close(Ring *r, PyObject *Py_UNUSED(ignored)) {
    if (r->ring_fd < 0) Py_RETURN_NONE;
    __atomic_store_n(&r->closing, 1, __ATOMIC_RELEASE); /* a call in progress gives up at its next wait */
    if (ring_lock(r) < 0) {
        if (r->ring_fd >= 0) { /* a signal handler raised, or this thread's call is in progress */
            __atomic_store_n(&r->closing, 0, __ATOMIC_RELEASE);
            return NULL;
        }
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    ring_close_fd(r);
    ring_unlock(r);
    Py_RETURN_NONE;
}

static PyObject *Ring_enter(Ring *r, PyObject *Py_UNUSED(ignored)) {
    Py_INCREF(r);
    return (PyObject *)r;
}

static PyObject *Ring_exit(Ring *r, PyObject *Py_UNUSED(args)) {
    PyObject *res = Ring_close(r, NULL);
    if (!res) return NULL;
    Py_DECREF(res);
    Py_RETURN_FALSE;
}

static int Ring_init(Ring *r, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"depth", "chunk_size", "stall_timeout", "wait_slice", NULL};
    unsigned int depth = 32;
    Py_ssize_t chunk = 1 << 20;
    double stall = 0.0, slice = (double)DEFAULT_WAIT_SLICE_NS / NS_PER_S;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Indd", kwlist, &depth, &chunk, &stall, &slice)) return -1;
    if (!(stall >= 0.0 && stall <= 86400.0)) {
        PyErr_SetString(PyExc_ValueError, "stall_timeout must be 0 (never) to 86400 seconds");
        return -1;
    }
    if (!(slice >= 0.001 && slice <= 3600.0)) {
        PyErr_SetString(PyExc_ValueError, "wait_slice must be 0.001 to 3600 seconds");
        return -1;
    }
    if (depth < 1 || depth > MAX_DEPTH) {
        PyErr_Format(PyExc_ValueError, "depth must be 1..%d", MAX_DEPTH);
        return -1;
    }
    if (chunk < 4096 || chunk > (1 << 30) || chunk % 4096) {
        PyErr_SetString(PyExc_ValueError, "chunk_size must be a multiple of 4096 between 4 KiB and 1 GiB");
        return -1;
    }
    if (r->ring_fd >= 0) {
        PyErr_SetString(PyExc_RuntimeError, "Ring already initialized");
        return -1;
    }
    int rc = ring_setup(r, depth);
    if (rc < 0) {
        errno = -rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    r->depth = depth < r->sq_entries ? depth : r->sq_entries;
    r->chunk_size = chunk;
    r->stall_ns = (long long)(stall * NS_PER_S);
    r->slice_ns = (long long)(slice * NS_PER_S);
    return 0;
}

static PyObject *Ring_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Ring *r = (Ring *)type->tp_alloc(type, 0);
    if (!r) return NULL;
    r->ring_fd = -1;
    r->lock = PyThread_allocate_lock();
    if (!r->lock) {
        Py_DECREF(r);
        return PyErr_NoMemory();
    }
    return (PyObject *)r;
}

static void Ring_dealloc(Ring *r) {
    if (r->weakreflist) PyObject_ClearWeakRefs((PyObject *)r);
    ring_close_fd(r);
    if (r->lock) PyThread_free_lock(r->lock);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *Ring_get_depth(Ring *r, void *c) { return PyLong_FromUnsignedLong(r->depth); }
static PyObject *Ring_get_chunk(Ring *r, void *c) { return PyLong_FromSsize_t(r->chunk_size); }
static PyObject *Ring_get_nreg(Ring *r, void *c) { return PyLong_FromSsize_t(r->nreg); }
static PyObject *Ring_get_features(Ring *r, void *c) { return PyLong_FromUnsignedLong(r->features); }
static PyObject *Ring_get_closed(Ring *r, void *c) { return PyBool_FromLong(r->ring_fd < 0); }
static PyObject *Ring_get_stall(Ring *r, void *c) { return PyFloat_FromDouble((double)r->stall_ns / NS_PER_S); }
static PyObject *Ring_get_slice(Ring *r, void *c) { return PyFloat_FromDouble((double)r->slice_ns / NS_PER_S); }
static PyObject *Ring_get_bounded(Ring *r, void *c) { return PyBool_FromLong(r->ext_arg); }
static PyObject *Ring_get_stranded(Ring *r, void *c) { return PyLong_FromUnsignedLong(r->stranded); }

static PyGetSetDef Ring_getset[] = {
    {"depth", (getter)Ring_get_depth, NULL, "queue depth (max requests in flight)", NULL},
    {"chunk_size", (getter)Ring_get_chunk, NULL, "bytes per request", NULL},
    {"registered", (getter)Ring_get_nreg, NULL, "number of registered buffers", NULL},
    {"features", (getter)Ring_get_features, NULL, "IORING_FEAT_* bits reported by the kernel", NULL},
    {"closed", (getter)Ring_get_closed, NULL, "True after close()", NULL},
    {"stall_timeout", (getter)Ring_get_stall, NULL, "seconds without a completion before a call is abandoned (0: never)",
     NULL},
    {"wait_slice", (getter)Ring_get_slice, NULL, "the longest single wait, in seconds", NULL},
    {"bounded_waits", (getter)Ring_get_bounded, NULL,
     "True when the kernel bounds waits (IORING_FEAT_EXT_ARG): signals and stall_timeout are seen during a wait", NULL},
    {"stranded", (getter)Ring_get_stranded, NULL, "requests an abandoned call left unanswered (their memory is kept)",
     NULL},
    {NULL},
};

static PyMethodDef Ring_methods[] = {
    {"read", (PyCFunction)Ring_read, METH_VARARGS,
     "read(fd, offsets, buffers) -> list[int]: fill each buffer from its offset"},
    {"write", (PyCFunction)Ring_write, METH_VARARGS,
     "write(fd, offsets, buffers) -> list[int]: write each buffer at its offset"},
    {"write_during", (PyCFunction)Ring_write_during, METH_VARARGS,
     "write_during(fd, offsets, buffers, during) -> (list[int], during()): write, calling during() "
     "while the first requests are in flight"},
    {"register_buffers", (PyCFunction)Ring_register_buffers, METH_O,
     "register_buffers(buffers): pin writable buffers for READ_FIXED / WRITE_FIXED"},
    {"unregister_buffers", (PyCFunction)Ring_unregister_buffers, METH_NOARGS, "drop registered buffers"},
    {"close", (PyCFunction)Ring_close, METH_NOARGS, "close the ring"},
    {"__enter__", (PyCFunction)Ring_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Ring_exit, METH_VARARGS, NULL},
    {NULL},
};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memkv.store._uring.Ring",
    .tp_basicsize = sizeof(Ring),
    .tp_weaklistoffset = offsetof(Ring, weakreflist),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Ring(depth=32, chunk_size=1048576, stall_timeout=0.0, wait_slice=0.2): an io_uring instance for positional file I/O",
    .tp_new = Ring_new,
    .tp_init = (initproc)Ring_init,
    .tp_dealloc = (destructor)Ring_dealloc,
    .tp_methods = Ring_methods,
    .tp_getset = Ring_getset,
};

static PyObject *mod_probe(PyObject *self, PyObject *Py_UNUSED(ignored)) {
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    int fd = sys_setup(1, &p);
    if (fd < 0) return Py_BuildValue("(Oi)", Py_False, errno);
    close(fd);
    return Py_BuildValue("(Oi)", Py_True, 0);
}

static PyMethodDef module_methods[] = {
    {"probe", mod_probe, METH_NOARGS, "probe() -> (ok, errno): can this process set up an io_uring?"},
    {NULL},
};

static struct PyModuleDef uring_module = {
    PyModuleDef_HEAD_INIT, "memkv.store._uring", "io_uring positional I/O for memkv's device path", -1, module_methods,
};

PyMODINIT_FUNC PyInit__uring(void) {
    if (PyType_Ready(&RingType) < 0) return NULL;
    PyObject *m = PyModule_Create(&uring_module);
    if (!m) return NULL;
    Py_INCREF(&RingType);
    if (PyModule_AddObject(m, "Ring", (PyObject *)&RingType) < 0) {
        Py_DECREF(&RingType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH);
    return m;
}
