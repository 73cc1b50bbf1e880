/* detect.h — what kind of file this is, decided by its content.
 *
 * The client's filename only breaks ties between text types (.md, .html);
 * content always wins for known formats: a PDF named .txt is a PDF, and a
 * PNG named .pdf is unsupported. Rules, in order:
 *   empty file                       -> EXTRACT_ENOTEXT
 *   an image signature at offset 0   -> png (89 "PNG" 0D 0A 1A 0A), jpeg
 *                 (FF D8 FF), tiff ("II*\0", "MM\0*"), webp ("RIFF" ....
 *                 "WEBP"): read by OCR (image.h)
 *   "%PDF-" in the first 1 KiB       -> pdf
 *   zip (PK\3\4): mimetype entry "application/vnd.oasis.opendocument.text"
 *                 -> odt; "...opendocument.presentation" -> odp;
 *                 "...opendocument.spreadsheet" -> ods (templates too);
 *                 "application/epub+zip" -> epub; a word/document.xml
 *                 entry -> docx; ppt/presentation.xml -> pptx;
 *                 xl/workbook.xml -> xlsx; META-INF/container.xml -> epub;
 *                 any other zip -> EXTRACT_EUNSUPPORTED
 *   OLE2 compound file holding an "EncryptedPackage" stream (how Office
 *                 stores a password-protected docx) -> EXTRACT_EENCRYPTED;
 *                 other OLE2 files (legacy .doc, .xls) -> unsupported
 *   binary content (over 1% NUL or other control bytes in the first 64 KiB,
 *                 counted in UTF-16 units after a UTF-16 BOM)
 *                                    -> EXTRACT_EUNSUPPORTED
 *   text starting with '<' and naming <!doctype html, <html, <head or <body
 *                 in its first 1 KiB, or named .html/.htm/.xhtml -> html
 *   text named .md/.markdown         -> md
 *   text named .csv/.tsv, or text not named .txt/.text whose head reads
 *                 as delimited values (csv_sniff: 3+ records with the same
 *                 count, 2 or more, of one delimiter)  -> csv
 *   other text                       -> txt
 */
#ifndef KVCHAT_EXTRACT_DETECT_H
#define KVCHAT_EXTRACT_DETECT_H

#include "extract/extract.h"

/* The type the client's filename suggests (NULL or no extension:
 * EXTRACT_TYPE_UNKNOWN). */
extract_type_t detect_from_name(const char *name);

/* Detect the type of the regular file open in fd (read with pread; the
 * offset is not used). `name` is the client's filename or NULL. Returns 0
 * and sets *type; or EXTRACT_ENOTEXT, EXTRACT_EUNSUPPORTED,
 * EXTRACT_EENCRYPTED, EXTRACT_ECORRUPT (a damaged zip), EXTRACT_EBOMB,
 * EXTRACT_EMEMORY, with *type set to the best guess for the error message
 * (often EXTRACT_TYPE_UNKNOWN). */
int detect_type(int fd, const char *name, extract_type_t *type);

#endif
