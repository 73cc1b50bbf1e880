/* extract.h — the contract between kvchat-extract and the code that runs it.
 *
 * kvchat-extract turns one uploaded file into UTF-8 text. It reports its
 * outcome in three places, all defined here:
 *
 *   exit status   0 on success, otherwise extract_exit_status(code): every
 *                 program code below has its own status (10..17, 2);
 *   stderr        exactly one status line as the last line written:
 *                   type=<type> chars=<N>           on success
 *                   error=<code-name> <message>     on failure
 *                 where <message> is extract_message(code, type) — always one
 *                 of a fixed set of sentences, never text taken from the file,
 *                 so a reader can check it against this table before showing
 *                 it to a user;
 *   stdout        the text (success only; nothing is written on failure).
 *
 * Codes follow the house rule (0 = ok, negative = error). The program codes
 * are shared with the runner (runner.h), which adds codes of its own for
 * what only a parent can observe (crash, timeout, CPU limit, spawn failure).
 * This file and extract.c depend on nothing but libc: both the program and
 * the runner library link them.
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
    EXTRACT_TYPE_COUNT
} extract_type_t;

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

/* "txt", "md", "pdf", "docx", "odt", "html", "epub"; "unknown" otherwise.
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

#endif
