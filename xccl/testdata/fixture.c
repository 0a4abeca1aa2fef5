// A stand-in for oneCCL's libccl.so.2, for gccl's xccl tests: it exports the C API symbols that
// package xccl binds (include/oneapi/ccl.h of oneCCL 2022.0), records every argument it receives,
// and performs the collectives for host buffers across processes over files in a directory
// derived from the 4096-byte unique id.
//
// Transport: collective number s of a communicator is a rendezvous in which every rank publishes
// its contribution as the file c<s>.r<rank> (written under a temporary name, then renamed), waits
// until every rank's file exists, and computes its output from the files, reducing in rank order so
// that every rank gets bitwise the same result. Seeing every file of collective s proves that every
// rank has finished reading collective s-1, so each rank then removes its own file of s-1. A send
// is eager (the file p<from>-<to>.<n>); the matching receive waits for it, reads it and removes it.
// Inside onecclGroupStart/onecclGroupEnd sends and receives are deferred and run at the end, sends
// first. Every wait gives up after GCCL_XCCL_FIXTURE_TIMEOUT_MS (default 120000) or when the
// communicator is aborted, so nothing hangs forever.
//
// Like oneCCL, group state is per OS thread; in addition a communicator refuses calls from any
// thread but the one that created it, which checks that the binding keeps each communicator on
// one OS thread. onecclAvg is rejected with onecclPluginException, as oneCCL's CPU plugin does.
//
// Environment: GCCL_XCCL_FIXTURE_DIR (where communicators live; default /tmp),
// GCCL_XCCL_FIXTURE_LOG (a file to append one line per call to), GCCL_XCCL_FIXTURE_VERSION (the
// version onecclGetVersion reports), GCCL_XCCL_FIXTURE_TIMEOUT_MS.
//
// Build: cc -shared -fPIC -O2 -o libfixture.so fixture.c [-DFIXTURE_OMIT_ALLTOALL] [-DFIXTURE_NO_DEVICE]
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

enum {
	rSuccess = 0, rError = 1, rSystemError = 2, rInternalError = 3, rInvalidArgument = 4,
	rInvalidUsage = 5, rAllocFailureGPU = 10, rPluginException = 11, rNotImplemented = 12
};
enum { dInt8, dUint8, dInt32, dUint32, dInt64, dUint64, dFloat16, dFloat32, dFloat64, dBfloat16, dCount };
enum { oSum, oProd, oMax, oMin, oAvg };
static const size_t dtSize[dCount] = {1, 1, 4, 4, 8, 8, 2, 4, 8, 2};

typedef struct { unsigned char data[4096]; } onecclUniqueId;

typedef struct fcomm {
	int rank, nranks;
	char dir[3800];
	uint64_t seq;
	uint64_t *sent, *recvd; // p2p messages sent to / received from each peer
	pid_t tid;
	volatile int aborted;
	char lastError[1024];
} fcomm;

// ---- recording ----

static pthread_mutex_t recMu = PTHREAD_MUTEX_INITIALIZER;
static char lastCall[8192];
static unsigned char lastID[4096];
static long calls;
static char globalError[1024];

static void record(const char *fmt, ...) {
	char line[sizeof lastCall];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&recMu);
	memcpy(lastCall, line, sizeof line);
	calls++;
	const char *log = getenv("GCCL_XCCL_FIXTURE_LOG");
	if (log && *log) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			size_t n = strlen(line);
			line[n] = '\n';
			ssize_t w = write(fd, line, n + 1);
			(void)w;
			close(fd);
		}
	}
	pthread_mutex_unlock(&recMu);
}

// fixtureLastCall returns the record of the last call: its name and every argument.
EXPORT const char *fixtureLastCall(void) { return lastCall; }
// fixtureLastID copies the id bytes the last onecclCommInitRank received.
EXPORT void fixtureLastID(void *out) { memcpy(out, lastID, sizeof lastID); }
// fixtureCalls counts the recorded calls.
EXPORT long fixtureCalls(void) { return calls; }

static int fail(fcomm *c, int code, const char *fmt, ...) {
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (c)
		memcpy(c->lastError, msg, sizeof msg);
	memcpy(globalError, msg, sizeof msg);
	return code;
}

static pid_t tid(void) { return (pid_t)syscall(SYS_gettid); }

