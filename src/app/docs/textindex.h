/* textindex.h — the language layer of the full-text index: what FTS5 sees
 * of a chunk, and what it is asked for a question.
 *
 * The store indexes each chunk in an FTS5 table created with
 *   tokenize = 'porter unicode61 remove_diacritics 2'
 * over a column that holds not the chunk's display text but its *index
 * text* (textindex_doc), and routes a question with the MATCH expression of
 * textindex_query ranked by bm25(). This module knows the languages; FTS5
 * knows words, case, diacritics and (porter) English stems:
 *
 *  - Latin and other spaced scripts pass through as they are: unicode61
 *    cuts `asn1_der_decoding` into asn1 der decod, `process.nextTick` into
 *    process nexttick. A camelCase word is followed by its parts
 *    ("nextTick next Tick"), so "next tick" finds it too; an identifier of
 *    several tokens is followed by its fused form ("asn1derdecoding"), one
 *    rare token that a question naming the identifier asks for too, so
 *    the phrase "aes128 encrypt" matching inside gcm_aes128_encrypt does
 *    not rank that chunk with the one defining aes128_encrypt. Fullwidth ASCII
 *    (Ａ１) becomes ASCII.
 *  - unicode61 takes a whole run of CJK ideographs (or kana, or hangul) for
 *    ONE token, so each such run is cut here: Traditional Chinese becomes
 *    Simplified (OpenCC's t2s, character by character), then the run's
 *    overlapping bigrams are written, then its single characters (a run
 *    "数据库" indexes as "数据 据库 数 据 库"). The bigrams carry the
 *    ranking for questions of two characters or more; the single
 *    characters make one-character questions ("锁", or what remains of
 *    "锁是什么" once function characters are dropped) find a character
 *    inside a longer run, which bigrams alone never do (test_textindex
 *    measures both). Their price: a CJK run indexes about 2 tokens per
 *    character instead of 1, so bm25's length normalization sees CJK
 *    chunks as about twice as long as their English peers.
 *  - A question becomes quoted terms ORed: single words (English stopwords
 *    dropped), identifiers as phrases ("asn1 der decoding", which FTS5
 *    matches only where the three tokens stand in that order) followed by
 *    their fused token and their words ("asn1" "der" "decoding", which weigh a chunk holding the
 *    identifier above one holding another word of the question), CJK bigrams
 *    (single characters for a lone character) after Traditional →
 *    Simplified, with function characters (的 了 吗 是 什么 如何 …) and
 *    short hiragana particles (を は が …) dropped.
 *
 * Every term is double-quoted and holds no double quote, so nothing a user
 * types reaches FTS5 as syntax (no AND/OR/NOT/NEAR, column filters, ^, *,
 * parentheses). Both functions are linear in their input (about 1 ms for
 * a 64 KiB chunk of any script here).
 *
 * Weighing the previous user turn lower: FTS5 has no weight per term
 * (bm25()'s weights are per column), so a caller runs the question's
 * expression and the previous turn's as two queries and adds their
 * bm25() scores per chunk with a factor below 1 on the second.
 *
 * Thread safety: after textindex_open* returns, textindex_doc,
 * textindex_query and textindex_converts may be called from any number of
 * threads at once on one textindex_t: they only read it. OpenCC runs only
 * inside textindex_open*, which asks it once for its conversion of every
 * Han character and keeps the answers as a table (see textindex.c for why
 * and what that gives up). OpenCC's converter is itself reentrant (const
 * objects, tries searched with a per-call cursor), but its last-error
 * message is one unguarded process global, written when opening fails:
 * textindex_open* must not run in two threads at once.
 */
#ifndef KVCHAT_APP_TEXTINDEX_H
#define KVCHAT_APP_TEXTINDEX_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

enum {
    TEXTINDEX_OK = 0,
    TEXTINDEX_ENOMEM = -1,      /* = BUF_ENOMEM */
    TEXTINDEX_ETOOBIG = -2,     /* = BUF_ETOOBIG: the output buffer's max */
    TEXTINDEX_EINVAL = -3,
    TEXTINDEX_EUTF8 = -4,       /* the input is not valid UTF-8 */
};

/* Static English description of a TEXTINDEX_* code. */
const char *textindex_strerror(int rc);

typedef struct textindex textindex_t;

/* Most terms in one query expression. */
#define TEXTINDEX_QUERY_TERMS_MAX 64

/* Longest term, in bytes (a longer word or identifier is not searched). */
#define TEXTINDEX_TERM_MAX 256

/* A text index using OpenCC's default Traditional → Simplified
 * configuration (t2s.json, found in OpenCC's data directory). Same as
 * textindex_open_config(NULL, out). Takes about 40 ms (the table). */
int textindex_open(textindex_t **out);

/* A text index using the OpenCC configuration `config` (a file name or
 * path; NULL = "t2s.json"). When OpenCC cannot load it, the index still
 * works, without conversion: textindex_converts() is false and one warning
 * is logged (common/log.h); a block of characters OpenCC answers
 * unexpectedly for is left unconverted, with a warning. Indexes and
 * questions must come from indexes opened alike: a document indexed with
 * conversion is found by questions converted too. Returns TEXTINDEX_OK and
 * *out (free with textindex_close); TEXTINDEX_ENOMEM with *out = NULL. Not
 * to be called in two threads at once (see the top of this file). */
int textindex_open_config(const char *config, textindex_t **out);

/* Free the index. Accepts NULL. No other call on it may be running. */
void textindex_close(textindex_t *ti);

/* Whether Traditional Chinese is converted to Simplified (OpenCC loaded). */
bool textindex_converts(const textindex_t *ti);

/* Append to `out` the index text of a chunk's text s[0..n) (UTF-8; s may
 * hold no NUL-terminator and NULL when n is 0). The index text is UTF-8
 * without control characters, at most 4 × n bytes (CJK text about 3.7 × n
 * with its bigrams and characters; other text n, up to 3 × n with
 * camelCase parts). It is meant only for the FTS5 column described at the
 * top of this file, never for display.
 * Returns TEXTINDEX_OK; TEXTINDEX_EUTF8 when s is not valid UTF-8;
 * TEXTINDEX_ETOOBIG when out's max would be passed; TEXTINDEX_ENOMEM;
 * TEXTINDEX_EINVAL for ti or out NULL. On any error out holds what it held
 * before the call. */
int textindex_doc(textindex_t *ti, const char *s, size_t n, buf_t *out);

/* Append to `out` an FTS5 MATCH expression for a question q[0..n) (UTF-8):
 *   "term" OR "asn1 der decoding" OR "数据" OR …
 * at most TEXTINDEX_QUERY_TERMS_MAX distinct terms, in the order the
 * question names them (the first ones win when there are more). *n_terms
 * (may be NULL) receives the number of terms; a question with no
 * searchable word ("?", "the a of", emoji) appends nothing and gives 0 —
 * the caller must then not run a MATCH ("" is no valid expression).
 * The expression is safe to bind as the right-hand side of MATCH whatever
 * q holds. Returns as textindex_doc; on error *n_terms is 0 and out holds
 * what it held before. */
int textindex_query(textindex_t *ti, const char *q, size_t n, buf_t *out,
                    int *n_terms);

#endif
