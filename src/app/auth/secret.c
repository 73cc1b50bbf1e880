/* secret.c — see secret.h. */
#include "app/auth/secret.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "common/utf8.h"

#define PWHASH_OPS crypto_pwhash_OPSLIMIT_INTERACTIVE
#define PWHASH_MEM crypto_pwhash_MEMLIMIT_INTERACTIVE
/* The most memory verifying one stored hash may take (a hash written by a
 * later kvchat at a higher level still verifies; one claiming gigabytes,
 * from a tampered database, does not run). */
#define SECRET_PWHASH_MEM_MAX ((size_t)256 << 20)

_Static_assert(crypto_pwhash_STRBYTES <= SECRET_PWHASH_MAX, "hash buffer too small");

static unsigned char g_shorthash_key[crypto_shorthash_KEYBYTES];

int secret_init(void)
{
    if (sodium_init() < 0)
        return -1;
    static bool keyed;   /* sodium_init succeeded: the same thread goes on */
    if (!keyed) {
        crypto_shorthash_keygen(g_shorthash_key);
        keyed = true;
    }
    return 0;
}

uint64_t secret_shorthash(const void *s, size_t len)
{
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, s, len, g_shorthash_key);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return v;
}

bool secret_password_ok(const char *pw, size_t len, char *why, size_t whycap)
{
    const char *msg = NULL;
    if (len < SECRET_PASSWORD_MIN)
        msg = "The password is too short: at least 8 characters";
    else if (len > SECRET_PASSWORD_MAX)
        msg = "The password is too long: at most 1024 bytes";
    else if (!utf8_valid(pw, len))
        msg = "The password is not valid UTF-8";
    for (size_t i = 0; !msg && i < len; i++)
        if ((unsigned char)pw[i] < 0x20 || pw[i] == 0x7f)
            msg = "The password holds a control character";
    if (msg && why && whycap)
        snprintf(why, whycap, "%s", msg);
    return msg == NULL;
}

int secret_password_hash(const char *pw, size_t len, char out[SECRET_PWHASH_MAX])
{
    return crypto_pwhash_str(out, pw, len, PWHASH_OPS, PWHASH_MEM) == 0 ? 0 : -1;
}

/* The m= parameter of an encoded argon2 hash, in bytes; 0 when absent. */
static size_t hash_memory(const char *hash)
{
    const char *m = strstr(hash, "$m=");
    unsigned long kib = 0;
    if (!m || sscanf(m, "$m=%lu", &kib) != 1)
        return 0;
    return kib > SIZE_MAX / 1024 ? SIZE_MAX : (size_t)kib * 1024;
}

bool secret_password_verify(const char *hash, const char *pw, size_t len)
{
    if (!hash || strncmp(hash, "$argon2id$", 10) != 0 ||
        strnlen(hash, SECRET_PWHASH_MAX) >= SECRET_PWHASH_MAX)
        return false;
    size_t mem = hash_memory(hash);
    if (mem == 0 || mem > SECRET_PWHASH_MEM_MAX)
        return false;
    return crypto_pwhash_str_verify(hash, pw, len) == 0;
}

bool secret_needs_rehash(const char *hash)
{
    return crypto_pwhash_str_needs_rehash(hash, PWHASH_OPS, PWHASH_MEM) != 0;
}

void secret_new(const char *prefix, char out[SECRET_TOKEN_MAX])
{
    unsigned char raw[32];
    randombytes_buf(raw, sizeof raw);
    size_t pl = strnlen(prefix, 8);
    memcpy(out, prefix, pl);
    sodium_bin2base64(out + pl, SECRET_TOKEN_MAX - pl, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
}

void secret_hash_hex(const char *s, size_t len, char hex[SECRET_HEX_MAX])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)s, len);
    sodium_bin2hex(hex, SECRET_HEX_MAX, h, sizeof h);
}

void secret_wipe(void *p, size_t n)
{
    sodium_memzero(p, n);
}

bool secret_equal(const void *a, const void *b, size_t n)
{
    return sodium_memcmp(a, b, n) == 0;
}