static int checkComm(fcomm *c, const char *fn) {
	if (!c)
		return fail(NULL, rInvalidArgument, "%s: NULL communicator", fn);
	if (c->tid != tid())
		return fail(c, rInvalidUsage, "%s: communicator created on thread %d used from thread %d (oneCCL state is per thread)",
		            fn, (int)c->tid, (int)tid());
	if (c->aborted)
		return fail(c, rError, "%s: communicator aborted", fn);
	return rSuccess;
}

static int checkType(fcomm *c, const char *fn, int dt) {
	if (dt < 0 || dt >= dCount)
		return fail(c, rInvalidArgument, "%s: unknown datatype %d", fn, dt);
	return rSuccess;
}

// ---- files ----

static long timeoutMs(void) {
	const char *s = getenv("GCCL_XCCL_FIXTURE_TIMEOUT_MS");
	long v = s ? atol(s) : 0;
	return v > 0 ? v : 120000;
}

static double nowMs(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int writeFile(fcomm *c, const char *path, const void *buf, size_t n) {
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return fail(c, rSystemError, "open %s: %s", tmp, strerror(errno));
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return fail(c, rSystemError, "write %s: %s", tmp, strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
	close(fd);
	if (rename(tmp, path) != 0)
		return fail(c, rSystemError, "rename %s: %s", tmp, strerror(errno));
	return rSuccess;
}

// waitFile waits until path exists and returns its size in *size.
static int waitFile(fcomm *c, const char *path, size_t *size) {
	double deadline = nowMs() + timeoutMs();
	struct timespec nap = {0, 20000};
	for (int i = 0;; i++) {
		struct stat st;
		if (stat(path, &st) == 0) {
			*size = (size_t)st.st_size;
			return rSuccess;
		}
		if (c->aborted)
			return fail(c, rError, "communicator aborted while waiting for %s", path);
		if (nowMs() > deadline)
			return fail(c, rSystemError, "rank %d timed out after %ld ms waiting for %s", c->rank, timeoutMs(), path);
		if (i < 50) {
			sched_yield();
			continue;
		}
		nanosleep(&nap, NULL);
		if (nap.tv_nsec < 1000000)
			nap.tv_nsec += 20000;
	}
}

static int readAt(fcomm *c, const char *path, size_t off, void *dst, size_t n) {
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return fail(c, rSystemError, "open %s: %s", path, strerror(errno));
	char *p = dst;
	while (n > 0) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			close(fd);
			return fail(c, rSystemError, "read %s: short file", path);
		}
		p += r;
		off += (size_t)r;
		n -= (size_t)r;
	}
	close(fd);
	return rSuccess;
}

static void collPath(fcomm *c, char *out, uint64_t seq, int rank) {
	snprintf(out, 4096, "%s/c%llu.r%d", c->dir, (unsigned long long)seq, rank);
}

// rendezvous publishes this rank's contribution to the next collective, waits for every rank's
// and checks that each holds want bytes (0: any), then removes this rank's file of the previous one.
static int rendezvous(fcomm *c, const void *mine, size_t n, size_t want, uint64_t *seq) {
	char path[4096];
	*seq = ++c->seq;
	collPath(c, path, *seq, c->rank);
	int rc = writeFile(c, path, mine, n);
	if (rc)
		return rc;
	for (int r = 0; r < c->nranks; r++) {
		size_t size;
		collPath(c, path, *seq, r);
		if ((rc = waitFile(c, path, &size)))
			return rc;
		if (want && size != want)
			return fail(c, rInvalidUsage, "collective %llu: rank %d contributed %zu bytes, rank %d expected %zu",
			            (unsigned long long)*seq, r, size, c->rank, want);
	}
	collPath(c, path, *seq - 1, c->rank);
	unlink(path);
	return rSuccess;
}

// ---- reductions ----

