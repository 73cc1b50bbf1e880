/* metrics.c — see metrics.h. Names follow Prometheus conventions:
 * kvchat_engine_* prefix, _total for counters, base units (seconds, bytes).
 */
#include "engine/metrics.h"

#include <inttypes.h>
#include <stdio.h>

#include "common/httpd.h"

static void counter(buf_t *b, const char *name, const char *help, uint64_t v)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name, name, v);
}

static void gauge(buf_t *b, const char *name, const char *help, double v)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

int metrics_render(engine_t *e, buf_t *b)
{
    gauge(b, "kvchat_engine_ready", "1 when the model is loaded and serving",
          atomic_load(&e->state) == ENGINE_READY ? 1 : 0);
    if (e->sched) {
        sched_stats_t s;
        sched_get_stats(e->sched, &s);
        buf_printf(b, "# HELP kvchat_engine_requests_total Generation and prefill requests by outcome\n"
                      "# TYPE kvchat_engine_requests_total counter\n");
        buf_printf(b, "kvchat_engine_requests_total{outcome=\"ok\"} %" PRIu64 "\n", s.requests_ok);
        buf_printf(b, "kvchat_engine_requests_total{outcome=\"cancelled\"} %" PRIu64 "\n",
                   s.requests_cancelled);
        buf_printf(b, "kvchat_engine_requests_total{outcome=\"failed\"} %" PRIu64 "\n",
                   s.requests_failed);
        buf_printf(b, "kvchat_engine_requests_total{outcome=\"rejected_busy\"} %" PRIu64 "\n",
                   s.rejected_busy);
        counter(b, "kvchat_engine_prompt_tokens_total", "Prompt tokens of all requests", s.prompt_tokens);
        counter(b, "kvchat_engine_cached_tokens_total", "Prompt tokens restored from the KV cache",
                s.cached_tokens);
        counter(b, "kvchat_engine_generated_tokens_total", "Tokens generated", s.generated_tokens);
        buf_printf(b, "# HELP kvchat_engine_cache_requests_total Requests by the tier their prefix came from\n"
                      "# TYPE kvchat_engine_cache_requests_total counter\n");
        for (int t = 0; t < SCHED_N_TIERS; t++)
            buf_printf(b, "kvchat_engine_cache_requests_total{tier=\"%s\"} %" PRIu64 "\n",
                       sched_tier_name((cache_tier_t)t), s.hits[t]);
        counter(b, "kvchat_engine_snapshots_total", "KV snapshots taken", s.snapshots);
        counter(b, "kvchat_engine_snapshot_bytes_total", "Bytes of KV snapshots taken",
                s.snapshot_bytes);
        counter(b, "kvchat_engine_restored_bytes_total", "Bytes of KV restored from RAM or disk",
                s.restore_bytes_total);
        counter(b, "kvchat_engine_drafts_total", "Drafts bound to a slot (prefill while typing)",
                s.drafts);
        counter(b, "kvchat_engine_drafts_dropped_total",
                "Drafts dropped: no slot they could take, real requests waiting, or evicted unused",
                s.drafts_dropped);
        counter(b, "kvchat_engine_draft_tokens_total", "Prompt tokens decoded by drafts",
                s.draft_tokens);
        counter(b, "kvchat_engine_draft_tokens_used_total",
                "Draft tokens that the real request then found in its slot", s.draft_tokens_used);
        gauge(b, "kvchat_engine_draft_slots", "Slots bound to a draft", s.draft_slots);
        buf_printf(b, "# HELP kvchat_engine_deferred_snapshot_seconds_total Time spent taking the "
                      "snapshots that answers left owed (off their critical path)\n"
                      "# TYPE kvchat_engine_deferred_snapshot_seconds_total counter\n"
                      "kvchat_engine_deferred_snapshot_seconds_total %.6f\n",
                   s.snapshot_ms_total / 1000.0);
        gauge(b, "kvchat_engine_slots_busy", "Slots running a request", s.slots_busy);
        gauge(b, "kvchat_engine_queue_length", "Requests waiting for a slot", s.queue_len);
        buf_printf(b, "# HELP kvchat_engine_ttft_seconds Time from request to first token\n"
                      "# TYPE kvchat_engine_ttft_seconds histogram\n");
        for (int i = 0; i < 12; i++)
            buf_printf(b, "kvchat_engine_ttft_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                       sched_ttft_bounds[i], s.ttft_buckets[i]);
        buf_printf(b, "kvchat_engine_ttft_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", s.ttft_count);
        buf_printf(b, "kvchat_engine_ttft_seconds_sum %.6f\n", s.ttft_sum);
        buf_printf(b, "kvchat_engine_ttft_seconds_count %" PRIu64 "\n", s.ttft_count);
    }
    if (e->store) {
        kvstore_stats_t k;
        kvstore_stats(e->store, &k);
        buf_printf(b, "# HELP kvchat_engine_cache_bytes Bytes held by each cache tier\n"
                      "# TYPE kvchat_engine_cache_bytes gauge\n"
                      "kvchat_engine_cache_bytes{tier=\"ram\"} %" PRIu64 "\n"
                      "kvchat_engine_cache_bytes{tier=\"disk\"} %" PRIu64 "\n"
                      "kvchat_engine_cache_bytes{tier=\"shared\"} %" PRIu64 "\n",
                   k.ram_bytes, k.disk_bytes, k.shared_bytes);
        buf_printf(b, "# HELP kvchat_engine_cache_entries Entries by tier\n"
                      "# TYPE kvchat_engine_cache_entries gauge\n"
                      "kvchat_engine_cache_entries{tier=\"ram\"} %zu\n"
                      "kvchat_engine_cache_entries{tier=\"disk\"} %zu\n"
                      "kvchat_engine_cache_entries{tier=\"shared\"} %zu\n",
                   k.entries_ram, k.entries_disk, k.entries_shared);
        buf_printf(b, "# HELP kvchat_engine_cache_hits_total Entry loads by the tier that served them\n"
                      "# TYPE kvchat_engine_cache_hits_total counter\n"
                      "kvchat_engine_cache_hits_total{tier=\"ram\"} %" PRIu64 "\n"
                      "kvchat_engine_cache_hits_total{tier=\"disk\"} %" PRIu64 "\n"
                      "kvchat_engine_cache_hits_total{tier=\"shared\"} %" PRIu64 "\n",
                   k.hits_ram, k.hits_disk, k.hits_shared);
        counter(b, "kvchat_engine_cache_evictions_total", "RAM copies and files evicted",
                k.evictions_ram + k.evictions_disk);
        counter(b, "kvchat_engine_cache_disk_write_failures_total", "Entry files that failed to write",
                k.disk_write_failures);
        if (k.shared_budget > 0) {
            counter(b, "kvchat_engine_cache_shared_writes_total",
                    "Files written to the shared tier", k.shared_writes);
            counter(b, "kvchat_engine_cache_shared_write_failures_total",
                    "Files that failed to write to the shared tier", k.shared_write_failures);
            counter(b, "kvchat_engine_cache_shared_skipped_total",
                    "Corrupt, truncated or foreign files skipped in the shared tier",
                    k.shared_skipped);
            counter(b, "kvchat_engine_cache_shared_lost_total",
                    "Shared files deleted by another engine before a load (misses)",
                    k.shared_lost);
            counter(b, "kvchat_engine_cache_shared_evictions_total",
                    "Shared files deleted by this engine for the shared budget",
                    k.shared_evictions);
        }
    }
    if (e->http) {
        httpd_stats_t h;
        httpd_stats((const httpd_t *)e->http, &h);
        buf_printf(b, "# HELP kvchat_engine_http_requests_total HTTP requests by status class\n"
                      "# TYPE kvchat_engine_http_requests_total counter\n");
        for (int c = 2; c <= 5; c++)
            buf_printf(b, "kvchat_engine_http_requests_total{class=\"%dxx\"} %" PRIu64 "\n", c,
                       h.status[c]);
        gauge(b, "kvchat_engine_http_streams_open", "Open response streams", (double)h.streams_open);
        gauge(b, "kvchat_engine_http_connections_open", "HTTP connections open",
              (double)h.connections_open);
        buf_printf(b, "# HELP kvchat_engine_http_connections_closed_total Connections closed by "
                      "the server: request too slow (deadline) or to admit a new one (shed)\n"
                      "# TYPE kvchat_engine_http_connections_closed_total counter\n"
                      "kvchat_engine_http_connections_closed_total{reason=\"deadline\"} %" PRIu64
                      "\nkvchat_engine_http_connections_closed_total{reason=\"shed\"} %" PRIu64 "\n",
                   h.connections_cut, h.connections_shed);
    }
    return BUF_OK;
}
