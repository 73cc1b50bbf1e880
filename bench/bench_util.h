/* bench_util.h — what the benchmark programs share: a clock, medians, and
 * buffers of distinct data. */
#ifndef KVCHAT_BENCH_UTIL_H
#define KVCHAT_BENCH_UTIL_H
#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds. */
double bench_now_ms(void);

/* The median of v[0..n) (n >= 1); sorts v. */
double bench_median(double *v, int n);

/* Fill p[0..n) with distinct pseudo-random words seeded by x (nonzero), as
 * KV data is: pages of one repeated byte may be merged by a hypervisor, and
 * writing to a merged page then costs a fault, which would measure the host
 * rather than memcpy. */
void bench_fill_unique(char *p, size_t n, uint64_t x);

#endif