static float halfToFloat(uint16_t h) {
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
	if (exp == 0x1f)
		bits = sign | 0x7f800000 | (man << 13);
	else if (exp == 0) {
		if (man == 0)
			bits = sign;
		else {
			int e = -1;
			do {
				man <<= 1;
				e++;
			} while (!(man & 0x400));
			bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
		}
	} else
		bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

static uint16_t floatToHalf(float f) {
	uint32_t x;
	memcpy(&x, &f, 4);
	uint32_t sign = (x >> 16) & 0x8000, absx = x & 0x7fffffff;
	if (absx >= 0x7f800000) // inf or nan
		return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0));
	if (absx >= 0x477ff000) // rounds to >= 65520: inf
		return (uint16_t)(sign | 0x7c00);
	if (absx < 0x38800000) { // subnormal half (or zero)
		float a;
		memcpy(&a, &absx, 4);
		float scaled = a * 16777216.0f; // 2^24: one half subnormal ulp is 2^-24
		uint32_t m = (uint32_t)scaled;
		float rem = scaled - (float)m;
		if (rem > 0.5f || (rem == 0.5f && (m & 1)))
			m++;
		return (uint16_t)(sign | m);
	}
	uint32_t e = (absx >> 23) - 127 + 15, m = absx & 0x7fffff;
	uint32_t h = (e << 10) | (m >> 13), rest = m & 0x1fff;
	if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
		h++;
	return (uint16_t)(sign | h);
}

static float bf16ToFloat(uint16_t b) {
	uint32_t x = (uint32_t)b << 16;
	float f;
	memcpy(&f, &x, 4);
	return f;
}

static uint16_t floatToBf16(float f) {
	uint32_t x;
	memcpy(&x, &f, 4);
	if ((x & 0x7fffffff) > 0x7f800000)
		return (uint16_t)((x >> 16) | 0x40);
	x += 0x7fff + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}

#define MINMAX(op, a, v) ((op) == oMax ? ((v) > (a) ? (v) : (a)) : ((v) < (a) ? (v) : (a)))

// SIGNED_INT: sum and product wrap (computed unsigned); min and max compare signed.
#define COMBINE_INT(T, U)                                                                          \
	do {                                                                                           \
		T *a = acc;                                                                                \
		const T *in = src;                                                                         \
		for (size_t i = 0; i < n; i++) {                                                           \
			if (first)                                                                             \
				a[i] = in[i];                                                                      \
			else if (op == oSum)                                                                   \
				a[i] = (T)((U)a[i] + (U)in[i]);                                                    \
			else if (op == oProd)                                                                  \
				a[i] = (T)((U)a[i] * (U)in[i]);                                                    \
			else                                                                                   \
				a[i] = MINMAX(op, a[i], in[i]);                                                    \
		}                                                                                          \
	} while (0)

#define COMBINE_FLOAT(T, ACC, LOAD)                                                                \
	do {                                                                                           \
		ACC *a = acc;                                                                              \
		const T *in = src;                                                                         \
		for (size_t i = 0; i < n; i++) {                                                           \
			ACC v = LOAD(in[i]);                                                                   \
			if (first)                                                                             \
				a[i] = v;                                                                          \
			else if (op == oSum)                                                                   \
				a[i] += v;                                                                         \
			else if (op == oProd)                                                                  \
				a[i] *= v;                                                                         \
			else                                                                                   \
				a[i] = MINMAX(op, a[i], v);                                                        \
		}                                                                                          \
	} while (0)

#define SAME(x) (x)

// accSize is the size of an accumulator element: float for the 16-bit floats, else the type's.
static size_t accSize(int dt) { return (dt == dFloat16 || dt == dBfloat16) ? 4 : dtSize[dt]; }

static void combine(int dt, int op, void *acc, const void *src, size_t n, int first) {
	switch (dt) {
	case dInt8: COMBINE_INT(int8_t, uint8_t); break;
	case dUint8: COMBINE_INT(uint8_t, uint8_t); break;
	case dInt32: COMBINE_INT(int32_t, uint32_t); break;
	case dUint32: COMBINE_INT(uint32_t, uint32_t); break;
	case dInt64: COMBINE_INT(int64_t, uint64_t); break;
	case dUint64: COMBINE_INT(uint64_t, uint64_t); break;
	case dFloat32: COMBINE_FLOAT(float, float, SAME); break;
	case dFloat64: COMBINE_FLOAT(double, double, SAME); break;
	case dFloat16: COMBINE_FLOAT(uint16_t, float, halfToFloat); break;
	case dBfloat16: COMBINE_FLOAT(uint16_t, float, bf16ToFloat); break;
	}
}

static void storeAcc(int dt, void *dst, const void *acc, size_t n) {
	if (dt == dFloat16 || dt == dBfloat16) {
		const float *a = acc;
		uint16_t *d = dst;
		for (size_t i = 0; i < n; i++)
			d[i] = dt == dFloat16 ? floatToHalf(a[i]) : floatToBf16(a[i]);
		return;
	}
	memcpy(dst, acc, n * dtSize[dt]);
}

