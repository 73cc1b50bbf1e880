/* salt.h — a request's cache_salt made into the KV store's namespace.
 *
 * A client that gives a cache_salt (vLLM's field) shares cached prefixes
 * only with requests that give the same salt (kvstore.h, "Salts"). The
 * engine keeps no salt: the request's salt is hashed here, once, and only
 * the hash (SHA-256, through libcrypto; this is the engine's one module
 * that includes it) is kept, compared, written into entry files and shown
 * by the cache API. SHA-256 rather than the store's XXH3: from XXH3 a short
 * salt can be computed back, and another salt with the same hash can be
 * made on purpose; from SHA-256 neither.
 */
#ifndef KVCHAT_ENGINE_SALT_H
#define KVCHAT_ENGINE_SALT_H

#include <stddef.h>

#include "engine/kvstore.h"

enum {
    SALT_OK = 0,
    SALT_EINVAL = -1,     /* empty, longer than SALT_MAX_BYTES, or not UTF-8 */
    SALT_EHASH = -2,      /* libcrypto could not hash (out of memory) */
};

/* The longest cache_salt accepted, in bytes. */
#define SALT_MAX_BYTES 256

/* The hex digits of a salt hash and a NUL. */
#define SALT_HEX_LEN (2 * KVSTORE_SALT_LEN + 1)

const char *salt_strerror(int rc);

/* The namespace of salt[0..len): 1 to SALT_MAX_BYTES bytes of valid UTF-8
 * (NUL bytes included are hashed like any other). On success *out is
 * salted with the SHA-256 of those bytes; on error *out is left as it was
 * (SALT_EINVAL, SALT_EHASH). The salt is not kept. */
int salt_hash(const char *salt, size_t len, kvstore_salt_t *out);

/* A salted namespace's hash as lowercase hex into out (SALT_HEX_LEN
 * bytes); "" when salt is NULL or not salted. */
void salt_hex(const kvstore_salt_t *salt, char out[SALT_HEX_LEN]);

#endif
