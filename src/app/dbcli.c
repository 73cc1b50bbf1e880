/* dbcli.c — `kvchat db copy` (see dbcli.h): opens both stores, copies with
 * store_copy() (chunks' index texts made again by the text index, as an
 * upload makes them) and reports what it copied. */
#include "app/dbcli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/docs/textindex.h"
#include "app/store/store_copy.h"
#include "common/buf.h"
#include "common/log.h"

static int usage(FILE *f)
{
    fprintf(f, "Usage: kvchat db copy (--from URL | --data DIR) --to URL\n"
               "  Copy every record of a store into an empty one, e.g.\n"
               "  kvchat db copy --data /var/lib/kvchat --to postgresql://kvchat@db/kvchat\n");
    return 2;
}

/* The chunks' index texts, as documents.c makes them for an upload. */
static int make_index(void *ud, const char *content, size_t n, char **out)
{
    buf_t b;
    buf_init(&b, 4 * n + 16);
    int rc = textindex_doc(ud, content, n, &b);
    *out = rc == TEXTINDEX_OK ? buf_steal(&b, NULL) : NULL;
    buf_cleanup(&b);
    if (rc != TEXTINDEX_OK)
        return rc == TEXTINDEX_ENOMEM ? STORE_ENOMEM : STORE_EINVAL;
    return *out ? STORE_OK : STORE_ENOMEM;
}

static int db_copy(int argc, char **argv)
{
    const char *from = NULL, *data = NULL, *to = NULL;
    for (int i = 1; i < argc; i++) {
        const char **opt = !strcmp(argv[i], "--from") ? &from
                           : !strcmp(argv[i], "--data") ? &data
                           : !strcmp(argv[i], "--to") ? &to : NULL;
        if (!opt || i + 1 >= argc)
            return usage(stderr);
        *opt = argv[++i];
    }
    if (!to || (!from == !data))
        return usage(stderr);
    char src_url[1100];
    if (data)
        snprintf(src_url, sizeof src_url, "sqlite:%s/kvchat.db", data);
    else
        snprintf(src_url, sizeof src_url, "%s", from);

    store_t *src = NULL, *dst = NULL;
    textindex_t *ti = NULL;
    int status = 1, rc;
    if ((rc = store_open(src_url, &src)) != STORE_OK) {
        fprintf(stderr, "kvchat db: cannot open %s: %s\n", src_url, store_strerror(rc));
        goto done;
    }
    if ((rc = store_open(to, &dst)) != STORE_OK) {
        fprintf(stderr, "kvchat db: cannot open the destination: %s\n", store_strerror(rc));
        goto done;
    }
    if (textindex_open(&ti) != TEXTINDEX_OK) {
        fprintf(stderr, "kvchat db: out of memory\n");
        goto done;
    }
    store_copy_counts_t n;
    rc = store_copy(src, dst, make_index, ti, &n);
    printf("users %lld\ndocuments %lld\nchunks %lld\nsessions %lld\nmessages %lld\n"
           "logins %lld\naudit %lld\ntokens %lld\ncollections %lld\n", (long long)n.users,
           (long long)n.documents, (long long)n.chunks, (long long)n.sessions,
           (long long)n.messages, (long long)n.logins, (long long)n.audit, (long long)n.tokens,
           (long long)n.collections);
    if (rc != STORE_OK) {
        fprintf(stderr, "kvchat db: copy failed: %s%s\n", store_strerror(rc),
                rc == STORE_ECONFLICT ? " (the destination must be empty)" : "");
        goto done;
    }
    status = 0;
done:
    textindex_close(ti);
    store_close(dst);
    store_close(src);
    return status;
}

int dbcli_main(int argc, char **argv)
{
    log_set_level(LOG_WARN);
    if (argc >= 2 && !strcmp(argv[1], "copy"))
        return db_copy(argc - 1, argv + 1);
    return usage(argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? stdout
                                                                                      : stderr);
}