// reduceSlot reduces elements [off, off+n) of every rank's contribution to collective seq into
// dst, in rank order.
static int reduceSlot(fcomm *c, uint64_t seq, int dt, int op, size_t off, size_t n, void *dst) {
	if (n == 0)
		return rSuccess;
	size_t es = dtSize[dt];
	void *acc = malloc(n * accSize(dt)), *tmp = malloc(n * es);
	if (!acc || !tmp) {
		free(acc);
		free(tmp);
		return fail(c, rSystemError, "out of memory reducing %zu elements", n);
	}
	int rc = rSuccess;
	char path[4096];
	for (int r = 0; r < c->nranks && !rc; r++) {
		collPath(c, path, seq, r);
		if (!(rc = readAt(c, path, off * es, tmp, n * es)))
			combine(dt, op, acc, tmp, n, r == 0);
	}
	if (!rc)
		storeAcc(dt, dst, acc, n);
	free(acc);
	free(tmp);
	return rc;
}

static int checkOp(fcomm *c, const char *fn, int op) {
	if (op == oAvg)
		return fail(c, rPluginException, "%s: the CPU plugin does not support onecclAvg", fn);
	if (op < 0 || op > oMin)
		return fail(c, rInvalidArgument, "%s: unknown reduction op %d", fn, op);
	return rSuccess;
}

// ---- the C API ----

static long fixtureVersion(void) {
	const char *s = getenv("GCCL_XCCL_FIXTURE_VERSION");
	return s ? atol(s) : 20220000;
}

EXPORT int onecclGetVersion(int *version) {
	if (!version)
		return fail(NULL, rInvalidArgument, "onecclGetVersion: NULL version");
	*version = (int)fixtureVersion();
	return rSuccess;
}

// fixtureDirectNs calls onecclGetVersion iters times straight from C, through a volatile function
// pointer as a dynamic call would go, and returns the nanoseconds per call: the baseline the Go
// binding's per-call overhead is measured against.
EXPORT double fixtureDirectNs(long iters) {
	int (*volatile fn)(int *) = onecclGetVersion;
	int v;
	double t0 = nowMs();
	for (long i = 0; i < iters; i++)
		fn(&v);
	return (nowMs() - t0) * 1e6 / (double)iters;
}

EXPORT const char *onecclGetErrorString(int result) {
	switch (result) {
	case rSuccess: return "onecclSuccess: no error";
	case rError: return "onecclError: unhandled error";
	case rSystemError: return "onecclSystemError: a system call failed";
	case rInternalError: return "onecclInternalError: internal error";
	case rInvalidArgument: return "onecclInvalidArgument: invalid argument";
	case rInvalidUsage: return "onecclInvalidUsage: invalid usage";
	case rPluginException: return "onecclPluginException: the plugin raised an exception";
	case rNotImplemented: return "onecclNotImplemented: not implemented";
	}
	return "unknown oneCCL result";
}

// onecclGetLastError answers only on the communicator's thread, to check that the binding asks
// there (a library may keep the message per thread).
EXPORT const char *onecclGetLastError(void *comm) {
	fcomm *c = comm;
	if (c && c->tid != tid())
		return "onecclGetLastError called from a thread that is not the communicator's";
	return c ? c->lastError : globalError;
}

EXPORT int onecclGetUniqueId(onecclUniqueId *id) {
	record("onecclGetUniqueId id=%p", (void *)id);
	if (!id)
		return fail(NULL, rInvalidArgument, "onecclGetUniqueId: NULL id");
	int fd = open("/dev/urandom", O_RDONLY);
	if (fd < 0 || read(fd, id->data, sizeof id->data) != (ssize_t)sizeof id->data) {
		if (fd >= 0)
			close(fd);
		return fail(NULL, rSystemError, "onecclGetUniqueId: /dev/urandom: %s", strerror(errno));
	}
	close(fd);
	return rSuccess;
}

