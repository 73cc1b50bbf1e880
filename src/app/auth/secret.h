/* secret.h — passwords and bearer secrets, through libsodium (the one
 * module that calls it).
 *
 * Passwords are hashed with argon2id (crypto_pwhash_str: a self-describing
 * "$argon2id$v=19$m=...,t=...,p=...$salt$hash" string, so the cost can be
 * raised later and old hashes still verify; secret_needs_rehash says when
 * a hash was made with a lower cost than today's). The cost is libsodium's
 * INTERACTIVE level (64 MiB, 2 passes: about 0.1 s on one core here), the
 * level its documentation gives for online logins; SECRET_PWHASH_MEM_MAX
 * bounds what verifying a stored hash may take, whatever the hash says.
 *
 * Secrets (login session cookies, API tokens, one-time setup links) are
 * 32 random bytes from the kernel's generator, written as URL-safe base64
 * after a prefix that says what they are ("kvs_" a login session, "kvt_"
 * a token, "kvl_" a setup link). Only their SHA-256 (hex) is stored: a
 * stolen database holds no usable credential. Secrets are compared by
 * their hashes in the store's index, and in constant time where compared
 * here.
 *
 * Nothing here logs a password or a secret. Thread safe after secret_init.
 */
#ifndef KVCHAT_APP_AUTH_SECRET_H
#define KVCHAT_APP_AUTH_SECRET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SECRET_PWHASH_MAX 128     /* bytes of an encoded hash, NUL included */
#define SECRET_HEX_MAX 65         /* SHA-256 hex and its NUL */
#define SECRET_TOKEN_MAX 64       /* a secret's text and its NUL */
#define SECRET_PASSWORD_MIN 8     /* bytes */
#define SECRET_PASSWORD_MAX 1024  /* bytes */

/* Initialize libsodium. Returns 0, or -1 when it cannot (no random source). */
int secret_init(void);

/* Whether pw (len bytes) may be a password: SECRET_PASSWORD_MIN to
 * SECRET_PASSWORD_MAX bytes of valid UTF-8 without control characters.
 * When not, why says so (a sentence for the user; may be NULL). */
bool secret_password_ok(const char *pw, size_t len, char *why, size_t whycap);

/* Hash password pw (len bytes) into out (SECRET_PWHASH_MAX bytes).
 * Returns 0, or -1 when memory for the hash cannot be had. */
int secret_password_hash(const char *pw, size_t len, char out[SECRET_PWHASH_MAX]);

/* Whether pw matches the encoded hash. A malformed hash, or one whose cost
 * is over SECRET_PWHASH_MEM_MAX, never matches. */
bool secret_password_verify(const char *hash, const char *pw, size_t len);

/* Whether hash was made with other parameters than today's (then the app
 * hashes the password again after a successful login). */
bool secret_needs_rehash(const char *hash);

/* A new secret: prefix (up to 8 bytes) then 43 characters of URL-safe
 * base64 of 32 random bytes, into out (SECRET_TOKEN_MAX bytes). */
void secret_new(const char *prefix, char out[SECRET_TOKEN_MAX]);

/* The SHA-256 of s (len bytes) as 64 lowercase hex digits, into hex. */
void secret_hash_hex(const char *s, size_t len, char hex[SECRET_HEX_MAX]);

/* A 64-bit keyed hash (SipHash-2-4, the key random per process) of
 * s[0..len): for hash tables whose keys come from clients, which cannot
 * then be chosen to collide. */
uint64_t secret_shorthash(const void *s, size_t len);

/* Overwrite n bytes at p with zeros (a secret no longer needed), in a way
 * the compiler does not leave out. */
void secret_wipe(void *p, size_t n);

/* Whether a and b (n bytes each) are equal, in time that does not depend
 * on where they differ. */
bool secret_equal(const void *a, const void *b, size_t n);

#endif
