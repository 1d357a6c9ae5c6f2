/*
** http_client.h -- a small blocking HTTP/1.1 client for `rafting ctl`.
**
** One request per connection (Connection: close), connect and the whole
** exchange bounded by a deadline, optional TLS (OpenSSL) that verifies the
** server's certificate against a CA file (or the system's) and its host
** name.  The response is parsed with llhttp.
**
** Memory: rf_hc_resp owns its body and header copies until rf_hc_resp_free;
** nothing else outlives a call.
*/
#ifndef RAFTING_CTL_HTTP_CLIENT_H
#define RAFTING_CTL_HTTP_CLIENT_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "rafting/buf.h"

typedef struct rf_hc_url {
  int tls;         /* https:// */
  char host[256];  /* without brackets */
  int port;
} rf_hc_url;

typedef struct rf_hc_req {
  const char *method;
  const char *target;    /* "/kv/a?stale", already percent-encoded */
  const void *body;
  size_t body_len;
  const char *token;     /* Authorization: Bearer <token>, or NULL */
  const char *cacert;    /* CA file for TLS, or NULL: the system's */
  uint64_t deadline_ms;  /* absolute, on rf_hc_now_ms()'s clock */
  FILE *stream;          /* non-NULL: a 2xx body goes here as it arrives,
                            and once sent the answer has no deadline */
} rf_hc_req;

typedef struct rf_hc_resp {
  int status;
  char *location;        /* Location header, or NULL */
  char *content_type;
  int retry_after;       /* seconds, -1 if absent */
  rf_buf body;
  int sent;              /* the request was written completely */
} rf_hc_resp;

/* rf_hc_request's errors (negative): */
enum {
  RF_HC_ECONNECT = -1,  /* resolve or connect failed: nothing was sent */
  RF_HC_ETIMEDOUT = -2, /* deadline passed (see resp->sent) */
  RF_HC_ELOST = -3,     /* connection failed during the exchange */
  RF_HC_EPROTO = -4,    /* an answer that is not HTTP */
  RF_HC_ETLS = -5,      /* handshake or certificate verification failed */
  RF_HC_ENOMEM = -6
};

/* "http://h:p", "https://h:p", "[::1]:p" or "h:p" (tls_default decides
** the scheme then).  0, or -1 with a message in err. */
int rf_hc_parse_url(const char *s, int tls_default, rf_hc_url *u,
                    const char **rest, char *err, size_t errlen);

/* Send req to u and read the whole answer into *resp (always initialised:
** free it with rf_hc_resp_free).  0, or RF_HC_E*; err says why. */
int rf_hc_request(const rf_hc_url *u, const rf_hc_req *req, rf_hc_resp *resp,
                  char *err, size_t errlen);
void rf_hc_resp_free(rf_hc_resp *r);
uint64_t rf_hc_now_ms(void);

#endif