EXPORT int onecclCommInitRank(fcomm **comm, size_t nranks, onecclUniqueId id, int rank) {
	pthread_mutex_lock(&recMu);
	memcpy(lastID, id.data, sizeof lastID);
	pthread_mutex_unlock(&recMu);
	uint64_t h = 1469598103934665603ULL; // FNV-1a of every byte: the communicator's name
	for (size_t i = 0; i < sizeof id.data; i++)
		h = (h ^ id.data[i]) * 1099511628211ULL;
	record("onecclCommInitRank comm=%p nranks=%zu rank=%d idhash=%016llx", (void *)comm, nranks, rank, (unsigned long long)h);
	if (!comm)
		return fail(NULL, rInvalidArgument, "onecclCommInitRank: NULL comm");
	if (nranks < 1 || nranks > 1 << 20 || rank < 0 || (size_t)rank >= nranks)
		return fail(NULL, rInvalidArgument, "onecclCommInitRank: rank %d out of range for %zu ranks", rank, nranks);
	fcomm *c = calloc(1, sizeof *c);
	c->sent = calloc(nranks, sizeof *c->sent);
	c->recvd = calloc(nranks, sizeof *c->recvd);
	c->rank = rank;
	c->nranks = (int)nranks;
	c->tid = tid();
	const char *base = getenv("GCCL_XCCL_FIXTURE_DIR");
	snprintf(c->dir, sizeof c->dir, "%s/xcclfix-%016llx", base && *base ? base : "/tmp", (unsigned long long)h);
	if (mkdir(c->dir, 0700) != 0 && errno != EEXIST) {
		int rc = fail(NULL, rSystemError, "onecclCommInitRank: mkdir %s: %s", c->dir, strerror(errno));
		free(c->sent);
		free(c->recvd);
		free(c);
		return rc;
	}
	*comm = c;
	return rSuccess;
}

EXPORT int onecclCommDestroy(fcomm *c) {
	record("onecclCommDestroy comm=%p", (void *)c);
	if (!c)
		return fail(NULL, rInvalidArgument, "onecclCommDestroy: NULL communicator");
	if (c->tid != tid())
		return fail(c, rInvalidUsage, "onecclCommDestroy: communicator created on thread %d destroyed from thread %d", (int)c->tid, (int)tid());
	free(c->sent);
	free(c->recvd);
	free(c);
	return rSuccess;
}

// onecclCommAbort may be called from any thread: it makes every wait of c fail.
EXPORT int onecclCommAbort(fcomm *c) {
	record("onecclCommAbort comm=%p", (void *)c);
	if (!c)
		return fail(NULL, rInvalidArgument, "onecclCommAbort: NULL communicator");
	c->aborted = 1;
	return rSuccess;
}

EXPORT int onecclCommCount(fcomm *c, int *size) {
	record("onecclCommCount comm=%p size=%p", (void *)c, (void *)size);
	int rc = checkComm(c, "onecclCommCount");
	if (!rc)
		*size = c->nranks;
	return rc;
}

EXPORT int onecclCommUserRank(fcomm *c, int *rank) {
	record("onecclCommUserRank comm=%p rank=%p", (void *)c, (void *)rank);
	int rc = checkComm(c, "onecclCommUserRank");
	if (!rc)
		*rank = c->rank;
	return rc;
}

#ifndef FIXTURE_NO_DEVICE
static __thread int device = -1;

EXPORT int onecclSetDevice(uint32_t index) {
	record("onecclSetDevice index=%u", index);
	device = (int)index;
	return rSuccess;
}

// The fixture's "device memory" is host memory, so that tests can check what lands in it.
EXPORT int onecclMemAlloc(void **ptr, size_t size) {
	record("onecclMemAlloc ptr=%p size=%zu device=%d", (void *)ptr, size, device);
	if (!ptr)
		return fail(NULL, rInvalidArgument, "onecclMemAlloc: NULL ptr");
	*ptr = calloc(1, size ? size : 1);
	return *ptr ? rSuccess : fail(NULL, rAllocFailureGPU, "onecclMemAlloc: out of memory");
}

EXPORT int onecclMemFree(void *ptr) {
	record("onecclMemFree ptr=%p", ptr);
	free(ptr);
	return rSuccess;
}
#endif

EXPORT int onecclAllReduce(const void *send, void *recv, size_t count, int dt, int op, fcomm *c, void *stream) {
	record("onecclAllReduce send=%p recv=%p count=%zu datatype=%d op=%d comm=%p stream=%p", send, recv, count, dt, op, (void *)c, stream);
	int rc;
	uint64_t seq;
	if ((rc = checkComm(c, "onecclAllReduce")) || (rc = checkType(c, "onecclAllReduce", dt)) || (rc = checkOp(c, "onecclAllReduce", op)))
		return rc;
	size_t n = count * dtSize[dt];
	if ((rc = rendezvous(c, send, n, n, &seq)))
		return rc;
	return reduceSlot(c, seq, dt, op, 0, count, recv);
}

