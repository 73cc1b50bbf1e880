/* metrics.h — Prometheus text exposition of the engine's counters. */
#ifndef KVCHAT_ENGINE_METRICS_H
#define KVCHAT_ENGINE_METRICS_H

#include "common/buf.h"
#include "engine/engine.h"

/* Append the exposition (text format 0.0.4) to out. Returns a BUF_* code. */
int metrics_render(engine_t *e, buf_t *out);

#endif
