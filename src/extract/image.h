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
 * EXTRACT_EBOMB; a header or an image Leptonica cannot read is
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

#endif
