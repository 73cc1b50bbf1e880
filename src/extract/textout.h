/* textout.h — the normalising sink every kvchat-extract backend writes to.
 *
 * Backends push code points (or UTF-8 pieces, or line/paragraph breaks);
 * the sink holds the one copy of the output and keeps these invariants at
 * every step, so no backend has to:
 *   - the contents are well-formed UTF-8 (ill-formed input becomes U+FFFD);
 *   - no NUL and no control character other than '\n' and '\t' (CR and CRLF
 *     become '\n'; FF, VT, NEL, U+2028/2029 become '\n'; C0/C1 controls, DEL,
 *     U+FEFF and the soft hyphen U+00AD are dropped; NBSP becomes a space);
 *   - no spaces or tabs at the end of a line;
 *   - no blank line at the start, at most two consecutive blank lines;
 *   - at most `max` bytes (the --max-output limit): going over makes every
 *     later call fail with EXTRACT_ETOOBIG, never a silent truncation.
 * Errors are sticky: after the first failure every call returns it, so a
 * backend may check only now and then.
 *
 * The sink also keeps the document's structure marks (extract.h): a page
 * or a heading starts at the current end of the text. Backends record them
 * at a paragraph boundary (after textout_blank_line() or at a line start),
 * so that the offset is exactly where the page or heading begins. Marks are
 * kept in offset order; when the sink later drops blanks at the end of the
 * text (a line end, textout_finish()), offsets past the new end move back
 * to it, so an offset is never past the end and always on a character
 * boundary. Labels and titles are normalised when recorded: well-formed
 * UTF-8, whitespace and control characters collapsed to single spaces,
 * trimmed, cut at a character boundary to EXTRACT_MARK_LABEL_MAX bytes.
 * Structure is optional and never fails the text: past EXTRACT_MARKS_MAX
 * marks or extract_marks_limit(max) bytes of them on the wire, or when
 * memory runs out for them, every mark is dropped and no more are
 * recorded (textout_marks_dropped() says so).
 */
#ifndef KVCHAT_EXTRACT_TEXTOUT_H
#define KVCHAT_EXTRACT_TEXTOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "extract/extract.h"

/* One recorded mark; its label is labels.data + label_at (NUL-terminated). */
typedef struct {
    extract_mark_kind_t kind;
    int number;
    size_t offset;
    size_t label_at;
} textout_mark_t;

typedef struct {
    buf_t buf;
    int err;          /* sticky EXTRACT_* error, 0 while fine */
    bool after_cr;    /* last code point was '\r' (swallow a following '\n') */
    /* Structure marks. */
    textout_mark_t *marks;
    size_t n_marks, cap_marks;
    buf_t labels;         /* the labels, each NUL-terminated */
    size_t marks_bytes;   /* their size on the wire (an upper bound) */
    size_t marks_limit;   /* extract_marks_limit(max) */
    int last_page;        /* number of the last page mark, 0 if none */
    bool marks_dropped;
} textout_t;

/* Caller-owned struct; output may grow to `max` bytes. */
void textout_init(textout_t *t, size_t max);

/* Frees the contents. Accepts NULL. */
void textout_cleanup(textout_t *t);

/* The limit given to textout_init(). */
size_t textout_max(const textout_t *t);

/* Append one code point, normalised as described above. Returns 0,
 * EXTRACT_ETOOBIG or EXTRACT_EMEMORY (sticky). */
int textout_putc(textout_t *t, uint32_t cp);

/* Append n bytes of (possibly ill-formed) UTF-8. Same returns. */
int textout_put_utf8(textout_t *t, const char *s, size_t n);

/* End the current line unless the output is at the start of a line. */
int textout_newline(textout_t *t);

/* Make sure the output ends with one blank line (a paragraph, page or
 * chapter break); nothing at the start of the output. */
int textout_blank_line(textout_t *t);

/* True at the start of the output or right after a '\n'. */
bool textout_at_line_start(const textout_t *t);

/* The sticky error, 0 if none. */
int textout_error(const textout_t *t);

/* Bytes of text so far: the offset a mark recorded now would get. */
size_t textout_len(const textout_t *t);

/* Record that page `number` (physical, >= 1) starts here, with its printed
 * label (NULL or "" when the format has none). A number < 1 is ignored.
 * Returns the sticky error or 0: a mark never fails the text. */
int textout_page(textout_t *t, int number, const char *label);

/* The number of the last page recorded, 0 if none (for backends that
 * number pages as they find them, across several calls). */
int textout_last_page(const textout_t *t);

/* Record that a heading of `level` starts here, with title[0..n) (UTF-8,
 * normalised as above). Levels past 6 count as 6; a level < 1 or a title
 * that normalises to "" is ignored. Returns as textout_page(). */
int textout_heading(textout_t *t, int level, const char *title, size_t n);

/* Record a heading that started at `start`, a textout_len() taken before
 * its text was written (clamped to the current end), with title[0..n) —
 * or, when title is NULL, the text written since `start` as its title.
 * `title` may point into the sink's own text. Ignored, besides the cases
 * of textout_heading(), when a mark was recorded after `start` or the last
 * mark is a heading at `start`: that heading was inside this one, and
 * headings do not nest (the inner one stays). Returns as textout_page(). */
int textout_heading_at(textout_t *t, size_t start, int level, const char *title, size_t n);

/* Number of marks recorded. */
size_t textout_mark_count(const textout_t *t);

/* Mark i (< textout_mark_count()) into *m; m->label points into the sink
 * and stays valid until the sink is next changed or cleaned up. */
void textout_mark_get(const textout_t *t, size_t i, extract_mark_t *m);

/* True when the marks were dropped (limits, memory). */
bool textout_marks_dropped(const textout_t *t);

/* Finish: drop trailing blank lines, end with exactly one '\n', and hand
 * the text over (*text malloc'd, NUL-terminated, caller frees; the sink is
 * left empty of text but keeps its marks, every offset now at most *len;
 * marks that pointed into the dropped blanks point at the end). *len is its length in bytes, *chars in code points.
 * Returns 0; EXTRACT_ENOTEXT when there is nothing but whitespace; or the
 * sticky error. On failure *text is NULL. */
int textout_finish(textout_t *t, char **text, size_t *len, size_t *chars);

#endif
