/* extract.h — the contract between kvchat-extract and the code that runs it.
 *
 * kvchat-extract turns one uploaded file into UTF-8 text. It reports its
 * outcome in three places, all defined here:
 *
 *   exit status   0 on success, otherwise extract_exit_status(code): every
 *                 program code below has its own status (10..18, 2);
 *   stderr        exactly one status line as the last line written:
 *                   type=<type> chars=<N>           on success
 *                   error=<code-name> <message>     on failure
 *                 where <message> is extract_message(code, type) — always one
 *                 of a fixed set of sentences, never text taken from the file,
 *                 so a reader can check it against this table before showing
 *                 it to a user;
 *   stdout        the text (success only; nothing is written on failure);
 *   --structure-fd N
 *                 the document's structure (pages, headings) as marks, one
 *                 per line, written after the text and only on success
 *                 (format below).
 *
 * Codes follow the house rule (0 = ok, negative = error). The program codes
 * are shared with the runner (runner.h), which adds codes of its own for
 * what only a parent can observe (crash, timeout, CPU limit, spawn failure).
 * This file and extract.c depend on nothing but libc (and codepoint.c, the
 * same library): both the program and the runner library link them.
 */
#ifndef KVCHAT_EXTRACT_EXTRACT_H
#define KVCHAT_EXTRACT_EXTRACT_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    EXTRACT_OK = 0,

    /* Reported by kvchat-extract (exit status = -code). */
    EXTRACT_EUSAGE = -2,        /* bad command line */
    EXTRACT_EUNSUPPORTED = -10, /* not a file type kvchat reads */
    EXTRACT_ECORRUPT = -11,     /* damaged, truncated or unreadable */
    EXTRACT_EENCRYPTED = -12,   /* password-protected / DRM */
    EXTRACT_ENOTEXT = -13,      /* no text at all (empty, scanned PDF) */
    EXTRACT_ETOOBIG = -14,      /* text larger than --max-output */
    EXTRACT_EBOMB = -15,        /* archive expands past the unpack limits */
    EXTRACT_EMEMORY = -16,      /* ran out of memory (also set by the runner) */
    EXTRACT_EINTERNAL = -17,    /* a bug or an unexpected system error */
    EXTRACT_EOCRTIME = -18,     /* OCR ran past its time limit (--ocr-seconds) */

    /* Reported by the runner only. */
    EXTRACT_ECRASHED = -30,     /* killed by a signal */
    EXTRACT_ETIMEOUT = -31,     /* wall-clock limit reached */
    EXTRACT_ECPU = -32,         /* CPU-time limit reached */
    EXTRACT_ESPAWN = -33,       /* could not start the program */
    EXTRACT_EPROTOCOL = -34,    /* exited 0 but its output broke the contract */
} extract_code_t;

/* File types, in the order of extract_type_name(). */
typedef enum {
    EXTRACT_TYPE_UNKNOWN = 0,
    EXTRACT_TYPE_TXT,
    EXTRACT_TYPE_MD,
    EXTRACT_TYPE_PDF,
    EXTRACT_TYPE_DOCX,
    EXTRACT_TYPE_ODT,
    EXTRACT_TYPE_HTML,
    EXTRACT_TYPE_EPUB,
    EXTRACT_TYPE_PNG,           /* images: text by OCR (image.h) */
    EXTRACT_TYPE_JPEG,
    EXTRACT_TYPE_TIFF,
    EXTRACT_TYPE_WEBP,
    EXTRACT_TYPE_PPTX,          /* slides: pptx.h, odf.h */
    EXTRACT_TYPE_ODP,
    EXTRACT_TYPE_XLSX,          /* spreadsheets: xlsx.h, odf.h, csv.h */
    EXTRACT_TYPE_ODS,
    EXTRACT_TYPE_CSV,           /* csv and tsv */
    EXTRACT_TYPE_COUNT
} extract_type_t;

/* ---- Document structure ----------------------------------------------------
 *
 * A mark says "a page starts here" or "a heading starts here", at a byte
 * offset into the text. On the descriptor named by --structure-fd, each
 * mark is one line, in this order of fields separated by one tab:
 *
 *   P <offset> <page>  <label>      a page starts at <offset>
 *   H <offset> <level> <title>      a heading starts at <offset>
 *
 *   <offset>  decimal byte offset into the text, without sign or leading
 *             zeros; at most the text's length (a mark at the length is an
 *             empty page or heading at the end) and on a UTF-8 character
 *             boundary; never smaller than the previous line's
 *   <page>    physical page number, 1-based, decimal
 *   <level>   heading level 1..6, decimal
 *   <label>   for P the printed page label ("iv", "23"), "" when the
 *             format has none; for H the heading's title; at most
 *             EXTRACT_MARK_LABEL_MAX bytes of well-formed UTF-8 with no
 *             control character (tabs, line breaks and other controls are
 *             written as spaces), possibly empty
 *   each line ends with '\n' (the last one too).
 *
 * At most EXTRACT_MARKS_MAX lines and extract_marks_limit(max_output)
 * bytes: a document whose structure would pass either limit is sent with
 * no marks at all (all or nothing: a partial structure would tell a
 * reader that the rest of the text has no pages and no headings). A type
 * without structure sends nothing. Which types report what: txt pages
 * split by form feeds; md ATX and setext headings; html h1-h6; docx
 * heading paragraphs; odt text:h; pdf pages (with /PageLabels) and its
 * outline as headings; epub its table of contents (nav, else NCX) and
 * its chapters' h1-h6 as headings, its page list and print page breaks
 * as pages; pptx and odp a page per slide and its title as a heading;
 * xlsx and ods each sheet's name as a heading; csv none (the backends'
 * headers say how). */

