#include "log.h"

#include <check.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"

static char *captured;
static size_t captured_len;
static FILE *stream;

static void capture(void)
{
	free(captured);
	captured = NULL;
	stream = open_memstream(&captured, &captured_len);
	log_set_stream(stream);
	log_set_level(LOG_LEVEL_INFO);
}

static const char *output(void)
{
	fflush(stream);
	return captured;
}

START_TEST(test_log_writes_one_json_line)
{
	struct log_line l;
	char expected[256];

	capture();
	ck_assert(log_begin(&l, LOG_LEVEL_INFO, "sum_added", "req-1"));
	log_int(&l, "delta", -5);
	log_str(&l, "key_id", "1a2b3c4d");
	log_bool(&l, "replayed", false);
	log_end(&l);
	ck_assert(strncmp(output(), "{\"ts\":\"", 7) == 0);
	snprintf(expected, sizeof(expected),
	         "\"level\":\"info\",\"event\":\"sum_added\",\"request_id\":\"req-1\",\"pid\":%d,"
	         "\"delta\":-5,\"key_id\":\"1a2b3c4d\",\"replayed\":false}\n", (int)getpid());
	ck_assert_msg(strstr(output(), expected) != NULL, "%s", output());
	ck_assert_int_eq(strchr(output(), '\n') - output() + 1, (long)strlen(output()));
	fclose(stream);
}
END_TEST

START_TEST(test_log_filters_by_level)
{
	struct log_line l;

	capture();
	log_set_level(LOG_LEVEL_WARN);
	ck_assert(!log_begin(&l, LOG_LEVEL_INFO, "x", NULL));
	ck_assert(log_begin(&l, LOG_LEVEL_ERROR, "y", NULL));
	log_end(&l);
	ck_assert(strstr(output(), "\"event\":\"y\",\"request_id\":null,\"pid\":") != NULL);
	ck_assert(strstr(output(), "\"event\":\"x\"") == NULL);
	fclose(stream);
}
END_TEST

START_TEST(test_log_escapes_strings)
{
	struct log_line l;

	capture();
	log_begin(&l, LOG_LEVEL_INFO, "e", NULL);
	log_str(&l, "s", "a\"b\\c\nd\x01");
	log_end(&l);
	ck_assert(strstr(output(), "\"s\":\"a\\\"b\\\\c\\nd\\u0001\"") != NULL);
	fclose(stream);
}
END_TEST

START_TEST(test_log_truncates_long_lines_validly)
{
	struct log_line l;
	char big[3000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	capture();
	log_begin(&l, LOG_LEVEL_INFO, "e", NULL);
	log_str(&l, "big", big);
	log_int(&l, "after", 1);
	log_end(&l);
	ck_assert(strstr(output(), "\"truncated\":true}\n") != NULL);
	ck_assert(strstr(output(), "\"big\"") == NULL);
	ck_assert_int_lt(strlen(output()), LOG_LINE_MAX + 2);
	fclose(stream);
}
END_TEST

START_TEST(test_log_timestamp_and_integers_are_exact)
{
	struct log_line l;
	regex_t ts;

	capture();
	ck_assert(log_begin(&l, LOG_LEVEL_WARN, "e", NULL));
	log_int(&l, "min", INT64_MIN);
	log_int(&l, "max", INT64_MAX);
	log_int(&l, "zero", 0);
	log_end(&l);
	ck_assert_int_eq(regcomp(&ts, "^\\{\"ts\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
	                              "\\.[0-9]{3}Z\",\"level\":\"warn\",", REG_EXTENDED | REG_NOSUB), 0);
	ck_assert_int_eq(regexec(&ts, output(), 0, NULL, 0), 0);
	regfree(&ts);
	ck_assert(strstr(output(), "\"min\":-9223372036854775808,\"max\":9223372036854775807,\"zero\":0}\n")
	          != NULL);
	fclose(stream);
}
END_TEST

/* Without a stream set, a line goes to stderr whole, in one write. */
START_TEST(test_log_line_reaches_stderr_whole)
{
	struct log_line l;
	char path[] = "/tmp/check_log_XXXXXX";
	int fd = mkstemp(path);
	char got[4096];
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	unlink(path);
	ck_assert_int_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	log_set_stream(NULL);
	log_set_level(LOG_LEVEL_INFO);
	ck_assert(log_begin(&l, LOG_LEVEL_INFO, "sum_added", "req-2"));
	log_int(&l, "delta", 7);
	log_end(&l);
	n = pread(fd, got, sizeof(got) - 1, 0);
	ck_assert_int_gt(n, 0);
	got[n] = '\0';
	ck_assert(strstr(got, "\"event\":\"sum_added\",\"request_id\":\"req-2\",\"pid\":") != NULL);
	ck_assert(strstr(got, ",\"delta\":7}\n") != NULL);
	ck_assert_ptr_eq(strchr(got, '\n'), got + n - 1);
	close(fd);
}
END_TEST

START_TEST(test_log_level_parse)
{
	enum log_level lvl;

	ck_assert(log_level_parse("debug", &lvl) && lvl == LOG_LEVEL_DEBUG);
	ck_assert(log_level_parse("error", &lvl) && lvl == LOG_LEVEL_ERROR);
	ck_assert(!log_level_parse("INFO", &lvl));
	ck_assert(!log_level_parse("warning", &lvl));
	ck_assert(!log_level_parse(NULL, &lvl));
}
END_TEST

static Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_add_test(core, test_log_writes_one_json_line);
	tcase_add_test(core, test_log_filters_by_level);
	tcase_add_test(core, test_log_escapes_strings);
	tcase_add_test(core, test_log_line_reaches_stderr_whole);
	tcase_add_test(limits, test_log_timestamp_and_integers_are_exact);
	tcase_add_test(limits, test_log_truncates_long_lines_validly);
	tcase_add_test(errors, test_log_level_parse);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(log_suite)
