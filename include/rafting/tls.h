/*
** tls.h -- TLS over OpenSSL memory BIOs, independent of any event loop.
**
** An rf_tls_ctx is one role's settings (an SSL_CTX): this node's
** certificate and key, the CA that peers must chain to, TLS 1.2 or newer,
** no renegotiation.  An rf_tls is one connection: the caller feeds it the
** bytes read from the socket (rf_tls_feed) and hands it plaintext to send
** (rf_tls_write); it answers through two callbacks, send (ciphertext for
** the socket) and recv (plaintext for the protocol above).  Handshake
** messages flow through the same callbacks, so the caller needs no special
** handshake state: it only learns, through rf_tls_ready(), when it is done.
** Plaintext written before that is held and sent once the handshake ends.
**
** Peer names: a node's certificate carries "node<ID>" as its CN or a DNS
** SAN.  A client connection made with an expected name fails its
** handshake unless the server's certificate carries that name.
**
** Memory: the ctx is reference counted by OpenSSL; rf_tls_ctx_free() may
** run while connections made from it live.  send receives a malloc'd
** buffer and owns it.  recv's bytes are valid only during the call.
** Errors are negative RF_E* codes (UV_EPROTO for a TLS failure); the
** reason is in rf_tls_error().
*/
#ifndef RAFTING_TLS_H
#define RAFTING_TLS_H

#include <stddef.h>
#include <stdint.h>

typedef struct rf_tls_ctx rf_tls_ctx;
typedef struct rf_tls rf_tls;

enum {
  RF_TLS_SERVER = 1,      /* accept connections (else: dial) */
  RF_TLS_VERIFY_PEER = 2  /* server: require a client certificate from ca */
};

/*
** Load ca, cert and key (PEM files) for a role (RF_TLS_* flags).  On error
** returns NULL with a message naming the file and the reason in err.
*/
rf_tls_ctx *rf_tls_ctx_new(const char *ca, const char *cert, const char *key,
                           int flags, char *err, size_t errlen);
void rf_tls_ctx_free(rf_tls_ctx *x);

typedef struct rf_tls_io {
  void *ud;
  /* Ciphertext to put on the wire; owns p (malloc'd).  <0 stops the pump. */
  int (*send)(void *ud, uint8_t *p, size_t n);
  /* Plaintext from the peer.  <0 stops the pump (e.g. the caller closed). */
  int (*recv)(void *ud, const uint8_t *p, size_t n);
} rf_tls_io;

/*
** A connection; a client (no RF_TLS_SERVER on x) sends its hello at once
** through io->send, and with expect != NULL checks the server's name.
** NULL when out of memory.
*/
rf_tls *rf_tls_new(rf_tls_ctx *x, const rf_tls_io *io, const char *expect);
void rf_tls_free(rf_tls *c);

/* Bytes read from the socket: 0, or <0 (the connection is unusable). */
int rf_tls_feed(rf_tls *c, const void *p, size_t n);
/* Encrypt and send p (or hold it until the handshake completes). */
int rf_tls_write(rf_tls *c, const void *p, size_t n);
/* 1 once the handshake completed. */
int rf_tls_ready(const rf_tls *c);
/* Why the last call failed ("" if it did not). */
const char *rf_tls_error(const rf_tls *c);

/* 1 if the peer's verified certificate names "node<id>" (CN or DNS SAN). */
int rf_tls_peer_is_node(const rf_tls *c, uint64_t id);



/* ---- a node's contexts, from its config (src/net/tls_node.c) ---------- */

struct rf_config;

typedef struct rf_tls_set {
  rf_tls_ctx *peer_server; /* peer listener: client certificate required */
  rf_tls_ctx *client;      /* dialing peers and forwarding to the leader */
  rf_tls_ctx *http_server; /* HTTPS: no client certificate asked */
} rf_tls_set;

/*
** The contexts for node id from cfg->tls_* ("%d" replaced by id); all NULL
** (and 0) when cfg has no tls.  -1 with a message naming the file and
** the reason in err.  rf_tls_set_free() frees what it holds.
*/
int rf_tls_set_open(const struct rf_config *cfg, uint64_t id, rf_tls_set *s,
                    char *err, size_t errlen);
void rf_tls_set_free(rf_tls_set *s);

/* 1 if every address node id listens on is a loopback address. */
int rf_tls_node_loopback(const struct rf_config *cfg, uint64_t id);

#endif
