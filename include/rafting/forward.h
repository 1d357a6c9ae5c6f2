/*
** forward.h -- the follower-to-leader forwarder of the REST API.
**
** Any node accepts any request; a follower replays it to the leader with
** rf_fwd_send() and relays the answer with rf_fwd_relay().  One hop only:
** every forwarded request carries the header RF_FWD_HEADER, and a node that
** receives it never forwards again (the api answers 503 if it is not the
** leader).  Each forward has one deadline, from dialing to the last byte of
** the answer.
**
** Connections: a keep-alive pool per target (host:port).  An idle pooled
** connection is still read, so one the leader closes (EOF) is dropped at
** once; one unused for idle_timeout_ms is closed by us (keep that below
** the leader's own idle timeout, so the leader is never the one to close a
** connection we are about to reuse).  A GET or HEAD that fails on a reused
** connection before any byte of the answer is retried once on a fresh
** connection; a write never is: its outcome is unknown.
**
** Status of a forward, as the callback sees it:
**
**   >= 0                 0; resp holds the leader's answer (any HTTP status)
**   RF_FWD_ECONNECT      could not connect (refused, unreachable, timed out
**                        dialing): the request was certainly not delivered
**   RF_FWD_ETIMEDOUT     sent, no complete answer in time: outcome unknown
**   RF_FWD_ELOST         connection lost after sending: outcome unknown
**   RF_FWD_EPROTO        malformed answer (the leader did get the request)
**   RF_FWD_ETOOBIG       answer over max_response_bytes (or its headers
**                        over 64 KiB)
**   RF_FWD_ECANCELED     rf_fwd_close() came first
**   UV_ENOMEM            no memory for the answer
**
** rf_fwd_http_status() maps these to what a proxy answers (503, 504, 502).
**
** Ownership and lifetime (libuv conventions):
**  - rf_fwd_send() copies all it needs from req (method, target, body,
**    content_type), so req may be answered or freed as soon as it returns.
**  - The callback runs exactly once per rf_fwd_send() that returned 0, never
**    from inside rf_fwd_send(), and never when it returned an error.
**  - resp and everything it points to are valid only during the callback.
**  - rf_fwd_close() closes every connection; forwards still in flight get
**    RF_FWD_ECANCELED (from the loop, not from inside rf_fwd_close()), then
**    the forwarder is freed and done runs.  Callbacks may call rf_fwd_send()
**    (it fails once closing) and rf_fwd_close().
**  - Functions returning int return 0 or a negative error code.
*/
#ifndef RAFTING_FORWARD_H
#define RAFTING_FORWARD_H

#include "rafting/error.h"

#include <stddef.h>
#include <uv.h>

#include "rafting/http.h"

/* Present on every forwarded request; its value names the forwarder. */
#define RF_FWD_HEADER "X-Rafting-Forwarded"

/* Outside libuv's range of error codes. */
#define RF_FWD_ECONNECT RF_ECONNECT
#define RF_FWD_ETIMEDOUT RF_ETIMEDOUT
#define RF_FWD_ELOST RF_ELOST
#define RF_FWD_EPROTO RF_EPROTO
#define RF_FWD_ETOOBIG RF_ETOOBIG
#define RF_FWD_ECANCELED RF_ECANCELED

typedef struct rf_fwd rf_fwd;

typedef struct rf_fwd_opts {
  int timeout_ms;            /* per forward, dial to last byte; default 5000 */
  int idle_timeout_ms;       /* pooled connection lifetime; default 10000 */
  int max_idle;              /* idle connections kept per target; default 8;
                                0: no pooling */
  size_t max_response_bytes; /* answer body; default 64 MiB */
  const char *via;           /* RF_FWD_HEADER's value (e.g. this node's id);
                                copied; default "1" */
  struct rf_tls_ctx *tls;    /* HTTPS to the leader (rafting/tls.h; its
                                certificate must name node<ID>), or NULL;
                                not owned, must outlive the forwarder */
} rf_fwd_opts;

/* The leader's answer.  Header values are NUL-terminated, NULL if absent;
** body is binary, NUL-terminated after body_len ("" if none, e.g. HEAD). */
typedef struct rf_fwd_resp {
  int status;               /* HTTP status code */
  const char *content_type;
  const char *retry_after;
  const char *location;
  const char *allow;
  const char *www_authenticate;
  const char *body;
  size_t body_len;
} rf_fwd_resp;

/* resp is NULL unless status == 0. */
typedef void (*rf_fwd_cb)(void *ud, int status, const rf_fwd_resp *resp);

void rf_fwd_opts_init(rf_fwd_opts *o);

/* o may be NULL for the defaults.  UV_EINVAL for a bad option. */
int rf_fwd_init(uv_loop_t *loop, rf_fwd **out, const rf_fwd_opts *o);
void rf_fwd_close(rf_fwd *f, void (*done)(void *ud), void *ud);

/* Replay req to host:port (numeric IPv4/IPv6 or "localhost") as HTTP/1.1.
** Sync errors: UV_EINVAL (bad address, method, target or content type),
** UV_ENOMEM, RF_FWD_ECANCELED (closing), or a libuv error from dialing --
** in every case nothing was sent. */
int rf_fwd_send(rf_fwd *f, const char *host, int port, const rf_http_req *req,
                rf_fwd_cb cb, void *ud);

/* With o.tls: the certificate at host:port must name name ("node<ID>"). */
int rf_fwd_expect(rf_fwd *f, const char *host, int port, const char *name);

/* Answer req with resp: its status, Content-Type, Retry-After, Location,
** Allow and body.  Frees req (see rf_http_respond).  A relayed HEAD says
** Content-Length: 0 (the server computes it from the empty body). */
void rf_fwd_relay(rf_http_req *req, const rf_fwd_resp *resp);

/* Open connections (busy, idle, dialing); for tests and /status. */
int rf_fwd_connections(const rf_fwd *f);
/* Forwards in flight: sent or being sent, not yet answered. */
int rf_fwd_pending(const rf_fwd *f);

const char *rf_fwd_strerror(int status); /* any status, libuv's too */
/* 503 not delivered (ECONNECT, ECANCELED), 504 outcome unknown (ETIMEDOUT,
** ELOST), 502 otherwise (a bad or lost answer); 200 for status 0. */
int rf_fwd_http_status(int status);

#endif
