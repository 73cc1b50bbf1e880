/* radix.c — compressed radix tree over int32_t token sequences; see radix.h.
 *
 * Representation. Each node owns the edge leading into it (edge[0..edge_len),
 * empty only for the root), its absolute depth (the length of the key that
 * ends at it), an optional value, and a sorted array of children keyed by
 * the first token of their edges (binary search). Parent links make
 * iteration and bottom-up fix-ups loop-free of recursion, so a long chain
 * of nested keys never deepens the C stack.
 *
 * Each node also caches sub_min: the length of the shortest key that holds
 * a value in its subtree (SIZE_MAX when there is none, which happens only
 * for the root of an empty tree). radix_longest_common() uses it to pick
 * "the shortest key past the common point" by walking down one path.
 * Insert lowers sub_min along the path; remove recomputes it bottom-up and
 * stops as soon as a node's value does not change.
 *
 * Invariants (checked by radix_check()):
 *  - every non-root node has edge_len >= 1 and depth = parent depth + edge_len;
 *  - children of a node have distinct first tokens, sorted ascending;
 *  - every non-root node holds a value or has >= 2 children (compressed);
 *  - sub_min is as defined above; count = number of values.
 */
#include "engine/radix.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct rnode {
    struct rnode *parent;     /* NULL for the root */
    int32_t *edge;            /* owned; NULL for the root */
    size_t edge_len;
    size_t depth;             /* length of the key ending here */
    size_t sub_min;           /* shortest valued key in this subtree */
    void *value;              /* NULL: no key ends here */
    struct rnode **kids;      /* owned array, sorted by kids[i]->edge[0] */
    uint32_t n_kids, cap_kids;
};

struct radix {
    struct rnode root;
    size_t count;             /* stored values */
    size_t nodes;             /* nodes including the root */
};

const char *radix_strerror(int rc)
{
    switch (rc) {
    case RADIX_OK: return "ok";
    case RADIX_ENOMEM: return "out of memory";
    case RADIX_EINVAL: return "invalid argument";
    case RADIX_ENOTFOUND: return "not found";
    case RADIX_ECORRUPT: return "tree invariant broken";
    default: return "unknown radix error";
    }
}

int radix_new(radix_t **out)
{
    radix_t *t = calloc(1, sizeof *t);
    if (!t)
        return RADIX_ENOMEM;
    t->root.sub_min = SIZE_MAX;
    t->nodes = 1;
    *out = t;
    return RADIX_OK;
}

void radix_free(radix_t *t, radix_free_fn free_value)
{
    if (!t)
        return;
    /* Post-order without recursion: detach the last child and descend;
     * a node with no children left is freed and we go back up. */
    struct rnode *x = &t->root;
    for (;;) {
        if (x->n_kids > 0) {
            x = x->kids[--x->n_kids];
            continue;
        }
        if (free_value && x->value)
            free_value(x->value);
        struct rnode *p = x->parent;
        free(x->kids);
        free(x->edge);
        if (x == &t->root)
            break;
        free(x);
        x = p;
    }
    free(t);
}

size_t radix_size(const radix_t *t) { return t->count; }

size_t radix_node_count(const radix_t *t) { return t->nodes; }

/* Index of the child of x whose edge starts with tok; if there is none,
 * returns false and *idx is where such a child would be inserted. */
static bool kid_find(const struct rnode *x, int32_t tok, uint32_t *idx)
{
    uint32_t lo = 0, hi = x->n_kids;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int32_t t = x->kids[mid]->edge[0];
        if (t == tok) {
            *idx = mid;
            return true;
        }
        if (t < tok)
            lo = mid + 1;
        else
            hi = mid;
    }
    *idx = lo;
    return false;
}

/* Make room for one more child in x. */
static int kids_reserve(struct rnode *x)
{
    if (x->n_kids < x->cap_kids)
        return RADIX_OK;
    uint32_t cap = x->cap_kids ? x->cap_kids * 2 : 2;
    struct rnode **k = realloc(x->kids, cap * sizeof *k);
    if (!k)
        return RADIX_ENOMEM;
    x->kids = k;
    x->cap_kids = cap;
    return RADIX_OK;
}

/* Insert child c at position idx of x (room reserved by kids_reserve()). */
static void kids_insert_at(struct rnode *x, uint32_t idx, struct rnode *c)
{
    memmove(&x->kids[idx + 1], &x->kids[idx], (x->n_kids - idx) * sizeof *x->kids);
    x->kids[idx] = c;
    x->n_kids++;
    c->parent = x;
}

static void kids_remove_at(struct rnode *x, uint32_t idx)
{
    memmove(&x->kids[idx], &x->kids[idx + 1], (x->n_kids - idx - 1) * sizeof *x->kids);
    x->n_kids--;
}

