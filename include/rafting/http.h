/*
** http.h -- the HTTP/1.1 server under the REST API: libuv TCP + llhttp.
**
** An rf_http_server listens on one address.  Each connection is parsed by
** llhttp; every complete request is handed to the application's on_request
** callback as an rf_http_req, which the application answers with
** rf_http_respond() (or rf_http_json_error()) -- at once, or later, e.g.
** after a Raft commit.  Keep-alive, pipelining, chunked request bodies,
** "Connection: close", HTTP/1.0, "Expect: 100-continue" and HEAD (length
** without body) are handled here; so are the limits, each
** answered with a JSON error {"error":"<code>","message":"..."} and a close:
**
**   400 bad_request        malformed request (llhttp error, bad %-escape)
**   408 request_timeout    request not complete within request_timeout_ms
**                          of its first byte (slow clients lose the slot)
**   413 body_too_large     Content-Length, or chunked body so far, > max
**   414 url_too_long       request-target > max_url_bytes
**   431 headers_too_large  header names + values > max_header_bytes
**   503 too_many_connections  over max_connections (with Retry-After: 1)
**
** An idle keep-alive connection is closed silently after idle_timeout_ms.
** A client that closes its side (EOF) is taken to have left: requests it
** still waits for are aborted (see on_abort below).
**
** Ownership and lifetime:
**  - rf_http_start() allocates the server; rf_http_close() closes the
**    listener and every connection and frees the server once all their close
**    callbacks have run, then calls done (the loop drains by itself).
**  - A request passed to on_request belongs to the application until it
**    answers it.  The application must answer every request exactly once --
**    also after the client went away or the server closed; such an answer is
**    dropped and only frees the request.  on_abort (optional) says early that
**    the answer will be dropped; the request must still be answered (it may
**    be answered from inside on_abort).
**  - Everything an rf_http_req points to stays valid until it is answered;
**    after rf_http_respond() the request must not be touched.
**  - Answers on one connection are sent in request order: an answer given
**    early is held (copied) until every earlier request is answered.
**  - Nothing here blocks; writes are queued on libuv.  Functions returning
**    int return 0 or a negative libuv error code (UV_EINVAL, UV_ENOMEM, ...).
*/
#ifndef RAFTING_HTTP_H
#define RAFTING_HTTP_H

#include <stddef.h>
#include <uv.h>

typedef struct rf_http_server rf_http_server;
typedef struct rf_http_req rf_http_req;

typedef void (*rf_http_request_cb)(void *ud, rf_http_req *req);
typedef void (*rf_http_abort_cb)(void *ud, rf_http_req *req);
typedef void (*rf_http_done_cb)(void *ud);

typedef struct rf_http_opts {
  const char *host;          /* numeric IPv4/IPv6, or "localhost" */
  int port;                  /* 0 picks a free port: see rf_http_port() */
  size_t max_body_bytes;     /* default 1 MiB */
  size_t max_header_bytes;   /* default 8 KiB */
  size_t max_url_bytes;      /* default 4 KiB */
  int max_connections;       /* default 1024 */
  int idle_timeout_ms;       /* default 30000 */
  int request_timeout_ms;    /* default 10000 */
  int max_pipeline;          /* requests queued per connection, default 16 */
  rf_http_request_cb on_request;
  rf_http_abort_cb on_abort; /* may be NULL */
  void *ud;                  /* passed to on_request and on_abort */
  struct rf_tls_ctx *tls;    /* HTTPS only (rafting/tls.h), or NULL; not
                                owned, must outlive the server */
} rf_http_opts;

/* A parsed request.  Every field is read-only for the application except
** data.  Strings are NUL-terminated; lengths make them binary safe. */
struct rf_http_req {
  const char *method;        /* "GET", "PUT", ... */
  const char *target;        /* request-target as received: "/kv/a%20b?x" */
  size_t target_len;
  const char *path;          /* target's path, percent-decoded ('+' kept) */
  size_t path_len;
  const char *query;         /* raw query after '?', "" if none */
  size_t query_len;
  const char *content_type;  /* NULL if absent */
  const char *host;          /* NULL if absent */
  const char *authorization; /* NULL if absent (forwarded as is) */
  const char *body;          /* "" if none; chunked bodies are joined */
  size_t body_len;
  int http_minor;            /* HTTP/1.<minor> */
  int keep_alive;            /* 0: the connection closes after the answer */
  void *data;                /* free for the application */
};

/* Fill o with the defaults above (host "127.0.0.1", port 0, no callback). */
void rf_http_opts_init(rf_http_opts *o);

/* Listen on o->host:o->port.  On error nothing is left to the caller (a
** half-made listener frees itself when the loop next runs). */
int rf_http_start(uv_loop_t *loop, const rf_http_opts *o,
                  rf_http_server **out);
/* Serve fd, a connected stream socket, as if the listener had accepted it
** (the fuzzer feeds the parser through a socketpair).  On success the
** server owns fd; on error the caller still does. */
int rf_http_adopt(rf_http_server *s, uv_os_sock_t fd);
int rf_http_port(const rf_http_server *s); /* the bound port */
int rf_http_connections(const rf_http_server *s); /* open, within the limit */
void rf_http_close(rf_http_server *s, rf_http_done_cb done, void *ud);

/* Header value (first of that name, case-insensitive), NULL if absent. */
const char *rf_http_header(const rf_http_req *req, const char *name,
                           size_t *len);
/* Query parameter, decoded ('+' is a space).  NULL if absent; a flag given
** without a value ("?stale", "?stale=") yields "" with *len == 0. */
const char *rf_http_query_get(const rf_http_req *req, const char *name,
                              size_t *len);

/* The i-th query parameter (decoded), in order: 1, or 0 past the end. */
int rf_http_query_at(const rf_http_req *req, size_t i, const char **k,
                     size_t *klen, const char **v, size_t *vlen);

/* Add a response header (e.g. Retry-After, Location, Allow) before
** answering.  Content-Length, Content-Type, Connection and Transfer-Encoding
** belong to the server: UV_EINVAL, as is a bad name or a value with CR/LF. */
int rf_http_add_header(rf_http_req *req, const char *name, const char *value);
/* Close the connection once req's answer is written (Connection: close),
** e.g. to send a client of a stopping node elsewhere. */
void rf_http_close_after(rf_http_req *req);
/* Answer req: body is copied; content_type may be NULL.  Frees req. */
void rf_http_respond(rf_http_req *req, int status, const char *content_type,
                     const void *body, size_t len);
/* Streamed answers (Transfer-Encoding: chunked), e.g. GET /watch?stream=1:
** begin sends the status line and headers, each write one chunk (len 0 is
** a no-op), end the last chunk and frees req.  Until end the request is
** the application's; on_abort still says the client left (writes then
** return UV_ECANCELED; end must still be called).  begin fails with
** UV_EINVAL for HTTP/1.0 or a method other than GET: answer normally. */
int rf_http_stream_begin(rf_http_req *req, int status, const char *ctype);
int rf_http_stream_write(rf_http_req *req, const void *data, size_t len);
void rf_http_stream_end(rf_http_req *req);

/* Answer with {"error":code,"message":message} as application/json. */
void rf_http_json_error(rf_http_req *req, int status, const char *code,
                        const char *message);

#endif