typedef enum {
    EXTRACT_MARK_PAGE = 'P',
    EXTRACT_MARK_HEADING = 'H',
} extract_mark_kind_t;

typedef struct {
    extract_mark_kind_t kind;
    size_t offset;          /* byte offset in the text where it starts */
    int number;             /* page: physical number (>= 1); heading: level 1..6 */
    char *label;            /* page label or heading title, NUL-terminated;
                               "" when none. Owned by whoever holds the mark
                               (extract_result_t: the result). */
} extract_mark_t;

#define EXTRACT_MARKS_MAX 1000000
#define EXTRACT_MARK_LABEL_MAX 256          /* bytes of a label or title */
#define EXTRACT_HEADING_LEVEL_MAX 6
/* Longest line extract_mark_format() writes, including the '\n' and a NUL. */
#define EXTRACT_MARK_LINE_MAX (4 + 20 + 11 + EXTRACT_MARK_LABEL_MAX + 2)

/* The most bytes of marks a run with this --max-output may send:
 * max_output / 8, at least 64 KiB, at most 16 MiB. Both sides of the pipe
 * use it. */
size_t extract_marks_limit(size_t max_output);

/* Write mark m as one line of the format above (with its '\n' and a NUL)
 * into buf, which has room for EXTRACT_MARK_LINE_MAX bytes. The label is
 * made to fit the format: ill-formed UTF-8 becomes U+FFFD, control
 * characters become spaces, and it is cut at a character boundary to
 * EXTRACT_MARK_LABEL_MAX bytes (m->label may be NULL: ""). Returns the
 * line's length without the NUL; 0 when the kind is unknown, or the number
 * is out of range (nothing is written then). */
size_t extract_mark_format(const extract_mark_t *m, char *buf);

/* Parse one line line[0..n) of the format above, without its '\n',
 * strictly: anything not exactly as written above is refused. On success
 * returns 0 and fills *m with m->label pointing into `line` (not
 * NUL-terminated: *label_len bytes). Returns EXTRACT_EPROTOCOL otherwise,
 * *m then unspecified. Order and the text's length are the caller's to
 * check. */
int extract_mark_parse(const char *line, size_t n, extract_mark_t *m, size_t *label_len);

/* ---- OCR progress -----------------------------------------------------------
 *
 * With --progress-fd N, kvchat-extract reports its OCR (text recognised
 * from page images: scanned PDF pages, images) on descriptor N as it goes,
 * one line each, fields separated by one space:
 *
 *   ocr <pages>               OCR starts on <pages> pages (1..EXTRACT_OCR_PAGES_MAX),
 *                             written once, before any page line
 *   page <page> <confidence>  page <page> (physical, 1-based, increasing)
 *                             was recognised, Tesseract's mean word
 *                             confidence 0..100
 *
 * decimal numbers without sign or leading zeros; each line ends with '\n';
 * at most <pages> page lines. A document that needs no OCR writes nothing.
 * The reader uses the lines for progress while the program runs and, on
 * success, as the record of which pages were OCR'd. The "ocr" line also
 * tells it that the OCR time limit (--ocr-seconds) now applies on top of
 * the usual ones (runner.h). */
#define EXTRACT_OCR_PAGES_MAX 2000
#define EXTRACT_PROGRESS_LINE_MAX 64

/* Longest message extract_message() writes, including the NUL. */
#define EXTRACT_MESSAGE_MAX 256

/* Short technical description of a code, for logs ("corrupt or unreadable
 * file"). Never NULL; unknown codes give "unknown error". */
const char *extract_strerror(int code);

/* The token used on the status line ("corrupt"); NULL for EXTRACT_OK and
 * unknown codes. */
const char *extract_code_name(int code);

/* Inverse of extract_code_name() for program codes; returns EXTRACT_OK when
 * `name` (of length n) names none of them. */
int extract_code_parse(const char *name, size_t n);

/* Exit status kvchat-extract uses for `code` (0 for EXTRACT_OK). */
int extract_exit_status(int code);

/* Program code for an exit status, or EXTRACT_OK when the status is 0 or
 * not one kvchat-extract uses (the runner then reports an internal error). */
int extract_code_from_exit(int status);

/* "txt", "md", "pdf", "docx", "odt", "html", "epub", "png", "jpeg", "tiff",
 * "webp" (and the types added after them); "unknown" otherwise.
 * The string is static. */
const char *extract_type_name(extract_type_t type);

/* Inverse of extract_type_name() over the known types; returns
 * EXTRACT_TYPE_UNKNOWN when `name` (of length n) is none of them. */
extract_type_t extract_type_parse(const char *name, size_t n);

/* Write into buf (at most n bytes, NUL-terminated, truncated if n is small)
 * the sentence a user sees for `code` about a file of `type`, e.g. "The PDF
 * is password-protected; kvchat cannot read it.". Fixed sentences only: no
 * part of it comes from outside. */
void extract_message(int code, extract_type_t type, char *buf, size_t n);

/* True when the app should answer "unsupported media type" (HTTP 400/415)
 * rather than "unprocessable" (422). */
bool extract_error_is_unsupported(int code);

/* True when the failure is kvchat's fault, not the file's (usage, spawn,
 * protocol, internal): the app answers 500 and logs it loudly. */
bool extract_error_is_internal(int code);

/* True for the image types (text only by OCR). */
bool extract_type_is_image(extract_type_t type);

#endif
