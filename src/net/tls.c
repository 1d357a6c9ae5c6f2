/*
** tls.c -- TLS over OpenSSL memory BIOs (see rafting/tls.h).
**
** Each connection is an SSL with two memory BIOs: rbio holds what the
** socket delivered, wbio collects what OpenSSL wants on the wire.  After
** every feed or write the pump drains wbio into one malloc'd buffer for
** io.send, so the caller's write path is the same as without TLS.
**
** Memory: rf_tls owns its SSL (which owns the BIOs) and the plaintext held
** back until the handshake completes.
*/
#include "rafting/tls.h"
#include "rafting/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define READ_CHUNK 16384

struct rf_tls_ctx {
  SSL_CTX *ssl;
  int flags;
};

struct rf_tls {
  SSL *ssl;
  BIO *rbio, *wbio;      /* owned by ssl */
  rf_tls_io io;
  int ready, failed;
  uint8_t *held;         /* plaintext written before the handshake ended */
  size_t nheld;
  char err[256];
};

/* ---- errors --------------------------------------------------------- */

/* "what: <OpenSSL's reasons>" into buf; empties OpenSSL's error queue. */
static void ssl_reason(char *buf, size_t len, const char *what) {
  unsigned long e;
  size_t n = (size_t)snprintf(buf, len, "%s", what);
  while ((e = ERR_get_error()) != 0) {
    char one[200];
    if (n + 3 >= len) continue; /* full: only drain */
    ERR_error_string_n(e, one, sizeof one);
    n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? ": " : "", one);
  }
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  char what[300];
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  ssl_reason(err, errlen, what);
}

/* ---- contexts ------------------------------------------------------- */

static int readable(const char *path, const char *what, char *err,
                    size_t errlen) {
  if (path != NULL && access(path, R_OK) == 0) return 1;
  snprintf(err, errlen, "tls.%s: cannot read \"%s\": %s", what,
           path ? path : "(none)", path ? strerror(errno) : "no path");
  return 0;
}

static int load(SSL_CTX *s, const char *ca, const char *cert, const char *key,
                char *err, size_t errlen) {
  if (!readable(ca, "ca", err, errlen) || !readable(cert, "cert", err, errlen)
      || !readable(key, "key", err, errlen))
    return -1;
  ERR_clear_error();
  if (SSL_CTX_load_verify_locations(s, ca, NULL) != 1)
    set_err(err, errlen, "tls.ca: \"%s\" holds no usable CA certificate", ca);
  else if (SSL_CTX_use_certificate_chain_file(s, cert) != 1)
    set_err(err, errlen, "tls.cert: \"%s\" is not a PEM certificate", cert);
  else if (SSL_CTX_use_PrivateKey_file(s, key, SSL_FILETYPE_PEM) != 1 &&
           ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH)
    set_err(err, errlen, "tls.key: \"%s\" is not a usable PEM private key",
            key);
  else if (SSL_CTX_check_private_key(s) != 1)
    set_err(err, errlen, "tls.key: \"%s\" does not match the certificate "
            "\"%s\"", key, cert);
  else
    return 0;
  return -1;
}

rf_tls_ctx *rf_tls_ctx_new(const char *ca, const char *cert, const char *key,
                           int flags, char *err, size_t errlen) {
  rf_tls_ctx *x = calloc(1, sizeof *x);
  int server = (flags & RF_TLS_SERVER) != 0;
  if (x == NULL || (x->ssl = SSL_CTX_new(server ? TLS_server_method()
                                                : TLS_client_method())) ==
                       NULL) {
    snprintf(err, errlen, "tls: out of memory");
    free(x);
    return NULL;
  }
  x->flags = flags;
  SSL_CTX_set_min_proto_version(x->ssl, TLS1_2_VERSION);
  SSL_CTX_set_options(x->ssl, SSL_OP_NO_RENEGOTIATION);
  if (server) {
    SSL_CTX_set_num_tickets(x->ssl, 0); /* no resumption: nothing to gain */
    SSL_CTX_set_verify(x->ssl, (flags & RF_TLS_VERIFY_PEER)
                                   ? SSL_VERIFY_PEER |
                                         SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                   : SSL_VERIFY_NONE, NULL);
  } else {
    SSL_CTX_set_verify(x->ssl, SSL_VERIFY_PEER, NULL);
  }
  if (load(x->ssl, ca, cert, key, err, errlen) < 0) {
    rf_tls_ctx_free(x);
    return NULL;
  }
  return x;
}

void rf_tls_ctx_free(rf_tls_ctx *x) {
  if (x == NULL) return;
  SSL_CTX_free(x->ssl);
  free(x);
}

/* ---- the pump ------------------------------------------------------- */

/* Everything OpenSSL queued for the wire goes to io.send in one buffer. */
static int drain(rf_tls *c) {
  size_t n = BIO_ctrl_pending(c->wbio);
  uint8_t *p;
  if (n == 0) return 0;
  if ((p = malloc(n)) == NULL) return RF_ENOMEM;
  if (BIO_read(c->wbio, p, (int)n) != (int)n) {
    free(p);
    return RF_EIO;
  }
  return c->io.send(c->io.ud, p, n);
}