EXPORT int onecclReduce(const void *send, void *recv, size_t count, int dt, int op, int root, fcomm *c, void *stream) {
	record("onecclReduce send=%p recv=%p count=%zu datatype=%d op=%d root=%d comm=%p stream=%p", send, recv, count, dt, op, root, (void *)c, stream);
	int rc;
	uint64_t seq;
	if ((rc = checkComm(c, "onecclReduce")) || (rc = checkType(c, "onecclReduce", dt)) || (rc = checkOp(c, "onecclReduce", op)))
		return rc;
	if (root < 0 || root >= c->nranks)
		return fail(c, rInvalidArgument, "onecclReduce: root %d out of range", root);
	size_t n = count * dtSize[dt];
	if ((rc = rendezvous(c, send, n, n, &seq)))
		return rc;
	return c->rank == root ? reduceSlot(c, seq, dt, op, 0, count, recv) : rSuccess;
}

EXPORT int onecclBroadcast(const void *send, void *recv, size_t count, int dt, int root, fcomm *c, void *stream) {
	record("onecclBroadcast send=%p recv=%p count=%zu datatype=%d root=%d comm=%p stream=%p", send, recv, count, dt, root, (void *)c, stream);
	int rc;
	uint64_t seq;
	if ((rc = checkComm(c, "onecclBroadcast")) || (rc = checkType(c, "onecclBroadcast", dt)))
		return rc;
	if (root < 0 || root >= c->nranks)
		return fail(c, rInvalidArgument, "onecclBroadcast: root %d out of range", root);
	size_t n = count * dtSize[dt];
	if ((rc = rendezvous(c, send, c->rank == root ? n : 0, 0, &seq)))
		return rc;
	char path[4096];
	collPath(c, path, seq, root);
	return c->rank == root || n == 0 ? rSuccess : readAt(c, path, 0, recv, n);
}

EXPORT int onecclAllGather(const void *send, void *recv, size_t count, int dt, fcomm *c, void *stream) {
	record("onecclAllGather send=%p recv=%p count=%zu datatype=%d comm=%p stream=%p", send, recv, count, dt, (void *)c, stream);
	int rc;
	uint64_t seq;
	if ((rc = checkComm(c, "onecclAllGather")) || (rc = checkType(c, "onecclAllGather", dt)))
		return rc;
	size_t n = count * dtSize[dt];
	if ((rc = rendezvous(c, send, n, n, &seq)))
		return rc;
	char path[4096];
	for (int r = 0; r < c->nranks && !rc && n; r++) {
		collPath(c, path, seq, r);
		rc = readAt(c, path, 0, (char *)recv + (size_t)r * n, n);
	}
	return rc;
}

EXPORT int onecclReduceScatter(const void *send, void *recv, size_t count, int dt, int op, fcomm *c, void *stream) {
	record("onecclReduceScatter send=%p recv=%p count=%zu datatype=%d op=%d comm=%p stream=%p", send, recv, count, dt, op, (void *)c, stream);
	int rc;
	uint64_t seq;
	if ((rc = checkComm(c, "onecclReduceScatter")) || (rc = checkType(c, "onecclReduceScatter", dt)) || (rc = checkOp(c, "onecclReduceScatter", op)))
		return rc;
	size_t n = count * dtSize[dt] * (size_t)c->nranks;
	if ((rc = rendezvous(c, send, n, n, &seq)))
		return rc;
	return reduceSlot(c, seq, dt, op, (size_t)c->rank * count, count, recv);
}

#ifndef FIXTURE_OMIT_ALLTOALL
EXPORT int onecclAllToAll(const void *send, void *recv, size_t count, int dt, fcomm *c, void *stream) {
	record("onecclAllToAll send=%p recv=%p count=%zu datatype=%d comm=%p stream=%p", send, recv, count, dt, (void *)c, stream);
	int rc;
	uint64_t seq;
	if ((rc = checkComm(c, "onecclAllToAll")) || (rc = checkType(c, "onecclAllToAll", dt)))
		return rc;
	size_t block = count * dtSize[dt], n = block * (size_t)c->nranks;
	if ((rc = rendezvous(c, send, n, n, &seq)))
		return rc;
	char path[4096];
	for (int r = 0; r < c->nranks && !rc && block; r++) {
		collPath(c, path, seq, r);
		rc = readAt(c, path, (size_t)c->rank * block, (char *)recv + (size_t)r * block, block);
	}
	return rc;
}
#endif

