#ifndef ABACUS_METRICS_SHM_H
#define ABACUS_METRICS_SHM_H

/*
 * The shared-memory segment behind the metrics (docs/METRICS.md): one POSIX
 * segment per front end that every worker maps, and the registry of the
 * workers alive in it.  What the payload holds is metrics.c's business; this
 * module only finds, creates or attaches the segment and keeps the registry.
 *
 * Layout: a header (magic, layout version, total size, a ready flag), 128
 * worker slots (pid and /proc start time, against pid reuse), then the
 * payload, 8-byte aligned.  Workers starting together race on
 * shm_open(O_CREAT | O_EXCL): one creates and initialises, the others wait
 * (bounded) until it is marked ready.  A segment whose header or size is not
 * this layout's is never read: it is logged, and "<name>-v<version>" is used
 * instead; failing that, private memory, so that callers never need to check.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics_shm;

/*
 * Maps (creating if needed) the segment `name` ("/abacus-metrics") of layout
 * `version` with payload_size bytes of payload, falling back as above, and
 * registers this process as a live worker.  Never returns NULL (out of memory
 * at start-up aborts).  Release with metrics_shm_close().
 */
struct metrics_shm *metrics_shm_open(const char *name, uint32_t version, size_t payload_size);

/* Unregisters this process and unmaps (or frees) the segment; the segment itself stays.  NULL is fine. */
void metrics_shm_close(struct metrics_shm *shm);

/* The payload: zeroed when the segment was created, shared with every worker that maps it. */
void *metrics_shm_payload(struct metrics_shm *shm);

/* False when the fallback to private memory was taken: counts are then this worker's only. */
bool metrics_shm_is_shared(const struct metrics_shm *shm);

/* The name of the segment in use; "" for private memory. */
const char *metrics_shm_name(const struct metrics_shm *shm);

/* Bytes of a segment with this payload (the size of /dev/shm/<name>). */
size_t metrics_shm_size(size_t payload_size);

/*
 * Workers registered and alive now (1 for private memory).  Frees, on the
 * way, the slots of workers that died without metrics_shm_close().
 */
unsigned metrics_shm_workers_alive(struct metrics_shm *shm);

#endif
