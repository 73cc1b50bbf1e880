/* route.h — which part of which document answers a question.
 *
 * For a turn about documents cut into several parts, the question is
 * searched (BM25, the store's chunk index, textindex_query's expression)
 * among the chunks of the documents in play, and so is the previous user
 * turn, its scores weighted by ROUTE_PREVIOUS_WEIGHT (so that "tell me
 * more" stays on the topic). A part's score is its best chunk's score plus
 * ROUTE_SECOND_WEIGHT of its second best: a part holding two good matches
 * beats one holding one, but many weak matches (a manual that repeats its
 * wording in every section) never outvote the one chunk that matches
 * best. The best part wins, the previous turn's part on a tie. No match at all keeps the
 * previous turn's part, else the first part of the first document.
 *
 * A chunk that only lists names (a book's index, a table of contents, a
 * list of constants) mentions what a question names as often as the
 * passage that explains it, and would win by its many short lines: each
 * chunk's score is multiplied by route_chunk_weight, ROUTE_NAV_WEIGHT for
 * an index or contents and between that and 1 for text that is mostly
 * bare lines; and bm25's length normalization, which lifts a three-line
 * fragment that mentions a name over the section that explains it, is
 * tempered for chunks under ROUTE_SHORT_BYTES. On Debian's nettle manual
 * (13 parts, 200 questions each naming one of its functions, see
 * docs/benchmarks.md) the part holding the function's description was
 * chosen 65 times by bm25 alone and 198 times with these weights.
 *
 * The result carries what the answer shows of where it came from: the
 * prototype's rag_info (route_rag_info) and the best chunks as sources
 * (route_sources).
 */
#ifndef KVCHAT_APP_CHAT_ROUTE_H
#define KVCHAT_APP_CHAT_ROUTE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "app/app.h"

#define ROUTE_PREVIOUS_WEIGHT 0.3
#define ROUTE_SECOND_WEIGHT 0.1
#define ROUTE_CANDIDATES 32   /* chunks looked at per query */
#define ROUTE_SOURCES_MAX 3   /* chunks an answer cites */
#define ROUTE_NAV_WEIGHT 0.3  /* an index's or a table of contents' chunk */
#define ROUTE_NAV_MIN_LINES 8 /* fewer lines: never judged a list */
#define ROUTE_SHORT_BYTES 256 /* a shorter chunk's weight: sqrt(bytes / this) */

/* A document in play and its plan for the model in use. */
typedef struct {
    const store_doc_t *doc;
    const store_part_list_t *plan;
} route_doc_t;

/* Where the previous turn went: doc < 0 when unknown. */
typedef struct {
    int doc;
    long part;
} route_prev_t;

typedef struct {
    int doc;                   /* index into the docs given */
    size_t part;               /* index into that document's plan */
    double score;              /* the part's score; 0 without a match */
    bool matched;              /* the question (or previous turn) matched */
    store_chunk_list_t hits;   /* the best chunks of the chosen part (content
                                  included), best first, at most
                                  ROUTE_SOURCES_MAX; owned */
} route_t;

/* Pick the part for `question` (previous: the previous user turn, or
 * NULL) among docs[0..n_docs). Fills *out (route_cleanup). Returns 0, or
 * -1 with a message in err when the store fails; a question with no
 * searchable word is no failure (the fallback applies). */
int route_pick(app_t *a, const route_doc_t *docs, size_t n_docs, const char *question,
               const char *previous, route_prev_t prev, route_t *out, char *err, size_t errcap);

void route_cleanup(route_t *r);

/* The weight of a chunk's matches: ROUTE_NAV_WEIGHT when the last
 * component of its heading path names an index or a table of contents;
 * else, for a chunk of ROUTE_NAV_MIN_LINES lines or more, from 1 (at most
 * 60% of its lines without a sentence's end) down to ROUTE_NAV_WEIGHT (all
 * of them); else 1; times sqrt(bytes / ROUTE_SHORT_BYTES) for content
 * shorter than that. heading and content may be NULL. */
double route_chunk_weight(const char *heading, const char *content);

/* The best `limit` chunks for `text` among docs[0..n_docs), weighted as
 * route_pick weighs them, best first, with their content, into *out
 * (caller-owned). Returns 0 (no hits for text with no searchable word), or
 * -1 with a message in err. */
int route_search(app_t *a, const route_doc_t *docs, size_t n_docs, const char *text,
                 size_t limit, store_chunk_list_t *out, char *err, size_t errcap);

/* The prototype's rag_info for a routed turn: {group_id, total_groups,
 * similarity_score, method: "rag", filename, document_id, where,
 * content_preview, matched_chunk_id, matched_chunk_metadata {page_numbers,
 * heading}}. `where` is the part's pages or sections (parts_where). New
 * reference. */
json_t *route_rag_info(const route_doc_t *d, const route_t *r, const char *where);

/* rag_info for a turn that sent whole documents: method "full_document",
 * group_id 0, total_groups 1. New reference. */
json_t *route_rag_info_full(const store_doc_t *d);

/* The sources of a routed turn: [{document_id, filename, chunk_id,
 * page_numbers, page_labels, heading, score, snippet}] for r->hits. New
 * reference. */
json_t *route_sources(const route_doc_t *d, const route_t *r);

/* The first characters of a chunk's text, "…" when cut, as sources show
 * it. New reference. */
json_t *route_snippet(const char *content);

/* [first..last] as a JSON array of page numbers ([] when 0). */
json_t *route_page_numbers(int64_t first, int64_t last);

#endif