/* Number of leading tokens a[0..n) and b[0..n) share. */
static size_t common_len(const int32_t *a, const int32_t *b, size_t n)
{
    size_t i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

/* Recompute sub_min of x from its own value and its children. */
static size_t sub_min_of(const struct rnode *x)
{
    size_t m = x->value ? x->depth : SIZE_MAX;
    for (uint32_t i = 0; i < x->n_kids; i++)
        if (x->kids[i]->sub_min < m)
            m = x->kids[i]->sub_min;
    return m;
}

/* Fix sub_min from x up to the root after something below x was removed;
 * stops at the first node whose value does not change. */
static void sub_min_refresh(struct rnode *x)
{
    for (; x; x = x->parent) {
        size_t m = sub_min_of(x);
        if (m == x->sub_min)
            break;
        x->sub_min = m;
    }
}

/* Split child c (at kids[idx] of its parent) after its first k tokens
 * (0 < k < edge_len): a new valueless node takes the first k tokens and c
 * keeps the rest below it. Returns the new node, or NULL on ENOMEM with
 * nothing changed. */
static struct rnode *split_edge(radix_t *t, uint32_t idx, struct rnode *c, size_t k)
{
    struct rnode *mid = calloc(1, sizeof *mid);
    int32_t *e = malloc(k * sizeof *e);
    struct rnode **kids = malloc(2 * sizeof *kids);
    if (!mid || !e || !kids) {
        free(mid);
        free(e);
        free(kids);
        return NULL;
    }
    struct rnode *p = c->parent;
    memcpy(e, c->edge, k * sizeof *e);
    /* c keeps its own block, shifted; it only shrinks. */
    memmove(c->edge, c->edge + k, (c->edge_len - k) * sizeof *c->edge);
    c->edge_len -= k;

    mid->edge = e;
    mid->edge_len = k;
    mid->depth = c->depth - c->edge_len;
    mid->sub_min = c->sub_min;
    mid->kids = kids;
    mid->cap_kids = 2;
    mid->kids[0] = c;
    mid->n_kids = 1;
    mid->parent = p;
    c->parent = mid;
    p->kids[idx] = mid;
    t->nodes++;
    return mid;
}

/* x (not the root) holds no value and has exactly one child: fold x's edge
 * into the child and let the child take x's place. If the combined edge
 * cannot be allocated the tree is left uncompressed but correct and false
 * is returned. */
static bool merge_into_kid(radix_t *t, struct rnode *x)
{
    struct rnode *c = x->kids[0];
    struct rnode *p = x->parent;
    int32_t *e = malloc((x->edge_len + c->edge_len) * sizeof *e);
    if (!e)
        return false;
    memcpy(e, x->edge, x->edge_len * sizeof *e);
    memcpy(e + x->edge_len, c->edge, c->edge_len * sizeof *e);
    free(c->edge);
    c->edge = e;
    c->edge_len += x->edge_len;
    uint32_t idx;
    bool found = kid_find(p, x->edge[0], &idx);
    (void)found;
    p->kids[idx] = c;
    c->parent = p;
    free(x->edge);
    free(x->kids);
    free(x);
    t->nodes--;
    return true;
}

/* Bring x back to the compressed shape after its value went away or a
 * child was removed: drop it if it became an empty leaf (and then look at
 * its parent), fold it into its only child. Returns the lowest node whose
 * sub_min may be stale. */
static struct rnode *compact(radix_t *t, struct rnode *x)
{
    while (x->parent && !x->value && x->n_kids == 0) {
        struct rnode *p = x->parent;
        uint32_t idx;
        bool found = kid_find(p, x->edge[0], &idx);
        (void)found;
        kids_remove_at(p, idx);
        free(x->edge);
        free(x->kids);
        free(x);
        t->nodes--;
        x = p;
    }
    if (x->parent && !x->value && x->n_kids == 1) {
        struct rnode *p = x->parent;
        if (merge_into_kid(t, x))
            return p;
    }
    return x;
}

int radix_insert(radix_t *t, const int32_t *key, size_t n, void *value, void **old)
{
    if (!value || (!key && n > 0))
        return RADIX_EINVAL;
    struct rnode *x = &t->root;
    size_t pos = 0;
    while (pos < n) {
        uint32_t idx;
        if (!kid_find(x, key[pos], &idx)) {
            /* New leaf for the rest of the key. */
            struct rnode *leaf = calloc(1, sizeof *leaf);
            int32_t *e = malloc((n - pos) * sizeof *e);
            if (!leaf || !e || kids_reserve(x) != RADIX_OK) {
                free(leaf);
                free(e);
                compact(t, x);   /* undo a split made on the way down */
                return RADIX_ENOMEM;
            }
            memcpy(e, key + pos, (n - pos) * sizeof *e);
            leaf->edge = e;
            leaf->edge_len = n - pos;
            leaf->depth = n;
            leaf->sub_min = n;
            leaf->value = value;
            kids_insert_at(x, idx, leaf);
            t->nodes++;
            t->count++;
            for (struct rnode *a = x; a && a->sub_min > n; a = a->parent)
                a->sub_min = n;
            if (old)
                *old = NULL;
            return RADIX_OK;
        }
        struct rnode *c = x->kids[idx];
        size_t lim = c->edge_len < n - pos ? c->edge_len : n - pos;
        size_t m = common_len(c->edge, key + pos, lim);
        if (m < c->edge_len) {
            c = split_edge(t, idx, c, m);
            if (!c) {
                compact(t, x);
                return RADIX_ENOMEM;
            }
        }
        x = c;
        pos += m;
    }
    void *prev = x->value;
    x->value = value;
    if (!prev) {
        t->count++;
        for (struct rnode *a = x; a && a->sub_min > n; a = a->parent)
            a->sub_min = n;
    }
    if (old)
        *old = prev;
    return RADIX_OK;
}

/* The node where key[0..n) ends exactly, or NULL. */
static struct rnode *find_node(const radix_t *t, const int32_t *key, size_t n)
{
    const struct rnode *x = &t->root;
    size_t pos = 0;
    while (pos < n) {
        uint32_t idx;
        if (!kid_find(x, key[pos], &idx))
            return NULL;
        const struct rnode *c = x->kids[idx];
        if (c->edge_len > n - pos || common_len(c->edge, key + pos, c->edge_len) != c->edge_len)
            return NULL;
        x = c;
        pos += c->edge_len;
    }
    return (struct rnode *)x;
}

int radix_remove(radix_t *t, const int32_t *key, size_t n, void **value)
{
    if (!key && n > 0)
        return RADIX_EINVAL;
    struct rnode *x = find_node(t, key, n);
    if (!x || !x->value)
        return RADIX_ENOTFOUND;
    if (value)
        *value = x->value;
    x->value = NULL;
    t->count--;
    sub_min_refresh(compact(t, x));
    return RADIX_OK;
}

int radix_find_exact(const radix_t *t, const int32_t *key, size_t n, void **value)
{
    if (!key && n > 0)
        return RADIX_EINVAL;
    const struct rnode *x = find_node(t, key, n);
    if (!x || !x->value)
        return RADIX_ENOTFOUND;
    *value = x->value;
    return RADIX_OK;
}

int radix_longest_prefix(const radix_t *t, const int32_t *key, size_t n, void **value,
                         size_t *len)
{
    if (!key && n > 0)
        return RADIX_EINVAL;
    const struct rnode *x = &t->root;
    const struct rnode *best = x->value ? x : NULL;
    size_t pos = 0;
    while (pos < n) {
        uint32_t idx;
        if (!kid_find(x, key[pos], &idx))
            break;
        const struct rnode *c = x->kids[idx];
        if (c->edge_len > n - pos || common_len(c->edge, key + pos, c->edge_len) != c->edge_len)
            break;
        x = c;
        pos += c->edge_len;
        if (x->value)
            best = x;
    }
    if (!best)
        return RADIX_ENOTFOUND;
    *value = best->value;
    *len = best->depth;
    return RADIX_OK;
}

int radix_longest_common(const radix_t *t, const int32_t *key, size_t n, void **value,
                         size_t *len)
{
    if (!key && n > 0)
        return RADIX_EINVAL;
    const struct rnode *x = &t->root;
    const struct rnode *sub = NULL;   /* subtree of keys through the point */
    size_t pos = 0;
    while (pos < n) {
        uint32_t idx;
        if (!kid_find(x, key[pos], &idx))
            break;
        const struct rnode *c = x->kids[idx];
        size_t lim = c->edge_len < n - pos ? c->edge_len : n - pos;
        size_t m = common_len(c->edge, key + pos, lim);
        if (m < c->edge_len) {
            /* The point lies inside c's edge: every key below c passes it. */
            pos += m;
            sub = c;
            break;
        }
        x = c;
        pos += m;
    }
    if (!sub)
        sub = x;
    if (sub->sub_min == SIZE_MAX)
        return RADIX_ENOTFOUND;   /* empty tree */
    /* Walk down towards the shortest valued key (first child on ties). */
    const struct rnode *y = sub;
    while (!(y->value && y->depth == y->sub_min)) {
        const struct rnode *next = NULL;
        for (uint32_t i = 0; i < y->n_kids; i++) {
            if (y->kids[i]->sub_min == y->sub_min) {
                next = y->kids[i];
                break;
            }
        }
        if (!next)
            return RADIX_ECORRUPT;   /* unreachable while the invariants hold */
        y = next;
    }
    *value = y->value;
    *len = pos;
    return RADIX_OK;
}

/* Preorder successor of x within the subtree of top (the whole tree when
 * top is the root), using parent links; NULL after its last node. */
static const struct rnode *next_preorder_in(const struct rnode *x, const struct rnode *top)
{
    if (x->n_kids > 0)
        return x->kids[0];
    while (x != top && x->parent) {
        const struct rnode *p = x->parent;
        uint32_t idx;
        bool found = kid_find(p, x->edge[0], &idx);
        (void)found;
        if (idx + 1 < p->n_kids)
            return p->kids[idx + 1];
        x = p;
    }
    return NULL;
}

/* Visit the valued nodes of top's subtree in preorder; buf[0..top->depth)
 * must hold the key up to top. */
static int visit_subtree(const struct rnode *top, int32_t *buf, size_t cap, radix_visit_fn fn,
                         void *ud)
{
    int rc = 0;
    for (const struct rnode *x = top; x; x = next_preorder_in(x, top)) {
        if (x->depth > cap) {
            size_t ncap = cap;
            while (ncap < x->depth)
                ncap *= 2;
            int32_t *nb = realloc(buf, ncap * sizeof *nb);
            if (!nb) {
                rc = RADIX_ENOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        /* Parents are visited first, so buf[0..depth - edge_len) is set. */
        if (x->edge_len && x != top)
            memcpy(buf + (x->depth - x->edge_len), x->edge, x->edge_len * sizeof *buf);
        if (x->value) {
            rc = fn(buf, x->depth, x->value, ud);
            if (rc)
                break;
        }
    }
    free(buf);
    return rc;
}

int radix_foreach_extending(const radix_t *t, const int32_t *key, size_t n, radix_visit_fn fn,
                            void *ud)
{
    if (!key && n > 0)
        return RADIX_EINVAL;
    /* The highest node whose key extends key[0..n). */
    const struct rnode *x = &t->root;
    size_t pos = 0;
    while (pos < n) {
        uint32_t idx;
        if (!kid_find(x, key[pos], &idx))
            return 0;
        const struct rnode *c = x->kids[idx];
        size_t lim = c->edge_len < n - pos ? c->edge_len : n - pos;
        if (common_len(c->edge, key + pos, lim) < lim)
            return 0;
        x = c;
        pos += lim;
    }
    size_t cap = x->depth > 64 ? x->depth : 64;
    int32_t *buf = malloc(cap * sizeof *buf);   /* never NULL for the callback */
    if (!buf)
        return RADIX_ENOMEM;
    /* The key up to x: its edges from the root down. */
    for (const struct rnode *y = x; y->parent; y = y->parent)
        memcpy(buf + (y->depth - y->edge_len), y->edge, y->edge_len * sizeof *buf);
    return visit_subtree(x, buf, cap, fn, ud);
}

int radix_foreach(const radix_t *t, radix_visit_fn fn, void *ud)
{
    size_t cap = 64;
    int32_t *buf = malloc(cap * sizeof *buf);   /* never NULL for the callback */
    if (!buf)
        return RADIX_ENOMEM;
    return visit_subtree(&t->root, buf, cap, fn, ud);
}

int radix_check(const radix_t *t)
{
    size_t values = 0, nodes = 0;
    for (const struct rnode *x = &t->root; x; x = next_preorder_in(x, &t->root)) {
        nodes++;
        if (x->value)
            values++;
        if (x != &t->root) {
            if (x->edge_len == 0 || !x->edge || !x->parent)
                return RADIX_ECORRUPT;
            if (x->depth != x->parent->depth + x->edge_len)
                return RADIX_ECORRUPT;
            if (!x->value && x->n_kids < 2)
                return RADIX_ECORRUPT;
        } else if (x->depth != 0 || x->edge_len != 0) {
            return RADIX_ECORRUPT;
        }
        for (uint32_t i = 0; i < x->n_kids; i++) {
            if (x->kids[i]->parent != x)
                return RADIX_ECORRUPT;
            if (i > 0 && x->kids[i - 1]->edge[0] >= x->kids[i]->edge[0])
                return RADIX_ECORRUPT;
        }
        if (x->sub_min != sub_min_of(x))
            return RADIX_ECORRUPT;
    }
    if (values != t->count || nodes != t->nodes)
        return RADIX_ECORRUPT;
    return RADIX_OK;
}
