/* test_config.c — defaults < file < environment < flags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "app/config.h"

static char g_ini[64];

static int setup(void **state)
{
    (void)state;
    snprintf(g_ini, sizeof g_ini, "/tmp/kvchat-config-XXXXXX");
    int fd = mkstemp(g_ini);
    FILE *f = fdopen(fd, "w");
    fputs("; kvchat settings\n"
          "[server]\nport = 9000\nhost = 0.0.0.0\n"
          "[session]\nidle_timeout = 120\n"
          "[prompt]\nsystem_template = Use this:\\n\\n{document}\n"
          "[llm]\nprovider = openai\nbase_url = http://gpu:8000/v1\n"
          "[remote.gpt]\nprovider = openai\nbase_url = https://api.example.com/v1\nmodel = big\n"
          "[remote.gem]\nprovider = gemini\nmodel = flash\n",
          f);
    fclose(f);
    unsetenv("KVCHAT_PORT");
    unsetenv("KVCHAT_CONFIG");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(g_ini);
    return 0;
}

static int load(config_t *c, char **argv, char *err)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    return config_load(c, argc, argv, err, 256);
}

static void test_defaults(void **state)
{
    (void)state;
    config_t c;
    char err[256];
    char *argv[] = { "kvchat", NULL };
    assert_int_equal(load(&c, argv, err), 0);
    assert_int_equal(c.port, 8000);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.session_idle_s, 3600);
    assert_int_equal(c.max_upload_mb, 50);
    assert_string_equal(c.provider, "local");
    assert_true(c.restart_on_crash);
    assert_non_null(strstr(c.system_template, "{document}"));
    config_resolve(&c);
    assert_string_equal(c.database, "sqlite:./data/kvchat.db");
    assert_string_equal(c.logs_dir, "./data/logs");
    assert_string_equal(c.ocr_languages, "eng");
    assert_int_equal(c.ocr_page_s, 60);
    assert_int_equal(c.ocr_s, 600);
}

static void test_layers(void **state)
{
    (void)state;
    config_t c;
    char err[256];
    char *argv1[] = { "kvchat", "--config", g_ini, NULL };
    assert_int_equal(load(&c, argv1, err), 0);
    assert_int_equal(c.port, 9000);                 /* file */
    assert_string_equal(c.host, "0.0.0.0");
    assert_int_equal(c.session_idle_s, 120);
    assert_string_equal(c.system_template, "Use this:\n\n{document}");
    assert_string_equal(c.provider, "openai");
    assert_int_equal(c.n_remotes, 2);
    assert_string_equal(c.remotes[1].name, "gem");
    assert_string_equal(c.remotes[1].provider, "gemini");
    assert_string_equal(c.remotes[0].base_url, "https://api.example.com/v1");

    setenv("KVCHAT_PORT", "9100", 1);               /* environment beats file */
    assert_int_equal(load(&c, argv1, err), 0);
    assert_int_equal(c.port, 9100);
    char *argv2[] = { "kvchat", "--config", g_ini, "--port", "9200", "--set", "session.idle_timeout=5",
                      "--no-autostart", NULL };
    assert_int_equal(load(&c, argv2, err), 0);     /* flags beat both */
    assert_int_equal(c.port, 9200);
    assert_int_equal(c.session_idle_s, 5);
    assert_false(c.autostart);
    unsetenv("KVCHAT_PORT");
}

