/* fuzz_sse.c — an upstream server's answer to a streaming chat (llm.c's
 * SSE reader and one backend's event parser).
 *
 * Built once per backend (FUZZ_KIND = LLM_PROVIDER_OPENAI, which also
 * serves the local engine, or LLM_PROVIDER_GEMINI). The input is the body
 * of a 200 text/event-stream answer. It is read the way llm__xfer_run()
 * reads it from libcurl: llm__sse_feed() per piece, llm__sse_flush() at the
 * end, each event to the backend's chat_event, whose text goes through
 * llm__emit() to the caller's on_delta. The provider has the smallest
 * limits a provider accepts (1 KiB lines and answers), so the limits are
 * reached by small inputs.
 *
 * The input is read twice: in one piece, and in pieces of 1 to 13 bytes
 * (as the network may cut it). Checked besides memory safety: on_delta
 * gets non-empty valid UTF-8; the answer stays within max_answer; both
 * readings give the same text, the same result code and the same finish
 * reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/llm/llm.h"
#include "app/llm/llm_int.h"
#include "common/buf.h"
#include "common/utf8.h"
#include "fuzz_util.h"

#ifndef FUZZ_KIND
#error "define FUZZ_KIND as the provider kind (LLM_PROVIDER_OPENAI, LLM_PROVIDER_GEMINI)"
#endif

#define LIMIT 1024 /* max_line and max_answer: the least llm_provider_new accepts */

static llm_provider_t *g_prov;

typedef struct {
    buf_t text;
} answer_t;

static int on_delta(void *ud, const char *text, size_t len)
{
    answer_t *a = ud;
    FUZZ_CHECK(len > 0, "empty delta");
    FUZZ_CHECK(utf8_valid(text, len), "delta is not valid UTF-8");
    FUZZ_CHECK(utf8_complete_len(text, len) == len, "delta ends inside a character");
    FUZZ_CHECK(buf_append(&a->text, text, len) == BUF_OK, "answer over its limit");
    return 0;
}

static const llm_callbacks_t callbacks = { .on_delta = on_delta };

static int chat_event(llm_xfer_t *x, json_t *ev)
{
    return x->p->be->chat_event((llm_chat_call_t *)x, ev);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    FUZZ_CHECK(llm_global_init() == LLM_OK, "llm_global_init");
    llm_config_t cfg = llm_config_default(FUZZ_KIND);
    cfg.base_url = "http://127.0.0.1:9/v1"; /* never contacted */
    cfg.model = "fuzz-model";
    cfg.max_line = LIMIT;
    cfg.max_answer = LIMIT;
    char err[256];
    FUZZ_CHECK(llm_provider_new(&cfg, &g_prov, err, sizeof err) == LLM_OK, "provider: %s", err);
    return 0;
}

typedef struct {
    int rc;
    bool finished, done;
    char finish_reason[32];
    char *text;
    size_t len;
} outcome_t;

/* Read data as one answer, in pieces of `piece` bytes (0: in one piece). */
static void read_answer(const uint8_t *data, size_t size, size_t piece, outcome_t *o)
{
    llm_result_t res;
    llm_result_init(&res);
    answer_t a;
    buf_init(&a.text, LIMIT);
    llm_chat_call_t c;
    llm__xfer_init(&c.x, g_prov, "POST", "http://127.0.0.1:9/v1/chat/completions");
    c.res = &res;
    c.cb = &callbacks;
    c.ud = &a;
    c.finished = false;
    c.t0 = 0;
    c.x.cb = &callbacks;
    c.x.ud = &a;
    c.x.sse = true;
    c.x.on_event = chat_event;
    c.x.status = 200;
    buf_init(&c.x.line, g_prov->cfg.max_line);
    buf_init(&c.x.event, g_prov->cfg.max_line);

    const char *p = (const char *)data;
    size_t left = size;
    unsigned k = 0;
    while (left > 0 && c.x.rc == LLM_OK) {
        size_t n = piece ? 1 + (k++ * 7 + size) % piece : left;
        if (n > left)
            n = left;
        llm__sse_feed(&c.x, p, n);
        p += n;
        left -= n;
    }
    llm__sse_flush(&c.x);

    FUZZ_CHECK(res.text_len == a.text.len, "text_len %zu, deltas %zu", res.text_len, a.text.len);
    FUZZ_CHECK(res.text_len <= LIMIT, "answer of %zu bytes over max_answer", res.text_len);
    FUZZ_CHECK(c.x.rc == LLM_OK || c.x.error[0] != '\0', "failure %d without a message", c.x.rc);
    FUZZ_CHECK(memchr(c.x.error, '\0', sizeof c.x.error) != NULL, "message not terminated");
    o->rc = c.x.rc;
    o->finished = c.finished;
    o->done = c.x.done;
    snprintf(o->finish_reason, sizeof o->finish_reason, "%s", res.finish_reason);
    o->text = buf_steal(&a.text, &o->len);
    llm__xfer_cleanup(&c.x);
    llm_result_cleanup(&res);
    buf_cleanup(&a.text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds = fuzz_fds_mark();
    outcome_t whole, cut;
    read_answer(data, size, 0, &whole);
    read_answer(data, size, 13, &cut);
    FUZZ_CHECK(whole.rc == cut.rc, "result %d in one piece, %d in pieces", whole.rc, cut.rc);
    FUZZ_CHECK(whole.finished == cut.finished && whole.done == cut.done &&
                   strcmp(whole.finish_reason, cut.finish_reason) == 0,
               "the end differs: '%s' in one piece, '%s' in pieces", whole.finish_reason,
               cut.finish_reason);
    FUZZ_CHECK(whole.len == cut.len && (whole.len == 0 || !memcmp(whole.text, cut.text, whole.len)),
               "the text differs: %zu bytes in one piece, %zu in pieces", whole.len, cut.len);
    free(whole.text);
    free(cut.text);
    fuzz_fds_check(fds);
    return 0;
}
