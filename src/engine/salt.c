/* salt.c — see salt.h. */
#include "engine/salt.h"

#include <openssl/evp.h>
#include <string.h>

#include "common/utf8.h"

const char *salt_strerror(int rc)
{
    switch (rc) {
    case SALT_OK: return "ok";
    case SALT_EINVAL: return "a cache salt must be 1 to 256 bytes of UTF-8 text";
    case SALT_EHASH: return "the cache salt could not be hashed";
    default: return "unknown salt error";
    }
}

int salt_hash(const char *salt, size_t len, kvstore_salt_t *out)
{
    if (!salt || !out || len < 1 || len > SALT_MAX_BYTES || !utf8_valid(salt, len))
        return SALT_EINVAL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(salt, len, md, &md_len, EVP_sha256(), NULL) != 1 ||
        md_len != KVSTORE_SALT_LEN)
        return SALT_EHASH;
    out->salted = true;
    memcpy(out->hash, md, KVSTORE_SALT_LEN);
    return SALT_OK;
}

void salt_hex(const kvstore_salt_t *salt, char out[SALT_HEX_LEN])
{
    static const char digits[] = "0123456789abcdef";
    out[0] = '\0';
    if (!salt || !salt->salted)
        return;
    for (int i = 0; i < KVSTORE_SALT_LEN; i++) {
        out[2 * i] = digits[salt->hash[i] >> 4];
        out[2 * i + 1] = digits[salt->hash[i] & 15];
    }
    out[2 * KVSTORE_SALT_LEN] = '\0';
}
