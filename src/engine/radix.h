/* radix.h — a compressed radix tree over token sequences.
 *
 * The KV-cache store indexes its snapshots by the exact token sequence they
 * were taken after. A request wants the snapshot whose tokens are the longest
 * prefix of its own (restore it, decode the rest), or failing that the entry
 * that shares the most leading tokens with it (restore and trim). This tree
 * answers both in time proportional to the key length, as SGLang's
 * RadixAttention does.
 *
 * Shape: every edge carries a run of one or more tokens; the children of a
 * node start with distinct tokens and are kept sorted by that token. A key
 * "ends" at a node when the node holds a value. The tree stays compressed:
 * every node other than the root holds a value or has at least two children
 * (insert splits edges, remove merges them back). radix_check() verifies it.
 *
 * Values are opaque non-NULL pointers owned by the caller; the tree never
 * dereferences them. A key is an array of int32_t tokens of length n; the
 * empty key (n == 0) is a valid key that ends at the root.
 *
 * Threading: none. The caller serializes all access (the store holds its
 * index mutex around every call).
 *
 * Errors: functions return 0 or a negative RADIX_E* code; radix_strerror()
 * names it. Out-parameters are untouched on failure.
 */
#ifndef KVCHAT_ENGINE_RADIX_H
#define KVCHAT_ENGINE_RADIX_H

#include <stddef.h>
#include <stdint.h>

enum {
    RADIX_OK = 0,
    RADIX_ENOMEM = -1,
    RADIX_EINVAL = -2,      /* NULL value, or NULL key with n > 0 */
    RADIX_ENOTFOUND = -3,   /* no such key / no matching key */
    RADIX_ECORRUPT = -4,    /* radix_check() found a broken invariant */
};

const char *radix_strerror(int rc);

typedef struct radix radix_t;

/* Called once per stored value by radix_free(). */
typedef void (*radix_free_fn)(void *value);

/* An empty tree. On success *out owns it (radix_free()). */
int radix_new(radix_t **out);

/* Free the tree. If free_value is not NULL it is called once for every
 * stored value; if it is NULL the values are left alone (the caller owns
 * them and frees them however it likes). Accepts NULL. */
void radix_free(radix_t *t, radix_free_fn free_value);

/* Number of stored keys. */
size_t radix_size(const radix_t *t);

/* Number of nodes including the root (for tests of compression). */
size_t radix_node_count(const radix_t *t);

/* Store `value` (non-NULL) under key[0..n). The tokens are copied. If the
 * key was already present its value is replaced and the previous value is
 * returned in *old (the caller now owns it); otherwise *old is set to NULL.
 * `old` may be NULL when the caller knows the key is new or does not care.
 * On RADIX_ENOMEM the stored keys and values are unchanged (the tree may be
 * left with one more node than needed, never with a wrong answer). */
int radix_insert(radix_t *t, const int32_t *key, size_t n, void *value, void **old);

/* Remove key[0..n) and give back its value in *value (may be NULL).
 * Edges are merged back so the tree stays compressed.
 * Returns RADIX_ENOTFOUND (tree unchanged) when the key is not stored. */
int radix_remove(radix_t *t, const int32_t *key, size_t n, void **value);

/* The value stored under exactly key[0..n), or RADIX_ENOTFOUND. */
int radix_find_exact(const radix_t *t, const int32_t *key, size_t n, void **value);

/* Among the stored keys that are wholly a prefix of key[0..n) (including
 * key itself), the longest one: its value in *value and its length in *len.
 * RADIX_ENOTFOUND when no stored key is a prefix of `key`. */
int radix_longest_prefix(const radix_t *t, const int32_t *key, size_t n, void **value,
                         size_t *len);

/* The greatest L such that some stored key shares its first L tokens with
 * key[0..n) (L <= n), in *len, and in *value the value of one stored key
 * that passes through that point (its length >= L and its first L tokens
 * equal key's). Which one: the SHORTEST such stored key; among keys of equal
 * length, the one whose first differing token is smallest. A stored key of
 * length exactly L wins, so when the answer is also a prefix match the
 * caller gets that entry. L may be 0 (nothing in common; then the value is
 * the shortest key in the tree). RADIX_ENOTFOUND only for an empty tree. */
int radix_longest_common(const radix_t *t, const int32_t *key, size_t n, void **value,
                         size_t *len);

/* Visit every stored key in lexicographic token order (a key before the
 * keys it prefixes). `key` points to a scratch buffer valid only during the
 * call. The callback must not modify the tree. A non-zero return from fn
 * stops the walk and is returned by radix_foreach(); otherwise it returns 0,
 * or RADIX_ENOMEM when the scratch key buffer could not grow. */
typedef int (*radix_visit_fn)(const int32_t *key, size_t n, void *value, void *ud);
int radix_foreach(const radix_t *t, radix_visit_fn fn, void *ud);

/* As radix_foreach, for the stored keys whose first n tokens are
 * key[0..n) (key itself included when stored), in the same order. Returns
 * 0 when there are none. */
int radix_foreach_extending(const radix_t *t, const int32_t *key, size_t n, radix_visit_fn fn,
                            void *ud);

/* Verify the invariants: children sorted and distinct by first token, no
 * empty edges below the root, parent links and depths consistent, every
 * non-root node holds a value or has >= 2 children, the cached subtree
 * minima are right, and the value count matches radix_size(). Returns 0 or
 * RADIX_ECORRUPT. Meant for tests; walks the whole tree. */
int radix_check(const radix_t *t);

#endif
