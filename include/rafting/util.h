/*
** util.h -- small helpers shared by the runtime, the launcher and the Lua
** modules: UTF-8 and JSON string quoting (src/util/json.c), "host:port"
** addresses (src/util/addr.c), node ids (src/util/id.c), clocks (src/util/clock.c) and removing
** large files a step at a time (src/util/trim.c).
** Byte order, varints and splitmix64 are header-only in rafting/bytes.h.
**
** Plain libc, no libuv or Lua, so any target may link raftutil.  Nothing
** here allocates: every buffer belongs to the caller.  Errors are negative
** errno values, as in libuv.
*/
#ifndef RAFTING_UTIL_H
#define RAFTING_UTIL_H

#include <stddef.h>
#include <stdint.h>

struct sockaddr_storage;

/* -- UTF-8 and JSON strings (json.c) -- */

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
** surrogates, nothing past U+10FFFF), 1..4, or 0 if s[0..left) does not
** start with one.  left must be at least 1. */
size_t rf_utf8_len(const unsigned char *s, size_t left);

/* A JSON string literal (quotes included) of any bytes: '"' and '\' are
** escaped, UTF-8 passes through, control characters and bytes that are not
** valid UTF-8 become \u00XX.  Writes at most cap bytes including a '\0'
** (dst may be NULL when cap is 0) and returns the full length, like
** snprintf. */
size_t rf_json_quote(char *dst, size_t cap, const void *src, size_t len);

/* -- addresses (addr.c) -- */

#define RF_ADDR_MAX 256 /* longest "host:port" accepted, '\0' included */

/* Split "host:port" or "[v6]:port" (port 1..65535) copying the host, without
** brackets, into host[hostlen].  The host must be a numeric address or
** "localhost".  0, or -EINVAL with why[] saying what is wrong. */
int rf_addr_split(const char *s, char *host, size_t hostlen, int *port,
                  char *why, size_t whylen);

/* A numeric host (or "localhost", as 127.0.0.1) and port 0..65535 as a
** socket address: 0 or -EINVAL. */
int rf_addr_resolve(const char *host, int port, struct sockaddr_storage *ss);

/* host:port with an IPv6 literal in brackets, so that it splits back; the
** full length, like snprintf. */
int rf_addr_format(char *out, size_t len, const char *host, int port);

/* -- node ids (id.c) -- */

/* A node id in decimal (1..2^64-1, nothing else around it), or 0 if s is
** not one. */
uint64_t rf_parse_id(const char *s);

/* -- files (file.c) -- */

/* The whole file at path, NUL-terminated, in *out (the caller frees it)
** and its length in *len: 0; -errno when it cannot be opened, RF_EIO when
** it cannot be read. */
int rf_read_file(const char *path, char **out, size_t *len);

/* -- digests (sha256.c) -- */

/* SHA-256 of data: 32 bytes, or 64 lowercase hex digits and a NUL. */
void rf_sha256(const void *data, size_t len, unsigned char out[32]);
void rf_sha256_hex(const void *data, size_t len, char out[65]);

/* -- time (clock.c) -- */

/* Milliseconds of CLOCK_MONOTONIC: for intervals and deadlines. */
int64_t rf_now_ms(void);
/* Milliseconds since the Unix epoch: for timestamps, never for intervals. */
int64_t rf_wall_ms(void);

/* -- removing large files (trim.c) -- */

/* Shrink the file by step bytes (to 0 at most): 1 while some is left, 0
** once empty, or -errno.  The caller makes each step durable (fdatasync). */
int rf_trim_step(int fd, size_t step);

/* Rename dirfd/name to name.tmp and sync the directory, then shrink it
** step bytes at a time with an fdatasync after each, then unlink it: the
** blocks are freed in small journal commits, not one large one that every
** other fsync would wait behind.  0 or -errno (of the rename, the
** directory sync or the unlink); the caller syncs the directory after. */
int rf_remove_gradually(int dirfd, const char *name, size_t step);

#endif
