/* image.c — see image.h. The file is read into memory once; headers are
 * read from it (readHeaderMemTiff / pixReadHeaderMem) and checked before
 * each page is decoded, so an image that would need gigabytes is refused
 * for the price of its header. Leptonica keeps 32-bit words in host order
 * with the first pixel in the most significant byte; a byte-swapped copy
 * gives plain rows for ocr_page(). */
#include "extract/image.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <leptonica/allheaders.h>

#define SIDE_MAX 65535

/* Read the whole file. Returns 0 with *data (free it) and *size, or an
 * EXTRACT_* code. */
static int read_file(int fd, unsigned char **data, size_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0)
        return EXTRACT_ECORRUPT;
    if ((uint64_t)st.st_size > IMAGE_FILE_MAX)
        return EXTRACT_EBOMB;
    size_t n = (size_t)st.st_size, got = 0;
    unsigned char *p = malloc(n);
    if (!p)
        return EXTRACT_EMEMORY;
    while (got < n) {
        ssize_t k = pread(fd, p + got, n - got, (off_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    if (got != n) {
        free(p);
        return EXTRACT_ECORRUPT;
    }
    *data = p;
    *size = n;
    return 0;
}

/* Pages in the file: TIFF directories, counted within the limit; 1 for
 * the other formats. Returns 0 with *pages, or an EXTRACT_* code. */
static int count_pages(const unsigned char *data, size_t size, int format, int *pages)
{
    *pages = 1;
    if (!L_FORMAT_IS_TIFF(format))
        return 0;
    FILE *fp = fmemopen((void *)data, size, "rb");
    if (!fp)
        return EXTRACT_EMEMORY;
    l_int32 n = 0;
    int bad = tiffGetCount(fp, &n);
    fclose(fp);
    if (bad || n < 1)
        return EXTRACT_ECORRUPT;
    if (n > EXTRACT_OCR_PAGES_MAX)
        return EXTRACT_EBOMB;
    *pages = n;
    return 0;
}

/* Check page i's header against the limits. */
static int check_header(const unsigned char *data, size_t size, int format, int i)
{
    l_int32 w = 0, h = 0, bps = 0, spp = 0, res = 0, cmap = 0, fmt = 0;
    int bad = L_FORMAT_IS_TIFF(format)
                  ? readHeaderMemTiff(data, size, i, &w, &h, &bps, &spp, &res, &cmap, &fmt)
                  : pixReadHeaderMem(data, size, &fmt, &w, &h, &bps, &spp, &cmap);
    if (bad || w < 1 || h < 1)
        return EXTRACT_ECORRUPT;
    if (w > SIDE_MAX || h > SIDE_MAX || (long long)w * h > OCR_MAX_PIXELS)
        return EXTRACT_EBOMB;
    return 0;
}

/* Decode page i, make it 8-bit grayscale and hand it to the sink. */
static int decode_one(const image_sink_t *sink, const unsigned char *data, size_t size,
                      int format, int i)
{
    PIX *pix = L_FORMAT_IS_TIFF(format) ? pixReadMemTiff(data, size, i) : pixReadMem(data, size);
    if (!pix)
        return EXTRACT_ECORRUPT;
    int dpi = pixGetXRes(pix);
    PIX *gray = pixConvertTo8(pix, 0);
    pixDestroy(&pix);
    PIX *rows = gray ? pixEndianByteSwapNew(gray) : NULL;
    pixDestroy(&gray);
    if (!rows)
        return EXTRACT_EMEMORY;
    int rc = sink->page(sink->ud, i + 1, (const unsigned char *)pixGetData(rows),
                        pixGetWidth(rows), pixGetHeight(rows), pixGetWpl(rows) * 4,
                        dpi >= 50 && dpi <= 2400 ? dpi : OCR_DPI);
    pixDestroy(&rows);
    return rc;
}

int image_decode(int fd, const image_sink_t *sink)
{
    setMsgSeverity(L_SEVERITY_NONE);
    unsigned char *data = NULL;
    size_t size = 0;
    int rc = read_file(fd, &data, &size);
    if (rc)
        return rc;
    l_int32 format = IFF_UNKNOWN;
    int pages = 0;
    if (findFileFormatBuffer(data, &format) != 0 || format == IFF_UNKNOWN)
        rc = EXTRACT_ECORRUPT;
    if (!rc)
        rc = count_pages(data, size, format, &pages);
    /* Every header first: a hostile page late in the file costs nothing. */
    for (int i = 0; !rc && i < pages; i++)
        rc = check_header(data, size, format, i);
    if (!rc)
        rc = sink->begin(sink->ud, pages);
    for (int i = 0; !rc && i < pages; i++)
        rc = decode_one(sink, data, size, format, i);
    free(data);
    return rc;
}

/* image_extract(): each page is a page mark and its recognised text. */
typedef struct {
    ocr_t *ocr;
    textout_t *out;
} ocr_sink_t;

static int ocr_sink_begin(void *ud, int pages)
{
    ocr_sink_t *s = ud;
    return ocr_begin(s->ocr, pages);
}

static int ocr_sink_page(void *ud, int page, const unsigned char *gray, int width, int height,
                         int stride, int dpi)
{
    ocr_sink_t *s = ud;
    textout_blank_line(s->out);
    textout_page(s->out, page, NULL);
    return ocr_page(s->ocr, page, gray, width, height, stride, dpi, s->out);
}

int image_extract(int fd, textout_t *out, ocr_t *ocr)
{
    if (!ocr_enabled(ocr))
        return EXTRACT_EUNSUPPORTED;
    ocr_sink_t s = { ocr, out };
    image_sink_t sink = { ocr_sink_begin, ocr_sink_page, &s };
    int rc = image_decode(fd, &sink);
    return rc ? rc : textout_error(out);
}
