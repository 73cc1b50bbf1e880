/* chunker.h — cutting a document's text into chunks for search and parts.
 *
 * A document's extracted text is cut into chunks of about target_tokens
 * (estimated) at paragraph and heading boundaries. Chunks are indexed for
 * full-text search and packed into the parts that fit a model's context;
 * answers cite them with their pages and heading path. This module only
 * cuts: no I/O, no store, no HTTP.
 *
 * The text arrives in pieces, in order, cut anywhere (even inside a UTF-8
 * character); chunks leave through a callback as soon as they are known.
 * Memory is fixed when the chunker is made (a window of about
 * 16 × max_tokens bytes, plus a copy of the marks), whatever the length of
 * the text.
 *
 * How the text is cut (the same text and parameters always give the same
 * chunks, however the text is split into pieces):
 *  1. Units are paragraphs: text between blank lines (a run of whitespace
 *     holding two "\n"; a run of more than CHUNKER_WS_BREAK whitespace bytes
 *     counts as one too). A heading mark is a paragraph boundary at its
 *     offset (moved forward to a character boundary if it falls inside one).
 *  2. Units are packed greedily: the chunk being built takes the next unit
 *     while its estimate stays at or below target_tokens; a unit that does
 *     not fit starts the next chunk. A chunk never passes max_tokens.
 *  3. A unit longer than max_tokens is replaced by its sentences (ending
 *     after ". ", "! ", "? ", after 。！？．｡ — closing quotes and brackets
 *     stay with their sentence — and at every "\n"), packed the same way; a
 *     sentence longer than max_tokens by its words (whitespace, and after
 *     the CJK clause marks ，、；：); a word longer than max_tokens by its
 *     characters. A cut is never inside a UTF-8 character.
 *     A Markdown table row (a line whose first character is '|', as
 *     kvchat-extract writes tables) is one sentence: its ". " and 。 do
 *     not end sentences, so a long table is cut between rows, and a row
 *     is cut inside only when it alone is longer than max_tokens (then by
 *     words, as above). Nothing is repeated (not even the header row).
 *  4. A heading mark ends the chunk being built, unless that chunk is still
 *     below target_tokens / 4: consecutive tiny sections then share a chunk,
 *     whose heading path is the one at its start. Page marks do not cut.
 *  5. A chunk starts and ends with a non-whitespace character; the bytes
 *     between two chunks (and before the first, after the last) are
 *     whitespace only. Empty or whitespace-only text gives no chunk.
 */
#ifndef KVCHAT_APP_CHUNKER_H
#define KVCHAT_APP_CHUNKER_H

#include <stddef.h>

enum {
    CHUNKER_OK = 0,
    CHUNKER_ENOMEM = -1,
    CHUNKER_EINVAL = -2,     /* bad parameters or marks, or misuse */
    CHUNKER_EUTF8 = -3,      /* the text is not valid UTF-8 (or holds a NUL) */
    CHUNKER_EINTERNAL = -4,  /* the fixed window overflowed: a bug */
};

/* Static English description of a CHUNKER_* code. */
const char *chunker_strerror(int rc);

/* Limits of chunker_params_t.max_tokens. */
#define CHUNKER_TOKENS_MIN 16
#define CHUNKER_TOKENS_MAX 65536

/* Heading levels kept in a path; deeper headings count as this level. */
#define CHUNKER_HEADING_LEVELS 6

/* A whitespace run longer than this many bytes is a paragraph boundary. */
#define CHUNKER_WS_BREAK 1024

/* Most bytes per estimated token in any text (see
 * chunker_estimate_tokens): a chunk's len <= this × est_tokens. */
#define CHUNKER_BYTES_PER_TOKEN_MAX 8

typedef struct {
    int target_tokens;   /* chunks grow up to this estimate (1..max_tokens) */
    int max_tokens;      /* no chunk passes this (CHUNKER_TOKENS_MIN..MAX) */
} chunker_params_t;

/* target_tokens 256, max_tokens 512. */
chunker_params_t chunker_params_default(void);

typedef enum { CHUNKER_MARK_PAGE = 1, CHUNKER_MARK_HEADING = 2 } chunker_mark_kind_t;

/* Where a page or a heading starts in the text. */
typedef struct {
    chunker_mark_kind_t kind;
    size_t offset;       /* byte offset in the text where it starts */
    int number;          /* page: physical page number (1-based);
                          * heading: level 1..6 (below 1 counts as 1, above
                          * CHUNKER_HEADING_LEVELS as CHUNKER_HEADING_LEVELS) */
    const char *label;   /* page: printed label ("iv", "23") or "";
                          * heading: its title. NULL counts as "". */
} chunker_mark_t;