/* A failed SSL call: record why, still send any alert, and stop. */
static int fail(rf_tls *c, int r, const char *what) {
  int e = SSL_get_error(c->ssl, r);
  long v = SSL_get_verify_result(c->ssl);
  char buf[200];
  if (v != X509_V_OK)
    snprintf(buf, sizeof buf, "%s: certificate verify failed: %s", what,
             X509_verify_cert_error_string(v));
  else if (e == SSL_ERROR_ZERO_RETURN)
    snprintf(buf, sizeof buf, "%s: closed by the peer", what);
  else
    snprintf(buf, sizeof buf, "%s", what);
  ssl_reason(c->err, sizeof c->err, buf);
  c->failed = 1;
  drain(c);
  return e == SSL_ERROR_ZERO_RETURN ? -EPIPE : -EPROTO;
}

static int write_now(rf_tls *c, const void *p, size_t n) {
  while (n > 0) {
    int chunk = n > (1u << 30) ? 1 << 30 : (int)n, r;
    if ((r = SSL_write(c->ssl, p, chunk)) <= 0) return fail(c, r, "tls write");
    p = (const uint8_t *)p + r;
    n -= (size_t)r;
  }
  return drain(c);
}

static int finish_handshake(rf_tls *c) {
  int r;
  ERR_clear_error();
  if ((r = SSL_do_handshake(c->ssl)) == 1) {
    uint8_t *held = c->held;
    c->ready = 1;
    c->held = NULL;
    r = held != NULL ? write_now(c, held, c->nheld) : drain(c);
    free(held);
    return r;
  }
  if (SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ) return drain(c);
  return fail(c, r, "tls handshake");
}

static int read_all(rf_tls *c) {
  uint8_t buf[READ_CHUNK];
  for (;;) {
    int r, rc;
    if ((r = SSL_read(c->ssl, buf, sizeof buf)) <= 0) {
      if (SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ) return drain(c);
      return fail(c, r, "tls read");
    }
    if ((rc = c->io.recv(c->io.ud, buf, (size_t)r)) < 0) return rc;
  }
}

int rf_tls_feed(rf_tls *c, const void *p, size_t n) {
  int rc;
  if (c->failed) return -EPROTO;
  ERR_clear_error(); /* once per call: SSL_get_error reads the queue */
  if (n > 0 && BIO_write(c->rbio, p, (int)n) != (int)n) return RF_ENOMEM;
  if (!c->ready && (rc = finish_handshake(c)) < 0) return rc;
  return c->ready ? read_all(c) : 0;
}

int rf_tls_write(rf_tls *c, const void *p, size_t n) {
  uint8_t *h;
  if (c->failed) return -EPROTO;
  ERR_clear_error();
  if (c->ready) return write_now(c, p, n);
  if ((h = realloc(c->held, c->nheld + n)) == NULL) return RF_ENOMEM;
  memcpy(h + c->nheld, p, n);
  c->held = h;
  c->nheld += n;
  return 0;
}

rf_tls *rf_tls_new(rf_tls_ctx *x, const rf_tls_io *io, const char *expect) {
  rf_tls *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->io = *io;
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  c->ssl = SSL_new(x->ssl);
  if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
    BIO_free(c->rbio);
    BIO_free(c->wbio);
    SSL_free(c->ssl);
    free(c);
    return NULL;
  }
  SSL_set_bio(c->ssl, c->rbio, c->wbio); /* ssl owns them from here */
  if (x->flags & RF_TLS_SERVER) {
    SSL_set_accept_state(c->ssl);
    return c;
  }
  SSL_set_connect_state(c->ssl);
  SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_ALWAYS_CHECK_SUBJECT);
  if ((expect != NULL && SSL_set1_host(c->ssl, expect) != 1) ||
      finish_handshake(c) < 0) { /* sends the hello */
    rf_tls_free(c);
    return NULL;
  }
  return c;
}

void rf_tls_free(rf_tls *c) {
  if (c == NULL) return;
  SSL_free(c->ssl);
  free(c->held);
  free(c);
}

int rf_tls_ready(const rf_tls *c) { return c->ready; }

const char *rf_tls_error(const rf_tls *c) { return c->err; }

int rf_tls_peer_is_node(const rf_tls *c, uint64_t id) {
  char name[32];
  X509 *cert;
  if (!c->ready || SSL_get_verify_result(c->ssl) != X509_V_OK) return 0;
  if ((cert = SSL_get0_peer_certificate(c->ssl)) == NULL) return 0;
  snprintf(name, sizeof name, "node%llu", (unsigned long long)id);
  return X509_check_host(cert, name, strlen(name),
                         X509_CHECK_FLAG_ALWAYS_CHECK_SUBJECT, NULL) == 1;
}
