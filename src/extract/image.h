/* image.h — the image backend (PNG, JPEG, TIFF, WebP): text by OCR; the
 * only module that includes Leptonica.
 *
 * Leptonica decodes the file (Debian's build reads PNG, JPEG, TIFF, WebP,
 * GIF, JPEG 2000); every page of it is turned into 8-bit grayscale and
 * recognised by ocr.h. A TIFF may hold several pages: each is a page of
 * the document, with a page mark (numbered from 1, no label) where its
 * text starts; other formats are one page.
 *
 * Hostile files are refused before anything is decoded: more than
 * EXTRACT_OCR_PAGES_MAX pages, or a page whose header says it has more
 * than OCR_MAX_PIXELS pixels (or a side of more than 65,535), is
 * EXTRACT_EBOMB (a TIFF's directories are walked once for this, and its
 * pages then decoded in turn: linear in the pages, however many); a header or an image Leptonica cannot read is
 * EXTRACT_ECORRUPT. With OCR off (no languages) an image is
 * EXTRACT_EUNSUPPORTED; an image in which OCR finds no text is
 * EXTRACT_ENOTEXT through the sink. Leptonica's messages are silenced.
 */
#ifndef KVCHAT_EXTRACT_IMAGE_H
#define KVCHAT_EXTRACT_IMAGE_H

#include "extract/ocr.h"
#include "extract/textout.h"

/* Largest image file read, in bytes (it is read into memory whole). */
#define IMAGE_FILE_MAX ((size_t)256 << 20)

/* Returns 0 or an EXTRACT_* code; the text is in out. ocr may be NULL
 * (OCR off). */
int image_extract(int fd, textout_t *out, ocr_t *ocr);

/* Where image_decode() sends what it decodes. begin() is told the page
 * count once every header has passed the limits, before any page is
 * decoded; page() gets each page in order as 8-bit grayscale rows (at
 * most OCR_MAX_PIXELS pixels; the pixels are freed after it returns) and
 * its resolution (OCR_DPI when the file names none or an odd one). A
 * non-zero return from either stops the decoding and is returned. */
typedef struct {
    int (*begin)(void *ud, int pages);
    int (*page)(void *ud, int page, const unsigned char *gray, int width, int height,
                int stride, int dpi);
    void *ud;
} image_sink_t;

/* Decode every page of the image file open in fd (the limits and errors
 * of image_extract(), without OCR). Returns 0 or an EXTRACT_* code. Used
 * by image_extract() and by the fuzz target of this path. */
int image_decode(int fd, const image_sink_t *sink);

#endif
