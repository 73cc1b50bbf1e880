/* zipread.c — see zipread.h. */
#include "extract/zipread.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

#include "common/buf.h"
#include "extract/extract.h"

struct zipread {
    zip_t *zip;
    size_t inflated;     /* bytes read from all entries so far */
};

struct zipread_entry {
    zipread_t *z;
    zip_file_t *file;
    uint64_t declared;   /* uncompressed size from the central directory */
    uint64_t done;       /* bytes read from this entry */
    int err;
};

static int code_from_zip(int ze)
{
    switch (ze) {
    case ZIP_ER_MEMORY:
        return EXTRACT_EMEMORY;
    case ZIP_ER_ENCRNOTSUPP:
    case ZIP_ER_NOPASSWD:
    case ZIP_ER_WRONGPASSWD:
        return EXTRACT_EENCRYPTED;
    default:
        return EXTRACT_ECORRUPT;
    }
}

int zipread_open(int fd, zipread_t **out)
{
    *out = NULL;
    int dfd = dup(fd);
    if (dfd < 0)
        return EXTRACT_EINTERNAL;
    int ze = 0;
    zip_t *zip = zip_fdopen(dfd, ZIP_CHECKCONS, &ze);
    if (!zip) {
        close(dfd);
        return code_from_zip(ze);
    }
    zip_int64_t n = zip_get_num_entries(zip, 0);
    if (n < 0 || n > ZIPREAD_ENTRIES_MAX) {
        zip_discard(zip);
        return n < 0 ? EXTRACT_ECORRUPT : EXTRACT_EBOMB;
    }
    zipread_t *z = calloc(1, sizeof *z);
    if (!z) {
        zip_discard(zip);
        return EXTRACT_EMEMORY;
    }
    z->zip = zip;
    *out = z;
    return 0;
}

void zipread_close(zipread_t *z)
{
    if (!z)
        return;
    zip_discard(z->zip);   /* read-only: never write anything back */
    free(z);
}

bool zipread_exists(zipread_t *z, const char *name)
{
    return zip_name_locate(z->zip, name, 0) >= 0;
}

int zipread_entry_open(zipread_t *z, const char *name, zipread_entry_t **out)
{
    *out = NULL;
    zip_int64_t idx = zip_name_locate(z->zip, name, 0);
    if (idx < 0)
        return EXTRACT_ECORRUPT;
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(z->zip, (zip_uint64_t)idx, 0, &st) != 0)
        return EXTRACT_ECORRUPT;
    if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE)
        return EXTRACT_EENCRYPTED;
    if (!(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE))
        return EXTRACT_ECORRUPT;
    if (st.size > ZIPREAD_ENTRY_MAX)
        return EXTRACT_EBOMB;
    if (st.size > ZIPREAD_RATIO_FLOOR && st.size / ZIPREAD_RATIO_MAX > st.comp_size)
        return EXTRACT_EBOMB;
    zip_file_t *f = zip_fopen_index(z->zip, (zip_uint64_t)idx, 0);
    if (!f)
        return code_from_zip(zip_error_code_zip(zip_get_error(z->zip)));
    zipread_entry_t *e = calloc(1, sizeof *e);
    if (!e) {
        zip_fclose(f);
        return EXTRACT_EMEMORY;
    }
    e->z = z;
    e->file = f;
    e->declared = st.size;
    *out = e;
    return 0;
}

ssize_t zipread_entry_read(zipread_entry_t *e, void *buf, size_t n)
{
    if (e->err)
        return e->err;
    /* Ask for one byte more than the entry has left, so an entry that
     * inflates past its declared size is caught at that byte. */
    uint64_t left = e->declared - e->done;
    if (n > left + 1)
        n = (size_t)left + 1;
    if (n == 0)
        return 0;
    zip_int64_t k = zip_fread(e->file, buf, n);
    if (k < 0)
        return e->err = code_from_zip(zip_error_code_zip(zip_file_get_error(e->file)));
    e->done += (uint64_t)k;
    e->z->inflated += (size_t)k;
    if (e->done > e->declared || e->z->inflated > ZIPREAD_TOTAL_MAX)
        return e->err = EXTRACT_EBOMB;
    return (ssize_t)k;
}

int zipread_entry_error(const zipread_entry_t *e) { return e->err; }

void zipread_entry_close(zipread_entry_t *e)
{
    if (!e)
        return;
    zip_fclose(e->file);
    free(e);
}

int zipread_read_all(zipread_t *z, const char *name, size_t max, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    zipread_entry_t *e;
    int rc = zipread_entry_open(z, name, &e);
    if (rc)
        return rc;
    buf_t b;
    buf_init(&b, max);
    char chunk[65536];
    for (;;) {
        ssize_t k = zipread_entry_read(e, chunk, sizeof chunk);
        if (k < 0) {
            rc = (int)k;
            break;
        }
        if (k == 0)
            break;
        int brc = buf_append(&b, chunk, (size_t)k);
        if (brc) {
            rc = brc == BUF_ETOOBIG ? EXTRACT_EBOMB : EXTRACT_EMEMORY;
            break;
        }
    }
    zipread_entry_close(e);
    if (rc) {
        buf_cleanup(&b);
        return rc;
    }
    *data = buf_steal(&b, len);
    return *data ? 0 : EXTRACT_EMEMORY;
}
