/* ocr.h — text recognised from page images; the only module that includes
 * Tesseract.
 *
 * One ocr_t serves one document: the pdf backend calls it for each page
 * that has no text layer, the image backend for each page of an image.
 * Tesseract is started (its language data loaded) only when the first
 * page is announced, so a document that needs no OCR costs nothing.
 *
 * Images come in as 8-bit grayscale rows (one byte a pixel, 0 = black),
 * so that neither MuPDF nor Leptonica types cross this header.
 *
 * Progress and record: when a progress descriptor is given, ocr_begin()
 * writes "ocr <pages>\n" to it and every recognised page
 * "page <page> <confidence>\n" (extract.h describes the protocol). The
 * text of a page goes to the sink as lines, paragraphs separated by blank
 * lines, followed by a blank line.
 *
 * Limits: a page gets at most page_seconds of recognition (Tesseract's
 * own deadline; what it recognised by then is kept), the document at most
 * total_seconds of OCR in all (passing it is EXTRACT_EOCRTIME). ocr_begin()
 * also raises the process's soft CPU-time limit to its hard limit: the
 * runner leaves room between the two for OCR (runner.h).
 */
#ifndef KVCHAT_EXTRACT_OCR_H
#define KVCHAT_EXTRACT_OCR_H

#include <stdbool.h>

#include "extract/textout.h"

/* Resolution pages are rendered at, and the most pixels a page image may
 * have (a larger page is rendered at a lower resolution; an image file
 * with more is refused before it is decoded). */
#define OCR_DPI 300
#define OCR_MAX_PIXELS ((long long)40 * 1000 * 1000)

typedef struct {
    const char *languages;   /* Tesseract languages, "eng" or "eng+deu";
                                NULL or "" = OCR off */
    const char *datapath;    /* tessdata directory; NULL = Tesseract's default */
    unsigned page_seconds;   /* per page; 0 = no limit */
    unsigned total_seconds;  /* per document; 0 = no limit */
    int progress_fd;         /* -1: no progress lines */
} ocr_options_t;

/* Options with OCR off, no limits and no progress. */
void ocr_options_default(ocr_options_t *o);

typedef struct ocr ocr_t;

/* A recogniser for one document. opt (and its strings) must outlive it.
 * Returns NULL when memory runs out. Cheap: nothing is loaded yet. */
ocr_t *ocr_new(const ocr_options_t *opt);

/* Free it. Accepts NULL. */
void ocr_free(ocr_t *o);

/* True when the options ask for OCR (o may be NULL: false). */
bool ocr_enabled(const ocr_t *o);

/* Announce that `pages` (>= 1) pages are to be recognised: starts the
 * document's clock, loads the language data, writes the "ocr" progress
 * line. Called once. Returns 0; EXTRACT_EINTERNAL when the language data
 * cannot be loaded (a configuration error, not the file's fault);
 * EXTRACT_EMEMORY. */
int ocr_begin(ocr_t *o, int pages);

/* Recognise one page image (width x height pixels, rows `stride` bytes
 * apart, at `dpi`) and append its text to out. `page` is the physical
 * page number reported on the progress line. Returns 0 (also when nothing
 * was recognised); EXTRACT_EOCRTIME when the document's OCR time is used
 * up; EXTRACT_EMEMORY; the sink's error. The pixels stay the caller's. */
int ocr_page(ocr_t *o, int page, const unsigned char *gray, int width, int height, int stride,
             int dpi, textout_t *out);

/* Pages recognised so far, and their mean confidence (0..100; -1 when
 * none). */
int ocr_pages_done(const ocr_t *o);
int ocr_mean_confidence(const ocr_t *o);

#endif
