/* fuzz_image.c — the image path of kvchat-extract (image.h), in process.
 *
 * The input is the uploaded file (PNG, JPEG, TIFF, WebP, or anything that
 * starts like one). It goes the way main.c takes it: type detection from
 * the content, then image_decode() — headers against the pixel and page
 * limits, then every page decoded by Leptonica and made 8-bit grayscale —
 * with a sink that reads every pixel it is given, as OCR would. Tesseract
 * itself is left out: it is given only pixels this path produced, and one
 * recognition costs far more than a fuzzer's input may.
 *
 * Checked besides memory safety (every pixel handed over is read, so a
 * short buffer shows): the return is one of the codes an image may cause
 * (0, EXTRACT_ECORRUPT, EXTRACT_EBOMB, EXTRACT_EMEMORY); begin() comes
 * once, before any page, with 1..EXTRACT_OCR_PAGES_MAX pages; pages come
 * numbered 1, 2, ... up to that count; each has 1..OCR_MAX_PIXELS pixels,
 * a stride of at least its width, a resolution in 50..2400; no descriptor
 * is left open.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "extract/detect.h"
#include "extract/extract.h"
#include "extract/image.h"
#include "fuzz_util.h"

static int g_fd = -1;

typedef struct {
    int pages;      /* from begin(); 0 before */
    int next;       /* the page expected next */
    unsigned sum;   /* of every pixel, so that each is read */
} seen_t;

static int on_begin(void *ud, int pages)
{
    seen_t *s = ud;
    FUZZ_CHECK(s->pages == 0, "begin() called twice");
    FUZZ_CHECK(pages >= 1 && pages <= EXTRACT_OCR_PAGES_MAX, "begin() with %d pages", pages);
    s->pages = pages;
    s->next = 1;
    return 0;
}

static int on_page(void *ud, int page, const unsigned char *gray, int width, int height,
                   int stride, int dpi)
{
    seen_t *s = ud;
    FUZZ_CHECK(s->pages > 0, "a page before begin()");
    FUZZ_CHECK(page == s->next && page <= s->pages, "page %d, expected %d of %d", page,
               s->next, s->pages);
    FUZZ_CHECK(gray != NULL && width >= 1 && height >= 1 && stride >= width,
               "page %d: %dx%d, stride %d", page, width, height, stride);
    FUZZ_CHECK((long long)width * height <= OCR_MAX_PIXELS, "page %d: %dx%d over the limit",
               page, width, height);
    FUZZ_CHECK(dpi >= 50 && dpi <= 2400, "page %d: %d dpi", page, dpi);
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++)
            s->sum += gray[(size_t)y * (size_t)stride + (size_t)x];
    s->next++;
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    g_fd = fuzz_memfd("upload");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds = fuzz_fds_mark();
    fuzz_memfd_set(g_fd, data, size);
    extract_type_t type = EXTRACT_TYPE_UNKNOWN;
    int rc = detect_type(g_fd, "scan.png", &type);
    FUZZ_CHECK(type >= EXTRACT_TYPE_UNKNOWN && type < EXTRACT_TYPE_COUNT, "type %d", (int)type);
    (void)rc;
    seen_t s = { 0 };
    image_sink_t sink = { on_begin, on_page, &s };
    rc = image_decode(g_fd, &sink);
    FUZZ_CHECK(rc == 0 || rc == EXTRACT_ECORRUPT || rc == EXTRACT_EBOMB || rc == EXTRACT_EMEMORY,
               "image_decode returned %d", rc);
    if (rc == 0)
        FUZZ_CHECK(s.pages >= 1 && s.next == s.pages + 1, "%d of %d pages decoded", s.next - 1,
                   s.pages);
    fuzz_fds_check(fds);
    return 0;
}
