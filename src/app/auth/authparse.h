/* authparse.h — the parts of a request that say who sends it, read from
 * the client's bytes: the Cookie and Authorization headers, the client
 * address against auth.trusted_proxies, the X-Forwarded-Proto a proxy
 * adds. Pure functions over strings (no request, no store), so they are
 * unit-tested and fuzzed on their own (tests/fuzz/fuzz_auth.c).
 */
#ifndef KVCHAT_APP_AUTH_AUTHPARSE_H
#define KVCHAT_APP_AUTH_AUTHPARSE_H

#include <stdbool.h>
#include <stddef.h>

/* The value of cookie `name` in a Cookie header ("a=1; b=2"; NULL: none)
 * into out (cap bytes, NUL-terminated); false when absent or longer than
 * cap - 1 (a value that long was never ours). The first of several with
 * that name counts; a value in double quotes is taken without them. */
bool authparse_cookie(const char *header, const char *name, char *out, size_t cap);

/* The credentials of an "Authorization: Bearer <value>" header (scheme in
 * any case, spaces around the value skipped), as a pointer into header,
 * with *len its length; NULL for another scheme, no value, or NULL. */
const char *authparse_bearer(const char *header, size_t *len);

/* Whether addr (a numeric IPv4 or IPv6 address, as httpd_req_peer gives
 * it) is in list: addresses and CIDR ranges ("10.0.0.0/8", "fd00::/8")
 * separated by commas and/or spaces. An IPv4 address also matches its
 * IPv4-mapped IPv6 form. Entries that do not parse match nothing
 * (authparse_addr_list_check says which at start-up). */
bool authparse_addr_listed(const char *list, const char *addr);

/* Check every entry of a list as authparse_addr_listed reads it: true, or
 * false with the first bad entry named in why. */
bool authparse_addr_list_check(const char *list, char *why, size_t whycap);

/* The client's address of a request that came from `peer` with an
 * X-Forwarded-For header `xff` (NULL: none), into out: peer itself, unless
 * peer is in `trusted` (auth.trusted_proxies); then the nearest address of
 * xff, read from the right, that is not trusted itself (each trusted proxy
 * vouches for the one before it). An entry that is not an IP address ends
 * the walk at the address after it, so a client cannot pass off a made-up
 * entry as someone else. An address too long for out leaves out = peer. */
#define AUTHPARSE_ADDR_MAX 64
void authparse_client_addr(const char *peer, const char *xff, const char *trusted, char *out,
                           size_t cap);

/* Whether an X-Forwarded-Proto value (NULL: none) says the client used
 * HTTPS: "https" in any case, or a list whose first (the client's) hop is
 * https. */
bool authparse_forwarded_https(const char *value);

#endif
