/*
** test_tls.c -- the memory-BIO pump of src/net/tls.c between two in-memory
** endpoints: mutual handshake and data both ways, the peer's node name,
** a server that is not the expected node, a client certificate from
** another CA, no client certificate, and truncated or garbage records.
** Certificates are made here with OpenSSL's API into a scratch directory.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "rafting/tls.h"

#include "check.h"

static char dir[256];

/* ---- certificates ----------------------------------------------------- */

typedef struct ident {
  EVP_PKEY *key;
  X509 *cert;
} ident;

static void add_ext(X509 *c, X509 *issuer, int nid, const char *val) {
  X509V3_CTX v;
  X509_EXTENSION *e;
  X509V3_set_ctx(&v, issuer, c, NULL, NULL, 0);
  e = X509V3_EXT_conf_nid(NULL, &v, nid, val);
  CHECK(e != NULL);
  if (e == NULL) return;
  X509_add_ext(c, e, -1);
  X509_EXTENSION_free(e);
}

/* A certificate for cn (and DNS SAN san, if any), signed by ca, or
** self-signed when ca is NULL (a CA then). */
static ident make(const char *cn, const char *san, const ident *ca) {
  static long serial = 1;
  ident id;
  X509_NAME *name;
  id.key = EVP_EC_gen("P-256");
  id.cert = X509_new();
  X509_set_version(id.cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(id.cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(id.cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(id.cert), 86400);
  X509_set_pubkey(id.cert, id.key);
  name = X509_get_subject_name(id.cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(id.cert, ca ? X509_get_subject_name(ca->cert) : name);
  if (ca == NULL) add_ext(id.cert, id.cert, NID_basic_constraints,
                          "critical,CA:TRUE");
  if (san != NULL) add_ext(id.cert, ca->cert, NID_subject_alt_name, san);
  X509_sign(id.cert, ca ? ca->key : id.key, EVP_sha256());
  return id;
}

/* Write id as dir/<name>.pem and dir/<name>.key. */
static void save(const ident *id, const char *name) {
  char path[512];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s.pem", dir, name);
  f = fopen(path, "w");
  PEM_write_X509(f, id->cert);
  fclose(f);
  snprintf(path, sizeof path, "%s/%s.key", dir, name);
  f = fopen(path, "w");
  PEM_write_PrivateKey(f, id->key, NULL, NULL, 0, NULL, NULL);
  fclose(f);
}

static void drop(ident *id) {
  EVP_PKEY_free(id->key);
  X509_free(id->cert);
}

static rf_tls_ctx *ctx(const char *ca, const char *who, int flags) {
  char a[512], c[512], k[512], err[512];
  rf_tls_ctx *x;
  snprintf(a, sizeof a, "%s/%s.pem", dir, ca);
  snprintf(c, sizeof c, "%s/%s.pem", dir, who);
  snprintf(k, sizeof k, "%s/%s.key", dir, who);
  x = rf_tls_ctx_new(a, c, k, flags, err, sizeof err);
  if (x == NULL) fprintf(stderr, "ctx %s: %s\n", who, err);
  return x;
}

/* ---- two endpoints wired through buffers ------------------------------ */

typedef struct end {
  rf_tls *tls;
  uint8_t *wire; /* ciphertext sent, not yet fed to the other end */
  size_t nwire;
  char got[1 << 16];
  size_t ngot;
} end;

static int on_send(void *ud, uint8_t *p, size_t n) {
  end *e = ud;
  e->wire = realloc(e->wire, e->nwire + n);
  memcpy(e->wire + e->nwire, p, n);
  e->nwire += n;
  free(p);
  return 0;
}

static int on_recv(void *ud, const uint8_t *p, size_t n) {
  end *e = ud;
  if (e->ngot + n > sizeof e->got) return -1;
  memcpy(e->got + e->ngot, p, n);
  e->ngot += n;
  return 0;
}

/* Move what from sent to to; the feed's result. */
static int pass(end *from, end *to) {
  int rc = rf_tls_feed(to->tls, from->wire, from->nwire);
  free(from->wire);
  from->wire = NULL;
  from->nwire = 0;
  return rc;
}

/* Shuttle until both are quiet or one fails; the first error or 0. */
static int shuttle(end *c, end *s) {
  for (int i = 0; i < 20 && (c->nwire || s->nwire); i++) {
    int rc;
    if (c->nwire && (rc = pass(c, s)) < 0) return rc;
    if (s->nwire && (rc = pass(s, c)) < 0) return rc;
  }
  return 0;
}

static void open_pair(end *c, end *s, rf_tls_ctx *cx, rf_tls_ctx *sx,
                      const char *expect) {
  rf_tls_io ci = {c, on_send, on_recv}, si = {s, on_send, on_recv};
  memset(c, 0, sizeof *c);
  memset(s, 0, sizeof *s);
  s->tls = rf_tls_new(sx, &si, NULL);
  c->tls = rf_tls_new(cx, &ci, expect);
  CHECK(c->tls != NULL && s->tls != NULL);
}

static void close_pair(end *c, end *s) {
  rf_tls_free(c->tls);
  rf_tls_free(s->tls);
  free(c->wire);
  free(s->wire);
}

/* ---- cases ------------------------------------------------------------- */

static void test_mutual(rf_tls_ctx *cx, rf_tls_ctx *sx) {
  end c, s;
  static char big[40000];
  open_pair(&c, &s, cx, sx, "node2");
  CHECK(rf_tls_write(c.tls, "early", 5) == 0); /* held until ready */
  CHECK(shuttle(&c, &s) == 0);
  CHECK(rf_tls_ready(c.tls) && rf_tls_ready(s.tls));
  CHECK(s.ngot == 5 && memcmp(s.got, "early", 5) == 0);
  CHECK(rf_tls_peer_is_node(s.tls, 1) && !rf_tls_peer_is_node(s.tls, 3));
  CHECK(rf_tls_peer_is_node(c.tls, 2) && !rf_tls_peer_is_node(c.tls, 1));
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7);
  CHECK(rf_tls_write(s.tls, big, sizeof big) == 0);
  CHECK(rf_tls_write(c.tls, "ping", 4) == 0);
  CHECK(shuttle(&c, &s) == 0);
  CHECK(c.ngot == sizeof big && memcmp(c.got, big, sizeof big) == 0);
  CHECK(s.ngot == 9 && memcmp(s.got + 5, "ping", 4) == 0);
  /* a record cut short delivers nothing until the rest arrives */
  CHECK(rf_tls_write(c.tls, "split", 5) == 0);
  CHECK(c.nwire > 10);
  CHECK(rf_tls_feed(s.tls, c.wire, 10) == 0 && s.ngot == 9);
  CHECK(rf_tls_feed(s.tls, c.wire + 10, c.nwire - 10) == 0);
  CHECK(s.ngot == 14 && memcmp(s.got + 9, "split", 5) == 0);
  free(c.wire);
  c.wire = NULL;
  c.nwire = 0;
  /* a corrupted record fails cleanly and the connection stays failed */
  CHECK(rf_tls_write(c.tls, "tamper", 6) == 0);
  c.wire[c.nwire - 1] ^= 1;
  CHECK(pass(&c, &s) < 0);
  CHECK(*rf_tls_error(s.tls) != '\0');
  CHECK(rf_tls_feed(s.tls, "x", 1) < 0);
  CHECK(rf_tls_write(s.tls, "x", 1) < 0);
  close_pair(&c, &s);
}

static void test_refused(rf_tls_ctx *cx, rf_tls_ctx *sx, const char *expect,
                         const char *what) {
  end c, s;
  open_pair(&c, &s, cx, sx, expect);
  int rc = shuttle(&c, &s);
  if (rc == 0) fprintf(stderr, "FAIL %s: handshake succeeded\n", what);
  CHECK(rc < 0);
  CHECK(!rf_tls_ready(c.tls) || !rf_tls_ready(s.tls));
  printf("%s: refused: %s%s\n", what, rf_tls_error(s.tls),
         rf_tls_error(c.tls));
  close_pair(&c, &s);
}

/* HTTPS asks no client certificate: the handshake works, no node proven. */
static void test_no_client_cert(rf_tls_ctx *cx, rf_tls_ctx *sx) {
  end c, s;
  open_pair(&c, &s, cx, sx, "node2");
  CHECK(shuttle(&c, &s) == 0);
  CHECK(rf_tls_ready(c.tls) && rf_tls_ready(s.tls));
  CHECK(!rf_tls_peer_is_node(s.tls, 1));
  CHECK(rf_tls_peer_is_node(c.tls, 2));
  close_pair(&c, &s);
}

static void test_garbage(rf_tls_ctx *sx) {
  end s;
  rf_tls_io si = {&s, on_send, on_recv};
  const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  memset(&s, 0, sizeof s);
  s.tls = rf_tls_new(sx, &si, NULL);
  CHECK(rf_tls_feed(s.tls, http, strlen(http)) < 0);
  CHECK(strstr(rf_tls_error(s.tls), "handshake") != NULL);
  CHECK(s.ngot == 0);
  rf_tls_free(s.tls);
  free(s.wire);
}

static void test_bad_files(void) {
  char err[512], a[512], c[512];
  snprintf(a, sizeof a, "%s/ca.pem", dir);
  snprintf(c, sizeof c, "%s/node1.pem", dir);
  CHECK(rf_tls_ctx_new(a, c, "/nonexistent.key", 0, err, sizeof err) == NULL);
  CHECK(strstr(err, "/nonexistent.key") != NULL);
  CHECK(rf_tls_ctx_new(a, c, c, 0, err, sizeof err) == NULL); /* no key */
  CHECK(strstr(err, "tls.key") != NULL);
  snprintf(c, sizeof c, "%s/node2.key", dir);
  snprintf(a, sizeof a, "%s/node1.pem", dir);
  {
    char k[512];
    snprintf(k, sizeof k, "%s/node1.pem", dir);
    snprintf(c, sizeof c, "%s/node2.key", dir);
    CHECK(rf_tls_ctx_new(a, k, c, 0, err, sizeof err) == NULL);
    CHECK(strstr(err, "does not match") != NULL);
    printf("mismatch: %s\n", err);
  }
  CHECK(rf_tls_ctx_new(c, a, c, 0, err, sizeof err) == NULL); /* CA a key */
  CHECK(strstr(err, "tls.ca") != NULL);
}

static void cleanup(void) {
  static const char *const names[] = {"ca", "other", "node1", "node2", "x1"};
  char path[512];
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    snprintf(path, sizeof path, "%s/%s.pem", dir, names[i]);
    remove(path);
    snprintf(path, sizeof path, "%s/%s.key", dir, names[i]);
    remove(path);
  }
  remove(dir);
}

int main(void) {
  ident ca, other, n1, n2, x1;
  rf_tls_ctx *c1, *s2, *s2opt, *cx1, *c2, *sx1;
  if (check_tmpdir(dir, sizeof dir, "rafting-tls") < 0) return 1;
  ca = make("test CA", NULL, NULL);
  other = make("other CA", NULL, NULL);
  n1 = make("node1", "DNS:node1", &ca);
  n2 = make("node2", "DNS:node2,DNS:localhost", &ca);
  x1 = make("node1", "DNS:node1", &other);
  save(&ca, "ca");
  save(&other, "other");
  save(&n1, "node1");
  save(&n2, "node2");
  save(&x1, "x1");
  c1 = ctx("ca", "node1", 0);
  c2 = ctx("ca", "node2", 0);
  cx1 = ctx("other", "x1", 0);
  s2 = ctx("ca", "node2", RF_TLS_SERVER | RF_TLS_VERIFY_PEER);
  s2opt = ctx("ca", "node2", RF_TLS_SERVER);
  sx1 = ctx("other", "x1", RF_TLS_SERVER | RF_TLS_VERIFY_PEER);
  if (!c1 || !c2 || !cx1 || !s2 || !s2opt || !sx1) return 1;

  test_mutual(c1, s2);
  test_refused(c1, s2, "node3", "server is not the node dialed");
  test_refused(cx1, s2, "node2", "client certificate from another CA");
  test_refused(c2, sx1, "node1", "server certificate from another CA");
  test_no_client_cert(c1, s2opt);
  test_garbage(s2);
  test_bad_files();
  rf_tls_ctx_free(c1);
  rf_tls_ctx_free(c2);
  rf_tls_ctx_free(cx1);
  rf_tls_ctx_free(s2);
  rf_tls_ctx_free(s2opt);
  rf_tls_ctx_free(sx1);
  cleanup();
  drop(&ca);
  drop(&other);
  drop(&n1);
  drop(&n2);
  drop(&x1);
  return check_summary("test_tls");
}
