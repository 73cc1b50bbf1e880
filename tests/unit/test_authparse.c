/* test_authparse.c — auth/authparse.c: what a request says about who
 * sends it.
 *
 * Covered: a cookie among others, first of two, quoted, with spaces, too
 * long, a name that is only a prefix of another, empty and absent
 * headers; Bearer in any case with spaces around the value, other schemes
 * and no value; addresses and CIDR ranges (IPv4, IPv6, an IPv4 client
 * against its IPv4-mapped form, /0, host bits set in the range), entries
 * that do not parse matching nothing and named by the start-up check;
 * the client's address behind trusted proxies (X-Forwarded-For walked
 * from the right, made-up and malformed entries); X-Forwarded-Proto with
 * one hop and several.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "app/auth/authparse.h"

static void test_cookie(void **state)
{
    (void)state;
    char v[32];
    assert_true(authparse_cookie("a=1; kvchat_session=kvs_x; b=2", "kvchat_session", v, sizeof v));
    assert_string_equal(v, "kvs_x");
    assert_true(authparse_cookie("kvchat_session=first;kvchat_session=second", "kvchat_session", v,
                                 sizeof v));
    assert_string_equal(v, "first");
    assert_true(authparse_cookie("  s=\"quoted\"  ", "s", v, sizeof v));
    assert_string_equal(v, "quoted");
    assert_false(authparse_cookie("s=", "s", v, sizeof v));   /* cleared */
    assert_false(authparse_cookie("s=;t=1", "s", v, sizeof v));
    assert_false(authparse_cookie("kvchat_session_old=1", "kvchat_session", v, sizeof v));
    assert_false(authparse_cookie("xs=1; s2=3", "s", v, sizeof v));
    assert_false(authparse_cookie("s=0123456789012345678901234567890123456789", "s", v, sizeof v));
    assert_false(authparse_cookie("", "s", v, sizeof v));
    assert_false(authparse_cookie(NULL, "s", v, sizeof v));
    assert_false(authparse_cookie(";;;", "s", v, sizeof v));
    assert_true(authparse_cookie("; ;s=ok;", "s", v, sizeof v));
    assert_string_equal(v, "ok");
}

static void test_bearer(void **state)
{
    (void)state;
    size_t n;
    const char *v = authparse_bearer("Bearer kvt_abc", &n);
    assert_non_null(v);
    assert_int_equal(n, 7);
    assert_memory_equal(v, "kvt_abc", 7);
    v = authparse_bearer("  bearer   kvt_abc  ", &n);
    assert_non_null(v);
    assert_int_equal(n, 7);
    assert_memory_equal(v, "kvt_abc", 7);
    assert_null(authparse_bearer("Basic dXNlcjpwYXNz", &n));
    assert_null(authparse_bearer("Bearer", &n));
    assert_null(authparse_bearer("Bearer    ", &n));
    assert_null(authparse_bearer("Bearerkvt_abc", &n));
    assert_null(authparse_bearer(NULL, &n));
    assert_int_equal(n, 0);
}

