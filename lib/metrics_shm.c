#include "metrics_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "decimal.h"
#include "log.h"

#define MAGIC 0x31534349524d4241ULL     /* "ABMRICS1", little-endian */
#define MAX_WORKERS 128
#define OPEN_WAIT_MS 2000

struct worker_slot {
	_Atomic int32_t pid;            /* 0: free; -pid: that worker is registering */
	_Atomic uint64_t start_ticks;   /* /proc/<pid>/stat starttime, against pid reuse */
};

/* The bytes of /dev/shm/<name>: workers of different builds share them, so they change only with the version. */
struct segment {
	uint64_t magic;                 /* MAGIC once initialised */
	uint32_t version;               /* the caller's layout version */
	uint32_t size;                  /* of the whole segment, payload included */
	_Atomic uint32_t ready;         /* set last, with release order */
	uint32_t reserved;
	struct worker_slot workers[MAX_WORKERS];
	_Alignas(uint64_t) unsigned char payload[]; /* the caller's counters */
};

struct metrics_shm {
	struct segment *seg;            /* mapped, or allocated when private */
	size_t size;                    /* bytes of *seg */
	uint32_t version;               /* the layout asked for */
	bool shared;                    /* false: private memory */
	char name[256];                 /* of the segment in use; "" when private */
};

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void log_segment(enum log_level level, const char *event, const char *name, const char *why)
{
	struct log_line l;

	if (log_begin(&l, level, event, NULL)) {
		log_str(&l, "segment", name);
		log_str(&l, "message", why);
		log_end(&l);
	}
}

/* ---- the worker registry ---- */

/* Field 22 of /proc/<pid>/stat (start time in clock ticks); 0 if unreadable. */
static uint64_t process_start_ticks(pid_t pid)
{
	char path[64], buf[1024];
	FILE *f;
	size_t n;
	const char *p;
	int64_t ticks = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');         /* the command name may contain spaces */
	if (p == NULL)
		return 0;
	/* After ")": field 3 is the state; starttime is field 22. */
	for (int field = 2; field < 22 && p != NULL; field++)
		p = strchr(p + 1, ' ');
	if (p == NULL || decimal_parse_int64(p + 1, strspn(p + 1, "0123456789"), DECIMAL_REFUSE_MINUS_ZERO,
	                                     &ticks) != DECIMAL_OK || ticks < 0)
		return 0;
	return (uint64_t)ticks;
}

static bool process_gone(pid_t pid)
{
	return kill(pid, 0) != 0 && errno != EPERM;
}

static bool slot_alive(struct worker_slot *slot)
{
	int32_t pid = atomic_load_explicit(&slot->pid, memory_order_acquire);
	uint64_t ticks;

	if (pid <= 0 || process_gone(pid))
		return false;
	ticks = atomic_load_explicit(&slot->start_ticks, memory_order_acquire);
	/* 0 while the owner is still registering, or /proc unreadable: trust kill(). */
	return ticks == 0 || process_start_ticks(pid) == 0 || process_start_ticks(pid) == ticks;
}

/* A slot another worker holds (or is registering, pid < 0) whose owner has died. */
static bool slot_reclaimable(struct worker_slot *slot, int32_t pid)
{
	if (pid < 0)
		return process_gone(-pid);
	return !slot_alive(slot);
}

static void register_worker(struct segment *seg)
{
	int32_t me = (int32_t)getpid();
	uint64_t ticks = process_start_ticks(me);

	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < MAX_WORKERS; i++) {
			struct worker_slot *slot = &seg->workers[i];
			int32_t expected = atomic_load(&slot->pid);

			/* First pass: free slots only; second: reclaim dead ones. */
			if (expected != 0 && (pass == 0 || !slot_reclaimable(slot, expected)))
				continue;
			/*
			 * Claimed as -me ("registering": never counted, never freed while
			 * we live), the start time written, then the pid published: a
			 * scrape in between can neither free the slot nor compare our pid
			 * with the start time of the slot's dead previous owner.
			 */
			if (atomic_compare_exchange_strong(&slot->pid, &expected, -me)) {
				atomic_store_explicit(&slot->start_ticks, ticks, memory_order_release);
				atomic_store_explicit(&slot->pid, me, memory_order_release);
				return;
			}
		}
	}
	log_message(LOG_LEVEL_WARN, "metrics_workers_full", NULL,
	            "more than 128 workers on one segment: abacus_workers undercounts");
}

static void unregister_worker(struct segment *seg)
{
	int32_t me = (int32_t)getpid();

	for (int i = 0; i < MAX_WORKERS; i++) {
		int32_t expected = me;

		atomic_compare_exchange_strong(&seg->workers[i].pid, &expected, 0);
	}
}

/* Whether the slot's worker is alive; the slot of a dead one is freed for the next. */
static bool slot_counts(struct worker_slot *slot)
{
	int32_t pid = atomic_load(&slot->pid);

	if (pid == 0)
		return false;
	if (pid < 0) {
		/* Registering; freed only if its owner died on the way. */
		if (process_gone(-pid))
			atomic_compare_exchange_strong(&slot->pid, &pid, 0);
		return false;
	}
	if (slot_alive(slot))
		return true;
	atomic_compare_exchange_strong(&slot->pid, &pid, 0);
	return false;
}

unsigned metrics_shm_workers_alive(struct metrics_shm *shm)
{
	unsigned alive = 0;

	if (!shm->shared)
		return 1;
	for (int i = 0; i < MAX_WORKERS; i++)
		alive += slot_counts(&shm->seg->workers[i]);
	return alive;
}

