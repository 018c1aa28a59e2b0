/* lib/metrics_shm: the shared segment, its layout checks and the registry of live workers. */
#include "metrics_shm.h"

#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"

#define VERSION 7                       /* any layout version: the module takes it as given */

/* A payload of one counter, as metrics.c's is many. */
struct payload {
	_Atomic uint64_t hits;
};

static char name[64];

static void fresh_name(void)
{
	static int seq;

	snprintf(name, sizeof(name), "/abacus-check-shm-%d-%d", (int)getpid(), ++seq);
	shm_unlink(name);
}

static struct metrics_shm *open_payload(struct payload **p)
{
	struct metrics_shm *shm = metrics_shm_open(name, VERSION, sizeof(**p));

	*p = metrics_shm_payload(shm);
	return shm;
}

START_TEST(test_metrics_shm_eight_workers_start_together)
{
	/* Many rounds of 8 processes creating/attaching the same fresh segment at once. */
	for (int round = 0; round < 25; round++) {
		pid_t kids[8];
		struct metrics_shm *shm;
		struct payload *p;

		fresh_name();
		for (int i = 0; i < 8; i++) {
			kids[i] = fork();
			ck_assert_int_ge(kids[i], 0);
			if (kids[i] == 0) {
				shm = open_payload(&p);
				if (!metrics_shm_is_shared(shm))
					_exit(2);
				for (int k = 0; k < 1000; k++)
					atomic_fetch_add(&p->hits, 1);
				_exit(0);
			}
		}
		for (int i = 0; i < 8; i++) {
			int st;

			ck_assert_int_eq(waitpid(kids[i], &st, 0), kids[i]);
			ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round %d: worker %d failed", round, i);
		}
		shm = open_payload(&p);
		ck_assert(metrics_shm_is_shared(shm));
		ck_assert_int_eq(atomic_load(&p->hits), 8000);
		ck_assert_int_eq(metrics_shm_workers_alive(shm), 1); /* the 8 are gone; only this process */
		metrics_shm_close(shm);
		shm_unlink(name);
	}
}
END_TEST

START_TEST(test_metrics_shm_never_reads_another_layout)
{
	char fallback[80];
	struct metrics_shm *shm;
	struct payload *p;
	int fd;

	/* A segment of another size and one of our size with a foreign magic. */
	for (int variant = 0; variant < 2; variant++) {
		fresh_name();
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
		ck_assert_int_ge(fd, 0);
		if (variant == 0) {
			ck_assert_int_eq(ftruncate(fd, 4096), 0);
		} else {
			/* Our size, not our header: all 0xff (so "ready" is set, magic wrong). */
			size_t size = metrics_shm_size(sizeof(*p));
			char *junk = malloc(size);

			memset(junk, 0xff, size);
			ck_assert(write(fd, junk, size) == (ssize_t)size);
			free(junk);
		}
		close(fd);
		snprintf(fallback, sizeof(fallback), "%s-v%d", name, VERSION);
		shm_unlink(fallback);
		shm = open_payload(&p);
		ck_assert(metrics_shm_is_shared(shm));
		ck_assert_str_eq(metrics_shm_name(shm), fallback);
		ck_assert_int_eq(atomic_load(&p->hits), 0);
		metrics_shm_close(shm);
		shm_unlink(name);
		shm_unlink(fallback);
	}
}
END_TEST

START_TEST(test_metrics_shm_refuses_another_version)
{
	char fallback[80];
	struct metrics_shm *shm;
	struct metrics_shm *other;

	/* The same payload size, but layout VERSION + 1: a worker of another build. */
	fresh_name();
	other = metrics_shm_open(name, VERSION + 1, sizeof(struct payload));
	ck_assert_str_eq(metrics_shm_name(other), name);
	shm = metrics_shm_open(name, VERSION, sizeof(struct payload));
	snprintf(fallback, sizeof(fallback), "%s-v%d", name, VERSION);
	ck_assert_str_eq(metrics_shm_name(shm), fallback);
	metrics_shm_close(shm);
	metrics_shm_close(other);
	shm_unlink(name);
	shm_unlink(fallback);
}
END_TEST

START_TEST(test_metrics_shm_dead_workers_are_not_counted)
{
	struct metrics_shm *shm;
	pid_t kid;
	int pipefd[2];
	char c;

	fresh_name();
	shm = metrics_shm_open(name, VERSION, sizeof(struct payload));
	ck_assert_int_eq(pipe(pipefd), 0);
	kid = fork();
	if (kid == 0) {
		metrics_shm_open(name, VERSION, sizeof(struct payload));
		(void)!write(pipefd[1], "x", 1);
		pause();
		_exit(0);
	}
	ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
	ck_assert_int_eq(metrics_shm_workers_alive(shm), 2);
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	ck_assert_int_eq(metrics_shm_workers_alive(shm), 1);
	metrics_shm_close(shm);
	shm_unlink(name);
}
END_TEST

START_TEST(test_metrics_shm_closing_unregisters)
{
	struct metrics_shm *shm;
	pid_t kid;
	int st;

	fresh_name();
	shm = metrics_shm_open(name, VERSION, sizeof(struct payload));
	kid = fork();
	if (kid == 0) {
		struct metrics_shm *mine = metrics_shm_open(name, VERSION, sizeof(struct payload));

		/* The parent's mapping came with the fork; this process's own slot goes with close. */
		metrics_shm_close(mine);
		_exit(metrics_shm_workers_alive(shm) == 1 ? 0 : 3);
	}
	ck_assert_int_eq(waitpid(kid, &st, 0), kid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	metrics_shm_close(shm);
	shm_unlink(name);
}
END_TEST

START_TEST(test_metrics_shm_private_when_no_segment_can_be_used)
{
	struct metrics_shm *shm = metrics_shm_open("no/such/segment", VERSION, sizeof(struct payload));
	struct payload *p = metrics_shm_payload(shm);

	ck_assert(!metrics_shm_is_shared(shm));
	ck_assert_str_eq(metrics_shm_name(shm), "");
	ck_assert_int_eq(metrics_shm_workers_alive(shm), 1);
	atomic_fetch_add(&p->hits, 1);
	ck_assert_int_eq(atomic_load(&p->hits), 1);
	metrics_shm_close(shm);
	metrics_shm_close(NULL);
}
END_TEST

START_TEST(test_metrics_shm_header_keeps_its_size)
{
	/* magic, version, size, ready, reserved, then 128 slots of pid + start time. */
	ck_assert_uint_eq(metrics_shm_size(0), 24 + 128 * 16);
	ck_assert_uint_eq(metrics_shm_size(8) % 8, 0);
}
END_TEST

static Suite *metrics_shm_suite(void)
{
	Suite *s = suite_create("metrics_shm");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_set_timeout(limits, 60);
	tcase_add_test(core, test_metrics_shm_closing_unregisters);
	tcase_add_test(core, test_metrics_shm_header_keeps_its_size);
	tcase_add_test(limits, test_metrics_shm_eight_workers_start_together);
	tcase_add_test(errors, test_metrics_shm_never_reads_another_layout);
	tcase_add_test(errors, test_metrics_shm_refuses_another_version);
	tcase_add_test(errors, test_metrics_shm_dead_workers_are_not_counted);
	tcase_add_test(errors, test_metrics_shm_private_when_no_segment_can_be_used);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(metrics_shm_suite)
