/* test_secret.c — auth/secret.c over the real libsodium.
 *
 * Covered: a password hashes to an argon2id string that verifies it and
 * no other password (one byte off, a prefix, empty); two hashes of one
 * password differ (salted); a tampered, truncated, foreign (bcrypt) or
 * over-costly hash never verifies; today's hashes need no rehash, a
 * cheaper one does; the password rules; secrets are prefixed, URL-safe,
 * of a fixed length and all different; the SHA-256 hex of a known
 * string; constant-time equality.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "app/auth/secret.h"

static int setup(void **state)
{
    (void)state;
    return secret_init();
}

static void test_password(void **state)
{
    (void)state;
    const char *pw = "correct horse battery";
    char h1[SECRET_PWHASH_MAX], h2[SECRET_PWHASH_MAX];
    assert_int_equal(secret_password_hash(pw, strlen(pw), h1), 0);
    assert_int_equal(secret_password_hash(pw, strlen(pw), h2), 0);
    assert_memory_equal(h1, "$argon2id$", 10);
    assert_string_not_equal(h1, h2);   /* each with its own salt */
    assert_null(strstr(h1, pw));
    assert_true(secret_password_verify(h1, pw, strlen(pw)));
    assert_true(secret_password_verify(h2, pw, strlen(pw)));
    assert_false(secret_password_verify(h1, "correct horse batterz", strlen(pw)));
    assert_false(secret_password_verify(h1, pw, strlen(pw) - 1));
    assert_false(secret_password_verify(h1, "", 0));
    assert_false(secret_needs_rehash(h1));
    /* tampered, truncated, foreign, absurd */
    char bad[SECRET_PWHASH_MAX];
    snprintf(bad, sizeof bad, "%s", h1);
    bad[strlen(bad) - 2] = bad[strlen(bad) - 2] == 'A' ? 'B' : 'A';
    assert_false(secret_password_verify(bad, pw, strlen(pw)));
    snprintf(bad, sizeof bad, "%.30s", h1);
    assert_false(secret_password_verify(bad, pw, strlen(pw)));
    assert_false(secret_password_verify("$2b$12$abcdefghijklmnopqrstuv", pw, strlen(pw)));
    assert_false(secret_password_verify("", pw, strlen(pw)));
    assert_false(secret_password_verify(NULL, pw, strlen(pw)));
    /* a hash claiming 4 TiB of memory is refused before libsodium runs it */
    const char *huge = strstr(h1, "$m=");
    assert_non_null(huge);
    snprintf(bad, sizeof bad, "$argon2id$v=19$m=4294967295,t=2,p=1%s", strchr(huge + 1, '$'));
    assert_false(secret_password_verify(bad, pw, strlen(pw)));
    /* one made cheaper than today's verifies and asks to be redone */
    char cheap[crypto_pwhash_STRBYTES];
    assert_int_equal(crypto_pwhash_str(cheap, pw, strlen(pw), crypto_pwhash_OPSLIMIT_MIN,
                                       crypto_pwhash_MEMLIMIT_MIN),
                     0);
    assert_true(secret_password_verify(cheap, pw, strlen(pw)));
    assert_true(secret_needs_rehash(cheap));
}

static void test_password_rules(void **state)
{
    (void)state;
    char why[128];
    assert_true(secret_password_ok("12345678", 8, why, sizeof why));
    assert_true(secret_password_ok("pässwörd", strlen("pässwörd"), why, sizeof why));
    assert_false(secret_password_ok("1234567", 7, why, sizeof why));
    assert_non_null(strstr(why, "too short"));
    assert_false(secret_password_ok("abc\ndefgh", 9, why, sizeof why));
    assert_non_null(strstr(why, "control"));
    assert_false(secret_password_ok("abc\0defgh", 9, why, sizeof why));
    assert_false(secret_password_ok("\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", 8, why, sizeof why));
    assert_non_null(strstr(why, "UTF-8"));
    static char big[SECRET_PASSWORD_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    assert_false(secret_password_ok(big, SECRET_PASSWORD_MAX + 1, why, sizeof why));
    assert_true(secret_password_ok(big, SECRET_PASSWORD_MAX, NULL, 0));
}

static void test_secrets(void **state)
{
    (void)state;
    char a[SECRET_TOKEN_MAX], b[SECRET_TOKEN_MAX];
    secret_new("kvt_", a);
    secret_new("kvt_", b);
    assert_int_equal(strlen(a), 4 + 43);
    assert_memory_equal(a, "kvt_", 4);
    assert_string_not_equal(a, b);
    for (const char *p = a + 4; *p; p++)
        assert_true((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_');
    char hex[SECRET_HEX_MAX];
    secret_hash_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_true(secret_equal("abcdef", "abcdef", 6));
    assert_false(secret_equal("abcdef", "abcdeg", 6));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password),
        cmocka_unit_test(test_password_rules),
        cmocka_unit_test(test_secrets),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
