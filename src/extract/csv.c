/* csv.c — see csv.h. */
#include "extract/csv.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "extract/extract.h"
#include "extract/mdtable.h"
#include "extract/sheet.h"
#include "extract/text.h"

static const char candidates[] = { ',', ';', '\t', '|' };

/* Count of d per record (outside quotes) over the first records of p:
 * counts[0..*records). The last record is left out when p ends inside it
 * (a head cut short), unless it is the whole input. */
static size_t record_counts(const char *p, size_t n, char d, size_t *counts, size_t max)
{
    size_t k = 0, c = 0;
    bool quoted = false, any = false;
    for (size_t i = 0; i < n && k < max; i++) {
        char ch = p[i];
        if (ch == '"') {
            quoted = !quoted;
        } else if (!quoted && (ch == '\n' || ch == '\r')) {
            if (ch == '\r' && i + 1 < n && p[i + 1] == '\n')
                i++;
            if (any)
                counts[k++] = c;   /* blank lines are not records */
            c = 0;
            any = false;
            continue;
        } else if (!quoted && ch == d) {
            c++;
        }
        any = true;
    }
    (void)any;
    return k;
}

/* The delimiter that is the most consistent: *agree records out of *total
 * share its most common non-zero count, *fields that count. */
static char best_delimiter(const char *p, size_t n, size_t *agree, size_t *total, size_t *fields)
{
    size_t counts[CSV_SNIFF_RECORDS];
    char best = 0;
    *agree = *total = *fields = 0;
    for (size_t d = 0; d < sizeof candidates; d++) {
        size_t k = record_counts(p, n, candidates[d], counts, CSV_SNIFF_RECORDS);
        /* The most common non-zero count. */
        size_t top = 0, top_n = 0;
        for (size_t i = 0; i < k; i++) {
            if (!counts[i])
                continue;
            size_t same = 0;
            for (size_t j = 0; j < k; j++)
                same += counts[j] == counts[i];
            if (same > top_n || (same == top_n && counts[i] > top)) {
                top = counts[i];
                top_n = same;
            }
        }
        if (top_n > *agree || (top_n == *agree && top_n && top > *fields)) {
            best = candidates[d];
            *agree = top_n;
            *total = k;
            *fields = top;
        }
    }
    return best;
}

bool csv_sniff(const char *p, size_t n, char *delim)
{
    /* The head may stop inside a record: look at complete records only. */
    size_t end = n;
    while (end > 0 && p[end - 1] != '\n' && p[end - 1] != '\r')
        end--;
    if (end == 0)
        end = n;
    size_t agree, total, fields;
    char d = best_delimiter(p, end, &agree, &total, &fields);
    bool yes = d && total >= 3 && agree == total && fields >= 2 && !(d == '|' && p[0] == '|');
    if (yes && delim)
        *delim = d;
    return yes;
}

typedef struct {
    sheet_t sheet;
    buf_t field;
    char delim;
} csv_t;

static int field_end(csv_t *c)
{
    return sheet_cell(&c->sheet, SHEET_NEXT, c->field.data ? c->field.data : "", c->field.len, 1);
}

static int parse(csv_t *c, const char *p, size_t n)
{
    bool quoted = false, was_quoted = false, in_record = false;
    sheet_row(&c->sheet);
    buf_reset(&c->field);
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (quoted) {
            if (ch == '"') {
                if (i + 1 < n && p[i + 1] == '"') {
                    buf_append(&c->field, "\"", 1);
                    i++;
                } else {
                    quoted = false;
                }
            } else if (c->field.len < MDTABLE_CELL_MAX + 4) {
                buf_append(&c->field, &ch, 1);
            }
            continue;
        }
        if (ch == '"' && c->field.len == 0 && !was_quoted) {
            quoted = was_quoted = in_record = true;
        } else if (ch == c->delim) {
            field_end(c);
            buf_reset(&c->field);
            was_quoted = false;
            in_record = true;
        } else if (ch == '\n' || ch == '\r') {
            if (ch == '\r' && i + 1 < n && p[i + 1] == '\n')
                i++;
            if (in_record || c->field.len)
                field_end(c);
            sheet_row_end(&c->sheet, 1);
            sheet_row(&c->sheet);
            buf_reset(&c->field);
            was_quoted = in_record = false;
        } else {
            in_record = true;
            if (c->field.len < MDTABLE_CELL_MAX + 4)
                buf_append(&c->field, &ch, 1);
        }
        if ((i & 0xFFF) == 0 && (c->sheet.tbl.err || textout_error(c->sheet.out)))
            break;
    }
    if (in_record || c->field.len)
        field_end(c);
    sheet_row_end(&c->sheet, 1);
    return c->sheet.tbl.err ? c->sheet.tbl.err : textout_error(c->sheet.out);
}

int csv_extract(int fd, textout_t *out)
{
    unsigned char *data;
    size_t len;
    int rc = text_read_fd(fd, text_input_limit(textout_max(out)), &data, &len);
    if (rc)
        return rc;
    buf_t utf8;
    buf_init(&utf8, len * 3 + 16);
    rc = text_to_utf8(data, len, &utf8);
    free(data);
    if (rc) {
        buf_cleanup(&utf8);
        return rc;
    }
    const char *p = utf8.data ? utf8.data : "";
    csv_t c = { .delim = 0 };
    size_t agree, total, fields;
    c.delim = best_delimiter(p, utf8.len < 65536 ? utf8.len : 65536, &agree, &total, &fields);
    if (!c.delim)
        c.delim = memchr(p, '\t', utf8.len < 65536 ? utf8.len : 65536) ? '\t' : ',';
    sheet_init(&c.sheet, out);
    buf_init(&c.field, MDTABLE_CELL_MAX + 16);
    sheet_begin(&c.sheet, NULL, 0);
    rc = parse(&c, p, utf8.len);
    if (!rc)
        rc = sheet_end(&c.sheet);
    sheet_cleanup(&c.sheet);
    buf_cleanup(&c.field);
    buf_cleanup(&utf8);
    return rc;
}
