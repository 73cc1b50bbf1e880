/* image.c — see image.h. The file is read into memory once; headers are
 * read from it (readHeaderMemTiff / pixReadHeaderMem) and checked before
 * each page is decoded, so an image that would need gigabytes is refused
 * for the price of its header. Leptonica keeps 32-bit words in host order
 * with the first pixel in the most significant byte; a byte-swapped copy
 * gives plain rows for ocr_page(). */
#include "extract/image.h"

#include <errno.h>
#include <stdbool.h>
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

static int check_size(long long w, long long h)
{
    if (w < 1 || h < 1)
        return EXTRACT_ECORRUPT;
    if (w > SIDE_MAX || h > SIDE_MAX || w * h > OCR_MAX_PIXELS)
        return EXTRACT_EBOMB;
    return 0;
}

static uint32_t get16(const unsigned char *p, bool le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 : (uint32_t)p[0] << 8 | p[1];
}

static uint32_t get32(const unsigned char *p, bool le)
{
    return le ? get16(p, le) | get16(p + 2, le) << 16 : get16(p, le) << 16 | get16(p + 2, le);
}

/* Walk a TIFF's chain of directories (classic TIFF; detect.c sends no
 * other here): count the pages and check each one's ImageWidth and
 * ImageLength against the limits, in one pass. Leptonica's per-page
 * header reader (readHeaderMemTiff) walks the chain from the start for
 * every page: quadratic, 15 s of CPU for 2,000 tiny pages. A chain longer
 * than EXTRACT_OCR_PAGES_MAX (or one that loops) is EXTRACT_EBOMB; a
 * directory outside the file or without both sizes is EXTRACT_ECORRUPT. */
static int walk_tiff(const unsigned char *data, size_t size, int *pages)
{
    if (size < 8)
        return EXTRACT_ECORRUPT;
    bool le = data[0] == 'I';
    uint64_t at = get32(data + 4, le);
    int n = 0;
    while (at) {
        if (n == EXTRACT_OCR_PAGES_MAX)
            return EXTRACT_EBOMB;
        if (at < 8 || at + 2 > size)
            return EXTRACT_ECORRUPT;
        uint32_t entries = get16(data + at, le);
        if (at + 2 + (uint64_t)entries * 12 + 4 > size)
            return EXTRACT_ECORRUPT;
        long long w = 0, h = 0;
        for (uint32_t e = 0; e < entries; e++) {
            const unsigned char *p = data + at + 2 + 12 * (size_t)e;
            uint32_t tag = get16(p, le), type = get16(p + 2, le);
            long long v = type == 3 ? (long long)get16(p + 8, le)
                          : type == 4 ? (long long)get32(p + 8, le)
                                      : -1;
            if (tag == 256)
                w = v;
            else if (tag == 257)
                h = v;
        }
        int rc = check_size(w, h);
        if (rc)
            return rc;
        n++;
        at = get32(data + at + 2 + (size_t)entries * 12, le);
    }
    if (n == 0)
        return EXTRACT_ECORRUPT;
    *pages = n;
    return 0;
}

/* Pages in the file, each header checked against the limits: TIFF
 * directories; 1 for the other formats. Returns 0 with *pages, or an
 * EXTRACT_* code. */
static int check_headers(const unsigned char *data, size_t size, int format, int *pages)
{
    if (L_FORMAT_IS_TIFF(format))
        return walk_tiff(data, size, pages);
    l_int32 w = 0, h = 0, bps = 0, spp = 0, cmap = 0, fmt = 0;
    if (pixReadHeaderMem(data, size, &fmt, &w, &h, &bps, &spp, &cmap) != 0)
        return EXTRACT_ECORRUPT;
    *pages = 1;
    return check_size(w, h);
}

/* Decode page i, make it 8-bit grayscale and hand it to the sink. A
 * TIFF's pages are read in turn from *offset (Leptonica's position of the
 * next directory), each in constant time. */
static int decode_one(const image_sink_t *sink, const unsigned char *data, size_t size,
                      int format, int i, size_t *offset)
{
    if (L_FORMAT_IS_TIFF(format) && i > 0 && *offset == 0)
        return EXTRACT_ECORRUPT;   /* Leptonica found fewer pages than the walk */
    PIX *pix = L_FORMAT_IS_TIFF(format) ? pixReadMemFromMultipageTiff(data, size, offset)
                                        : pixReadMem(data, size);
    if (!pix)
        return EXTRACT_ECORRUPT;
    /* The decoded size is the one that counts (a header may lie). */
    if (check_size(pixGetWidth(pix), pixGetHeight(pix)) != 0) {
        pixDestroy(&pix);
        return EXTRACT_ECORRUPT;
    }
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
    /* Every header first: a hostile page late in the file costs nothing. */
    if (!rc)
        rc = check_headers(data, size, format, &pages);
    if (!rc)
        rc = sink->begin(sink->ud, pages);
    size_t offset = 0;
    for (int i = 0; !rc && i < pages; i++)
        rc = decode_one(sink, data, size, format, i, &offset);
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