static void test_errors(void **state)
{
    (void)state;
    config_t c;
    char err[256];
    char *a1[] = { "kvchat", "--port", "http", NULL };
    assert_int_equal(load(&c, a1, err), -1);
    assert_non_null(strstr(err, "port"));
    char *a2[] = { "kvchat", "--set", "nosuch.key=1", NULL };
    assert_int_equal(load(&c, a2, err), -1);
    char *a3[] = { "kvchat", "--provider", "magic", NULL };
    assert_int_equal(load(&c, a3, err), -1);
    assert_non_null(strstr(err, "provider"));
    char *a4[] = { "kvchat", "--config", "/nonexistent/kvchat.ini", NULL };
    assert_int_equal(load(&c, a4, err), -1);
    assert_non_null(strstr(err, "cannot read"));
    setenv("KVCHAT_SESSION_IDLE_TIMEOUT", "soon", 1);
    char *a5[] = { "kvchat", NULL };
    assert_int_equal(load(&c, a5, err), -1);
    assert_non_null(strstr(err, "KVCHAT_SESSION_IDLE_TIMEOUT"));
    unsetenv("KVCHAT_SESSION_IDLE_TIMEOUT");
    /* a bad line in a file names the file */
    char bad[64];
    snprintf(bad, sizeof bad, "/tmp/kvchat-config-XXXXXX");
    int fd = mkstemp(bad);
    FILE *f = fdopen(fd, "w");
    fputs("[server]\nport = many\n", f);
    fclose(f);
    char *a6[] = { "kvchat", "-c", bad, NULL };
    assert_int_equal(load(&c, a6, err), -1);
    assert_non_null(strstr(err, bad));
    unlink(bad);
    /* OCR languages: names joined by '+', or empty (no OCR) */
    static const char *const langs[] = { "extract.ocr_languages=../eng", "extract.ocr_languages=eng+",
                                         "extract.ocr_languages=eng++deu",
                                         "extract.ocr_languages=eng deu" };
    for (size_t i = 0; i < sizeof langs / sizeof langs[0]; i++) {
        char *a7[] = { "kvchat", "--set", (char *)langs[i], NULL };
        assert_int_equal(load(&c, a7, err), -1);
        assert_non_null(strstr(err, "extract.ocr_languages"));
    }
    char *a8[] = { "kvchat", "--set", "extract.ocr_languages=eng+chi_sim", NULL };
    assert_int_equal(load(&c, a8, err), 0);
    char *a9[] = { "kvchat", "--set", "extract.ocr_languages=", NULL };
    assert_int_equal(load(&c, a9, err), 0);
    assert_string_equal(c.ocr_languages, "");
}

/* Local mode (no login) only on loopback addresses, unless accounts are on
 * or --insecure-no-auth is given; remote models' context. */
static void test_mode(void **state)
{
    (void)state;
    config_t c;
    char err[512];
    static const char *const loopback[] = { "127.0.0.1", "localhost", "::1", "127.0.0.2" };
    for (size_t i = 0; i < sizeof loopback / sizeof *loopback; i++) {
        char *argv[] = { "kvchat", "--host", (char *)loopback[i], NULL };
        assert_int_equal(load(&c, argv, err), 0);
        assert_string_equal(c.auth_mode, "local");
        assert_true(config_mode_allowed(&c, err, sizeof err));
    }
    static const char *const open_[] = { "0.0.0.0", "::", "192.0.2.7" };
    for (size_t i = 0; i < sizeof open_ / sizeof *open_; i++) {
        char *argv[] = { "kvchat", "--host", (char *)open_[i], NULL };
        assert_int_equal(load(&c, argv, err), 0);
        assert_false(config_mode_allowed(&c, err, sizeof err));
        assert_non_null(strstr(err, "auth.mode=accounts"));
        assert_non_null(strstr(err, "--insecure-no-auth"));
        char *argv2[] = { "kvchat", "--host", (char *)open_[i], "--insecure-no-auth", NULL };
        assert_int_equal(load(&c, argv2, err), 0);
        assert_true(config_mode_allowed(&c, err, sizeof err));
        char *argv3[] = { "kvchat", "--host", (char *)open_[i], "--set", "auth.mode=accounts",
                          NULL };
        assert_int_equal(load(&c, argv3, err), 0);
        assert_true(config_mode_allowed(&c, err, sizeof err));
    }
    char *bad[] = { "kvchat", "--set", "auth.mode=open", NULL };
    assert_int_equal(load(&c, bad, err), -1);
    assert_non_null(strstr(err, "auth.mode"));
    char *remote[] = { "kvchat", "--set", "remote.x.context=32768", NULL };
    assert_int_equal(load(&c, remote, err), 0);
    assert_int_equal(c.n_remotes, 1);
    assert_int_equal(c.remotes[0].context, 32768);
    char *remote_bad[] = { "kvchat", "--set", "remote.x.context=lots", NULL };
    assert_int_equal(load(&c, remote_bad, err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_layers),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_mode),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