/* ---- finding the segment ---- */

static void init_header(struct segment *s, const struct metrics_shm *shm)
{
	s->magic = MAGIC;
	s->version = shm->version;
	s->size = (uint32_t)shm->size;
	atomic_store_explicit(&s->ready, 1, memory_order_release);
}

/* Creates the segment; NULL with errno EEXIST if someone else did first. */
static struct segment *create_segment(const char *name, const struct metrics_shm *shm)
{
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	struct segment *s;

	if (fd < 0)
		return NULL;
	if (ftruncate(fd, (off_t)shm->size) != 0) {
		close(fd);
		shm_unlink(name);
		return NULL;
	}
	s = mmap(NULL, shm->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (s == MAP_FAILED) {
		shm_unlink(name);
		return NULL;
	}
	init_header(s, shm);
	return s;
}

enum attach_state {
	ATTACH_WAIT,            /* its creator has not sized it or marked it ready yet */
	ATTACH_OURS,            /* ready, and of our layout */
	ATTACH_UNUSABLE,        /* another layout, or an error: give up on it */
};

static enum attach_state header_state(const struct segment *s, const struct metrics_shm *shm)
{
	if (atomic_load_explicit(&s->ready, memory_order_acquire) == 1)
		return s->magic == MAGIC && s->version == shm->version && s->size == shm->size ?
		       ATTACH_OURS : ATTACH_UNUSABLE;
	if ((s->magic != 0 && s->magic != MAGIC) || s->ready > 1)
		return ATTACH_UNUSABLE; /* not being initialised by one of us */
	return ATTACH_WAIT;
}

/*
 * One look at a segment another worker created; *out is mapped only when it
 * is ours.  A file of another size is another layout: it is never mapped past
 * its end (that would SIGBUS) and never read.
 */
static enum attach_state look_at(int fd, const struct metrics_shm *shm, struct segment **out)
{
	struct stat st;
	struct segment *s;
	enum attach_state state;

	if (fstat(fd, &st) != 0)
		return ATTACH_UNUSABLE;
	if (st.st_size == 0)
		return ATTACH_WAIT;
	if ((size_t)st.st_size != shm->size)
		return ATTACH_UNUSABLE;
	s = mmap(NULL, shm->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (s == MAP_FAILED)
		return ATTACH_UNUSABLE;
	state = header_state(s, shm);
	if (state == ATTACH_OURS)
		*out = s;
	else
		munmap(s, shm->size);
	return state;
}

/* Attaches to a segment another worker created, waiting (bounded) until it is ready. */
static struct segment *attach_segment(const char *name, const struct metrics_shm *shm)
{
	int fd = shm_open(name, O_RDWR, 0);
	struct segment *s = NULL;

	if (fd < 0)
		return NULL;
	for (int waited = 0; waited < OPEN_WAIT_MS; waited++, sleep_ms(1))
		if (look_at(fd, shm, &s) != ATTACH_WAIT)
			break;
	close(fd);
	return s;
}

/* Creates or attaches to the segment `name`; on success it becomes shm's. */
static bool open_named(struct metrics_shm *shm, const char *name)
{
	struct segment *s = create_segment(name, shm);

	if (s == NULL && errno == EEXIST)
		s = attach_segment(name, shm);
	snprintf(shm->name, sizeof(shm->name), "%s", name);
	shm->seg = s;
	return s != NULL;
}

struct metrics_shm *metrics_shm_open(const char *name, uint32_t version, size_t payload_size)
{
	struct metrics_shm *shm = calloc(1, sizeof(*shm));
	char fallback[sizeof(shm->name)];

	if (shm == NULL)
		abort(); /* start-up only: nothing sensible left to do */
	shm->size = offsetof(struct segment, payload) + payload_size;
	shm->version = version;
	shm->shared = open_named(shm, name);
	if (!shm->shared) {
		log_segment(LOG_LEVEL_ERROR, "metrics_segment_mismatch", name,
		            "segment missing, unreadable or of another layout; not reading it");
		snprintf(fallback, sizeof(fallback), "%s-v%u", name, (unsigned)version);
		shm->shared = open_named(shm, fallback);
		if (shm->shared)
			log_segment(LOG_LEVEL_WARN, "metrics_segment_fallback", fallback,
			            "using this segment instead");
	}
	if (!shm->shared) {
		log_segment(LOG_LEVEL_ERROR, "metrics_private", fallback,
		            "no usable shared segment: /metrics shows this worker only");
		shm->seg = calloc(1, shm->size);
		if (shm->seg == NULL)
			abort();
		init_header(shm->seg, shm);
		shm->name[0] = '\0';
	}
	register_worker(shm->seg);
	return shm;
}

void metrics_shm_close(struct metrics_shm *shm)
{
	if (shm == NULL)
		return;
	if (shm->shared) {
		unregister_worker(shm->seg);
		munmap(shm->seg, shm->size);
	} else {
		free(shm->seg);
	}
	free(shm);
}

void *metrics_shm_payload(struct metrics_shm *shm)
{
	return shm->seg->payload;
}

bool metrics_shm_is_shared(const struct metrics_shm *shm)
{
	return shm->shared;
}

const char *metrics_shm_name(const struct metrics_shm *shm)
{
	return shm->name;
}

size_t metrics_shm_size(size_t payload_size)
{
	return offsetof(struct segment, payload) + payload_size;
}