// ---- point to point, and groups ----

typedef struct {
	int isSend;
	void *buf;
	size_t count;
	int dt, peer;
	fcomm *c;
} p2pOp;

static __thread int groupDepth;
static __thread p2pOp *pending;
static __thread size_t npending, cappending;

static int doSend(fcomm *c, const void *buf, size_t count, int dt, int peer) {
	char path[4096];
	snprintf(path, sizeof path, "%s/p%d-%d.%llu", c->dir, c->rank, peer, (unsigned long long)c->sent[peer]++);
	return writeFile(c, path, buf, count * dtSize[dt]);
}

static int doRecv(fcomm *c, void *buf, size_t count, int dt, int peer) {
	char path[4096];
	snprintf(path, sizeof path, "%s/p%d-%d.%llu", c->dir, peer, c->rank, (unsigned long long)c->recvd[peer]++);
	size_t size, n = count * dtSize[dt];
	int rc = waitFile(c, path, &size);
	if (rc)
		return rc;
	if (size != n)
		return fail(c, rInvalidUsage, "onecclRecv: rank %d posted %zu bytes but rank %d sent %zu", c->rank, n, peer, size);
	if (n && (rc = readAt(c, path, 0, buf, n)))
		return rc;
	unlink(path);
	return rSuccess;
}

static int p2p(int isSend, void *buf, size_t count, int dt, int peer, fcomm *c) {
	const char *fn = isSend ? "onecclSend" : "onecclRecv";
	int rc;
	if ((rc = checkComm(c, fn)) || (rc = checkType(c, fn, dt)))
		return rc;
	if (peer < 0 || peer >= c->nranks || peer == c->rank)
		return fail(c, rInvalidArgument, "%s: peer %d invalid for rank %d of %d", fn, peer, c->rank, c->nranks);
	if (groupDepth > 0) {
		if (npending == cappending) {
			cappending = cappending ? 2 * cappending : 16;
			pending = realloc(pending, cappending * sizeof *pending);
		}
		pending[npending++] = (p2pOp){isSend, buf, count, dt, peer, c};
		return rSuccess;
	}
	return isSend ? doSend(c, buf, count, dt, peer) : doRecv(c, buf, count, dt, peer);
}

EXPORT int onecclSend(const void *send, size_t count, int dt, int peer, fcomm *c, void *stream) {
	record("onecclSend send=%p count=%zu datatype=%d peer=%d comm=%p stream=%p group=%d", send, count, dt, peer, (void *)c, stream, groupDepth);
	return p2p(1, (void *)send, count, dt, peer, c);
}

EXPORT int onecclRecv(void *recv, size_t count, int dt, int peer, fcomm *c, void *stream) {
	record("onecclRecv recv=%p count=%zu datatype=%d peer=%d comm=%p stream=%p group=%d", recv, count, dt, peer, (void *)c, stream, groupDepth);
	return p2p(0, recv, count, dt, peer, c);
}

EXPORT int onecclGroupStart(void) {
	record("onecclGroupStart depth=%d", groupDepth);
	groupDepth++;
	return rSuccess;
}

EXPORT int onecclGroupEnd(void) {
	record("onecclGroupEnd depth=%d pending=%zu", groupDepth, npending);
	if (groupDepth == 0)
		return fail(NULL, rInvalidUsage, "onecclGroupEnd without onecclGroupStart on this thread");
	if (--groupDepth > 0)
		return rSuccess;
	int rc = rSuccess;
	for (int pass = 1; pass >= 0; pass--) // sends first: they never block
		for (size_t i = 0; i < npending && !rc; i++) {
			p2pOp *o = &pending[i];
			if (o->isSend == pass)
				rc = pass ? doSend(o->c, o->buf, o->count, o->dt, o->peer) : doRecv(o->c, o->buf, o->count, o->dt, o->peer);
		}
	npending = 0;
	return rc;
}
