/*
** tls_node.c -- a node's TLS contexts built from its config (rafting/tls.h),
** and the loopback test behind the plaintext warning.
**
** Memory: the rf_tls_set owns its contexts; connections made from them
** keep their own references (OpenSSL counts them).
*/
#include "rafting/config.h"
#include "rafting/tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

int rf_tls_set_open(const rf_config *cfg, uint64_t id, rf_tls_set *s,
                    char *err, size_t errlen) {
  char ca[4096], cert[4096], key[4096];
  memset(s, 0, sizeof *s);
  if (cfg->tls_ca == NULL) return 0;
  if (rf_config_path_for(cfg->tls_ca, id, ca, sizeof ca) < 0 ||
      rf_config_path_for(cfg->tls_cert, id, cert, sizeof cert) < 0 ||
      rf_config_path_for(cfg->tls_key, id, key, sizeof key) < 0) {
    snprintf(err, errlen, "tls: a path is too long");
    return -1;
  }
  if ((s->peer_server = rf_tls_ctx_new(ca, cert, key, RF_TLS_SERVER |
                                       RF_TLS_VERIFY_PEER, err, errlen)) &&
      (s->client = rf_tls_ctx_new(ca, cert, key, 0, err, errlen)) &&
      (s->http_server = rf_tls_ctx_new(ca, cert, key, RF_TLS_SERVER, err,
                                       errlen)))
    return 0;
  rf_tls_set_free(s);
  return -1;
}

void rf_tls_set_free(rf_tls_set *s) {
  rf_tls_ctx_free(s->peer_server);
  rf_tls_ctx_free(s->client);
  rf_tls_ctx_free(s->http_server);
  memset(s, 0, sizeof *s);
}

static int loopback(const char *host) {
  unsigned char a[16];
  if (strcmp(host, "localhost") == 0) return 1;
  if (inet_pton(AF_INET, host, a) == 1) return a[0] == 127;
  if (inet_pton(AF_INET6, host, a) == 1) {
    static const unsigned char one[16] = {[15] = 1};
    return memcmp(a, one, 16) == 0;
  }
  return 0;
}

int rf_tls_node_loopback(const rf_config *cfg, uint64_t id) {
  const rf_node_conf *n = rf_config_node(cfg, id);
  return n != NULL && loopback(n->peer_host) && loopback(n->http_host);
}