static void test_addresses(void **state)
{
    (void)state;
    const char *list = "10.0.0.7, 192.168.0.0/16 fd00::/8,::1";
    assert_true(authparse_addr_listed(list, "10.0.0.7"));
    assert_false(authparse_addr_listed(list, "10.0.0.70"));
    assert_true(authparse_addr_listed(list, "192.168.44.3"));
    assert_false(authparse_addr_listed(list, "192.169.0.1"));
    assert_true(authparse_addr_listed(list, "fd12:3456::1"));
    assert_false(authparse_addr_listed(list, "fe80::1"));
    assert_true(authparse_addr_listed(list, "::1"));
    assert_false(authparse_addr_listed(list, "127.0.0.1"));
    /* an IPv4 client matches the IPv4-mapped form of a range, and back */
    assert_true(authparse_addr_listed("::ffff:10.1.0.0/112", "10.1.2.3"));
    assert_true(authparse_addr_listed("10.1.0.0/16", "::ffff:10.1.2.3"));
    assert_true(authparse_addr_listed("0.0.0.0/0", "203.0.113.9"));
    assert_false(authparse_addr_listed("0.0.0.0/0", "2001:db8::1"));
    assert_true(authparse_addr_listed("10.1.2.3/8", "10.200.0.1"));   /* host bits ignored */
    assert_true(authparse_addr_listed("172.16.0.0/12", "172.31.255.255"));
    assert_false(authparse_addr_listed("172.16.0.0/12", "172.32.0.0"));
    /* entries that do not parse match nothing; the others still work */
    assert_false(authparse_addr_listed("proxy.local", "10.0.0.1"));
    assert_false(authparse_addr_listed("10.0.0.0/33", "10.0.0.1"));
    assert_false(authparse_addr_listed("10.0.0.0/", "10.0.0.1"));
    assert_false(authparse_addr_listed("10.0.0.0/-1", "10.0.0.1"));
    assert_true(authparse_addr_listed("junk,10.0.0.1", "10.0.0.1"));
    assert_false(authparse_addr_listed("", "10.0.0.1"));
    assert_false(authparse_addr_listed("10.0.0.1", ""));
    assert_false(authparse_addr_listed("10.0.0.1", "not an address"));
    assert_false(authparse_addr_listed("10.0.0.1", NULL));

    char why[200];
    assert_true(authparse_addr_list_check("", why, sizeof why));
    assert_true(authparse_addr_list_check(list, why, sizeof why));
    assert_false(authparse_addr_list_check("10.0.0.1, proxy.local", why, sizeof why));
    assert_string_equal(why, "'proxy.local' is not an IP address or a CIDR range (10.0.0.0/8, "
                             "fd00::/8)");
    assert_false(authparse_addr_list_check("fd00::/129", why, sizeof why));
    assert_non_null(strstr(why, "'fd00::/129'"));
}

static void test_client_addr(void **state)
{
    (void)state;
    char out[AUTHPARSE_ADDR_MAX];
    const char *proxies = "127.0.0.1, 10.0.0.0/8";
    /* not from a proxy: the peer, whatever the header says */
    authparse_client_addr("203.0.113.9", "198.51.100.1", proxies, out, sizeof out);
    assert_string_equal(out, "203.0.113.9");
    /* from a proxy: the address it forwards */
    authparse_client_addr("127.0.0.1", "198.51.100.1", proxies, out, sizeof out);
    assert_string_equal(out, "198.51.100.1");
    /* a chain of trusted proxies, and a made-up entry the client sent first */
    authparse_client_addr("127.0.0.1", "6.6.6.6, 198.51.100.1, 10.1.2.3", proxies, out,
                          sizeof out);
    assert_string_equal(out, "198.51.100.1");
    /* an entry that is no address ends the walk before it */
    authparse_client_addr("127.0.0.1", "198.51.100.1, not-an-ip", proxies, out, sizeof out);
    assert_string_equal(out, "127.0.0.1");
    authparse_client_addr("127.0.0.1", "2001:db8::5", proxies, out, sizeof out);
    assert_string_equal(out, "2001:db8::5");
    /* no header, an empty one, or only proxies */
    authparse_client_addr("127.0.0.1", NULL, proxies, out, sizeof out);
    assert_string_equal(out, "127.0.0.1");
    authparse_client_addr("127.0.0.1", " , ", proxies, out, sizeof out);
    assert_string_equal(out, "127.0.0.1");
    authparse_client_addr("127.0.0.1", "10.9.9.9,10.8.8.8", proxies, out, sizeof out);
    assert_string_equal(out, "10.9.9.9");
    /* no trusted proxies: always the peer */
    authparse_client_addr("127.0.0.1", "198.51.100.1", "", out, sizeof out);
    assert_string_equal(out, "127.0.0.1");
}

static void test_forwarded_proto(void **state)
{
    (void)state;
    assert_true(authparse_forwarded_https("https"));
    assert_true(authparse_forwarded_https("HTTPS"));
    assert_true(authparse_forwarded_https("https, http"));
    assert_false(authparse_forwarded_https("http, https"));
    assert_false(authparse_forwarded_https("httpsx"));
    assert_false(authparse_forwarded_https(""));
    assert_false(authparse_forwarded_https(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_client_addr),
        cmocka_unit_test(test_forwarded_proto),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
