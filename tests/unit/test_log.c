/* test_log.c — text and JSON log lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/json.h"
#include "common/log.h"

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_text_and_json(void **state)
{
    (void)state;
    char path[] = "/tmp/kvchat-log-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    assert_int_equal(log_open(path), 0);
    log_set_tag("unit");
    log_set_level(LOG_INFO);
    log_debug("hidden %d", 1);
    log_info("plain %d", 42);
    log_set_format(LOG_FORMAT_JSON);
    log_warn("a \"quoted\"\tline\nwith a break \\ end");
    log_set_format(LOG_FORMAT_TEXT);
    log_close();
    char *s = read_all(path);
    assert_null(strstr(s, "hidden"));
    char *second = strchr(s, '\n');
    assert_non_null(second);
    assert_non_null(strstr(s, "INFO  unit: plain 42"));
    json_t *j = json_loads(second + 1, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(j, "tag")), "unit");
    assert_string_equal(json_string_value(json_object_get(j, "msg")),
                        "a \"quoted\"\tline\nwith a break \\ end");
    assert_int_equal(strlen(json_string_value(json_object_get(j, "ts"))), 24);
    json_decref(j);
    unlink(path);
    log_level_t l;
    assert_int_equal(log_level_parse("warning", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_level_parse("loud", &l), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_text_and_json) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
