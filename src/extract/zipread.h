/* zipread.h — reading entries of a zip archive (docx, odt, epub) without
 * letting the archive decide how much memory or time that takes.
 *
 * The only module that includes libzip. Guards, all reported as
 * EXTRACT_EBOMB:
 *   - more than ZIPREAD_ENTRIES_MAX entries;
 *   - an entry declaring more than ZIPREAD_ENTRY_MAX uncompressed bytes, or
 *     more than ZIPREAD_RATIO_MAX times its compressed size once it declares
 *     more than ZIPREAD_RATIO_FLOOR bytes;
 *   - an entry that inflates to more bytes than it declared (bytes are
 *     counted while inflating, so lying headers do not help);
 *   - more than ZIPREAD_TOTAL_MAX bytes inflated from one archive.
 * An entry encrypted with zip encryption gives EXTRACT_EENCRYPTED; anything
 * else libzip rejects gives EXTRACT_ECORRUPT.
 *
 * Ownership: an entry must be closed before its archive.
 */
#ifndef KVCHAT_EXTRACT_ZIPREAD_H
#define KVCHAT_EXTRACT_ZIPREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define ZIPREAD_ENTRIES_MAX 20000
#define ZIPREAD_ENTRY_MAX ((size_t)256 << 20)
#define ZIPREAD_TOTAL_MAX ((size_t)512 << 20)
#define ZIPREAD_RATIO_MAX 200
#define ZIPREAD_RATIO_FLOOR ((size_t)16 << 20)

typedef struct zipread zipread_t;
typedef struct zipread_entry zipread_entry_t;

/* Open the archive in fd (which stays the caller's: a duplicate is used).
 * Returns 0 and sets *out (free with zipread_close); EXTRACT_ECORRUPT when
 * it is not a readable zip; EXTRACT_EBOMB; EXTRACT_EMEMORY. */
int zipread_open(int fd, zipread_t **out);

/* Close the archive. Accepts NULL. */
void zipread_close(zipread_t *z);

/* True when the archive has an entry called exactly `name`. */
bool zipread_exists(zipread_t *z, const char *name);

/* Open entry `name` for reading. Returns 0 and sets *out (close with
 * zipread_entry_close); EXTRACT_ECORRUPT when there is no such entry or it
 * cannot be read; EXTRACT_EENCRYPTED; EXTRACT_EBOMB; EXTRACT_EMEMORY. */
int zipread_entry_open(zipread_t *z, const char *name, zipread_entry_t **out);

/* Read up to n bytes. Returns the count (0 at the end) or a negative
 * EXTRACT_* code, which then sticks to the entry. */
ssize_t zipread_entry_read(zipread_entry_t *e, void *buf, size_t n);

/* The sticky error of the entry, 0 if none. */
int zipread_entry_error(const zipread_entry_t *e);

/* Close an entry. Accepts NULL. */
void zipread_entry_close(zipread_entry_t *e);

/* Read all of entry `name`, at most `max` bytes, into *data (malloc'd,
 * NUL-terminated, caller frees). Returns 0; EXTRACT_EBOMB when the entry is
 * larger than max; or zipread_entry_open's codes. *data is NULL on failure. */
int zipread_read_all(zipread_t *z, const char *name, size_t max, char **data, size_t *len);

#endif