typedef struct {
    size_t index;              /* 0, 1, 2, ... in text order */
    size_t start, end;         /* byte range [start, end) in the text */
    const char *text;          /* text[start..end), NUL-terminated */
    size_t len;                /* end - start */
    size_t n_chars;            /* code points */
    int est_tokens;            /* chunker_estimate_tokens(text, len), the
                                * figure the cuts were made by; <= max_tokens */
    /* Physical pages holding the first and the last byte (the page of
     * offset x is the last page mark at or before x; text before the first
     * page mark belongs to the first mark's page); 0 when there are no page
     * marks. */
    int page_first, page_last;
    const char *page_label_first, *page_label_last;   /* "" when none */
    /* Heading path at the chunk's start: "Chapter 2 > Section 2.1 > Errors"
     * (a level-n heading replaces the previous level-n one and clears the
     * deeper ones; empty titles are left out); "" when none. */
    const char *heading;
} chunker_chunk_t;

/* Called once per chunk, in order. Every pointer in *chunk is valid only
 * until it returns. It must not call chunker functions on the same
 * chunker. A nonzero return stops the chunker: chunker_feed() or
 * chunker_finish() returns that value, now and on every later call (use
 * values that are not CHUNKER_* codes to tell them apart). */
typedef int (*chunker_emit_fn)(void *ud, const chunker_chunk_t *chunk);

typedef struct chunker chunker_t;

/* A chunker for one text. p NULL means chunker_params_default(). marks
 * (n_marks of them, sorted by offset, non-decreasing) are copied with their
 * labels: the caller may free them once this returns. Marks past the end of
 * the text are ignored. Returns CHUNKER_OK and *out (free with
 * chunker_free); CHUNKER_EINVAL (bad parameters, unsorted marks, an unknown
 * kind, marks NULL with n_marks > 0, emit or out NULL) or CHUNKER_ENOMEM,
 * with *out = NULL (when out is not NULL). */
int chunker_new(const chunker_params_t *p, const chunker_mark_t *marks, size_t n_marks,
                chunker_emit_fn emit, void *ud, chunker_t **out);

/* Free the chunker (without emitting what is left). Accepts NULL. */
void chunker_free(chunker_t *c);

/* Give the next len bytes of the text (piece may be NULL when len is 0).
 * Emits every chunk that the text so far settles. Returns CHUNKER_OK; the
 * callback's nonzero value; CHUNKER_EUTF8 (invalid UTF-8 or a NUL byte);
 * CHUNKER_EINVAL (c NULL, piece NULL with len > 0, or called after
 * chunker_finish); CHUNKER_EINTERNAL. After any nonzero return, every later
 * chunker_feed and chunker_finish returns the same value and emits nothing. */
int chunker_feed(chunker_t *c, const char *piece, size_t len);

/* The text is complete: emit what is left. Returns as chunker_feed does
 * (CHUNKER_EUTF8 also when the text ends inside a UTF-8 character). After
 * it, chunker_feed and chunker_finish return CHUNKER_EINVAL. */
int chunker_finish(chunker_t *c);

/* Bytes the chunker allocated (fixed from chunker_new on: the window, the
 * marks, the heading path buffer). 0 for NULL. */
size_t chunker_memory(const chunker_t *c);

/* Estimated tokens of s[0..n) for a byte-level BPE tokenizer of the Qwen2
 * kind: deterministic, linear, conservative. Calibrated against Qwen2's
 * tokenizer (the engine's /tokenize, real qwen2 vocabulary) on English
 * prose, Markdown, C source and the Vim tutor in 30 languages, then checked
 * on held-out Python, licences and UI strings in 6 languages: of ~2150
 * pieces of ~1200 bytes, none had a true count more than 15% above the
 * estimate (the most: 12%); English prose is overestimated by ~20%, source
 * code by ~30%, Chinese and Japanese by ~20-35%. Per run of characters:
 *  - ASCII letters: 1 token for the first 6, then 1 per 5 more; 1 per 3
 *    once a non-ASCII Latin letter (é, č, ệ) has appeared in s (languages
 *    other than English split ASCII words more);
 *  - other letters in the same run: Latin-1 1 per 2.5, Latin Extended 1
 *    each, Vietnamese 1 per 2.5, Cyrillic 1 per 2, Greek 1 each, Hebrew and
 *    Arabic 1 per 1.5, Indic scripts 1.25 each, other scripts 1 each; a run
 *    costs at least 1;
 *  - digits 1 each (Qwen2 splits numbers into digits);
 *  - ASCII punctuation 1 each, but a repeat of the previous character 1/4
 *    ("-----" merges);
 *  - CJK ideographs, kana, Hangul, fullwidth forms, other symbols 1 each;
 *    characters beyond the BMP other than CJK (emoji) 2 each;
 *  - whitespace: a single space before a non-digit merges with what follows
 *    (0); any other run 1 per 8 bytes.
 * Its blind spot: Latin-script text in a language other than English that
 * has no accented letter at all is costed as English (up to ~20% under).
 * The estimate of s[0..i) never exceeds that of s[0..j) for i < j at
 * character boundaries (the chunker relies on it).
 * Invalid UTF-8 bytes count 1 each. Unless s is all whitespace (which may
 * count 0), n <= CHUNKER_BYTES_PER_TOKEN_MAX × the result. Saturates at
 * INT_MAX. */
int chunker_estimate_tokens(const char *s, size_t n);

#endif
